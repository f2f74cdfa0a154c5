"""Window stores (issue 16): build throughput, training from a store against in-memory, and resident memory while
streaming from a store larger than a memory budget.

1. build: the shared recordings, each repeated ``--repeat`` times (symbolic links under other names), built with
   1 and with ``--jobs`` worker processes: hours of EEG per minute per worker (spawn start-up included);
2. training: the same masked-signal steps (``--preset``, ``--batch-size``, ``--steps``) fed by the in-memory
   ``WindowDataset`` + ``DataLoader(shuffle=True)`` and by ``StoreBatches``: windows per second, and their ratio
   (goal ≥ 0.95);
3. memory: a store ``--scale`` times ``--budget-mb`` (the built shards repeated under other names: "repeated
   recordings"), read through ``StoreBatches`` for ``--read-batches`` batches; VmRSS sampled every 50 batches
   (goal: flat);
4. the same pretraining from the store in one process at ``--batch-size`` and in two (``torchrun
   --nproc-per-node 2``, gloo on the CPU) at half of it each, two seeds each: the training-loss curves side by
   side, and each final encoder's reconstruction error on the same windows and hidden patches; the 1 vs 2 process
   difference is judged against the difference between seeds.

    python benchmarks/store_speed.py [--repeat 20] [--jobs 2] [--preset tiny] [--steps 60] [--budget-mb 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("BCI_DREAM_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))
RECORDINGS = ["bci-essentials/ssvep_example.xdf",
              "bci-essentials/sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf",
              "muse-lsl/N170/data_2017-09-13-15.30.01.csv", "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"]


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _thirds(values: list[float]) -> list[list[float]]:
    k = max(1, len(values) // 3)
    return [values[:k], values[k:2 * k], values[2 * k:] or values[-1:]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--budget-mb", type=float, default=200.0)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--read-batches", type=int, default=600)
    p.add_argument("--rounds", type=int, default=6, help="interleaved in-memory / store training runs")
    p.add_argument("--ddp-steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the 1 vs 2 process runs")
    args = p.parse_args()

    import torch

    from bci_dream.models.encoder import EegEncoder
    from bci_dream.models.encoder_config import preset
    from bci_dream.training.corpus_sources import file_items
    from bci_dream.training.store_build import build_store
    from bci_dream.training.store_stream import StoreBatches
    from bci_dream.training.window_store import JOURNAL, WindowStore
    from bci_dream.training.windows import WindowDataset, WindowSpec

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="store-speed-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        for k in range(args.repeat):
            for name in RECORDINGS:
                source = (DATA / name).resolve()
                (corpus / f"r{k}_{source.name}").symlink_to(source)
        items = file_items([corpus])
        config = preset(args.preset)
        spec = WindowSpec(window_s=config.window_seconds, target_sfreq=config.sfreq)
        print(f"1. build: {len(items)} recordings ({len(RECORDINGS)} shared ones x {args.repeat})", flush=True)
        build_rates = {}
        for jobs in sorted({1, args.jobs}):
            report = build_store(items, work / f"store{jobs}", spec, 1.0, jobs=jobs, progress=False)
            print(f"   {jobs} worker(s): {report.summary()}", flush=True)
            build_rates[report.jobs] = report.hours_built / (report.seconds / 60) / report.jobs
        store = WindowStore.open(work / "store1")

        print(f"2. training, preset {args.preset}, batch {args.batch_size}, {args.steps} steps, CPU 1 thread",
              flush=True)
        memory = WindowDataset.from_paths([i.path for i in items], spec)
        def epochs():
            while True:  # (epoch after epoch, as StoreBatches)
                yield from torch.utils.data.DataLoader(memory, batch_size=args.batch_size, shuffle=True,
                                                       drop_last=True)

        loader = epochs()
        streamed = iter(StoreBatches(store, args.batch_size, seed=0))

        def run(source) -> float:
            torch.manual_seed(0)
            encoder = EegEncoder(config)
            optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
            times = []
            for step in range(args.steps + 5):
                t0 = time.perf_counter()
                batch = next(source)
                loss, _, _ = encoder(batch["eeg"], batch["mask"], 0.75)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if step >= 5:
                    times.append(time.perf_counter() - t0)
            return args.batch_size / statistics.median(times)

        rates = {"in-memory": [], "store": []}
        for round_ in range(args.rounds):  # (interleaved, the order swapped every round: the VM's speed drifts)
            order = ("in-memory", "store") if round_ % 2 == 0 else ("store", "in-memory")
            for name in order:
                rates[name].append(run(loader if name == "in-memory" else streamed))
        mem, sto = (statistics.median(rates[k]) for k in ("in-memory", "store"))
        each = {k: ", ".join(f"{r:.0f}" for r in v) for k, v in rates.items()}
        print(f"   in-memory {mem:.0f} windows/s, store {sto:.0f} windows/s (medians of {args.rounds} interleaved "
              f"runs: in-memory {each['in-memory']}; store {each['store']}); store / in-memory {sto / mem:.3f} "
              "(goal >= 0.95)", flush=True)

        print(f"3. memory: a store of {args.scale:g} x {args.budget_mb:g} MB", flush=True)
        big = work / "big"
        shutil.copytree(work / "store1", big)
        entries = [json.loads(line) for line in (big / JOURNAL).read_text().splitlines()]
        size = sum((big / e["shard"]).stat().st_size for e in entries)
        copies = max(1, int(args.scale * args.budget_mb * 2**20 / size))
        with open(big / JOURNAL, "a") as journal:
            for c in range(1, copies):
                for e in entries:
                    shard = f"shards/copy{c}_{Path(e['shard']).name}"
                    os.link(big / e["shard"], big / shard)
                    journal.write(json.dumps({**e, "source": f"{e['source']}#copy{c}", "shard": shard}) + "\n")
        large = WindowStore.open(big)
        stored_mb = sum((big / r.shard).stat().st_size for r in large.recordings) / 2**20
        stream = iter(StoreBatches(large, args.batch_size, seed=0))
        samples = []
        for i in range(args.read_batches):
            next(stream)
            if i % 50 == 0:
                samples.append(rss_mb())
        print(f"   {large.n_windows} windows, {stored_mb:.0f} MB of shards; VmRSS every 50 batches (MB): "
              + ", ".join(f"{s:.0f}" for s in samples), flush=True)
        growth = samples[-1] - samples[1] if len(samples) > 2 else float("nan")

        print(f"4. one process at batch {args.batch_size} against two (torchrun, gloo) at {args.batch_size // 2} "
              f"each, {args.ddp_steps} steps, preset {args.preset}, lr {args.lr:g}, from the same store, "
              "seeds 0 and 1; each final encoder scored on the same 1024 windows with the same hidden patches",
              flush=True)
        from bci_dream.models.checkpoint import load_checkpoint
        from bci_dream.training.reconstruction import reconstruction_scores
        from bci_dream.training.store_stream import subject_windows

        x, m = subject_windows(store, store.subjects(), limit=1024, seed=0)
        final: dict[tuple[int, int], float] = {}
        for n, seed in ((1, 0), (2, 0), (1, 1), (2, 1)):
            out = work / f"ckpt{n}-{seed}"
            command = ["torchrun", "--nproc-per-node", str(n), "-m", "bci_dream.cli", "pretrain", "--store",
                       str(work / "store1"), "-o", str(out), "--preset", args.preset, "--max-steps",
                       str(args.ddp_steps), "--batch-size", str(args.batch_size // n), "--warmup-steps", "10",
                       "--lr", str(args.lr), "--seed", str(seed)]
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            curve = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()
                     if '"loss"' in x]
            model, _ = load_checkpoint(out)
            scores = reconstruction_scores(model.encoder, x, m, mask_ratio=0.75, seed=0)
            final[n, seed] = scores.model
            print(f"   {n} process(es), seed {seed}: training loss, mean of each third of the run "
                  + " -> ".join(f"{statistics.mean(c):.4f}" for c in _thirds(curve))
                  + f"; final encoder {scores.model:.4f} (zeros {scores.zeros:.4f}, interpolation "
                    f"{scores.interpolation:.4f})", flush=True)
        one, two = (statistics.mean(final[n, s] for s in (0, 1)) for n in (1, 2))
        spread = statistics.mean(abs(final[n, 0] - final[n, 1]) for n in (1, 2))
        built = ", ".join(f"{r:.2f} with {j} worker{'s' if j > 1 else ''}" for j, r in build_rates.items())
        print(f"SUMMARY store_speed.py: build {built} (h of EEG per minute per worker); "
              f"training from the store {sto / mem:.3f} x in-memory (goal >= 0.95); VmRSS growth {growth:+.0f} MB "
              f"over {args.read_batches} batches of a {stored_mb:.0f} MB store (goal: flat); final reconstruction "
              f"error 1 process {one:.4f}, 2 processes {two:.4f} (means of 2 seeds): difference {abs(one - two):.4f} "
              f"against {spread:.4f} between seeds")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
