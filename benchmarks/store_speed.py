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
   --nproc-per-node 2``, gloo on the CPU) at half of it each: the loss curves side by side, with a second seed in
   one process as the run-to-run noise the difference is judged against.

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
    p.add_argument("--ddp-steps", type=int, default=300)
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
        for _ in range(3):  # (interleaved: the VM's speed drifts)
            rates["in-memory"].append(run(loader))
            rates["store"].append(run(streamed))
        mem, sto = (statistics.median(rates[k]) for k in ("in-memory", "store"))
        print(f"   in-memory {mem:.0f} windows/s, store {sto:.0f} windows/s (medians of 3 interleaved runs); "
              f"store / in-memory {sto / mem:.3f} (goal >= 0.95)", flush=True)

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
              f"each, {args.ddp_steps} steps, preset {args.preset}, from the same store; a second seed in one "
              f"process is the noise to compare with", flush=True)
        curves = {}
        for n, seed in ((1, 0), (2, 0), (1, 1)):
            out = work / f"ckpt{n}-{seed}"
            command = ["torchrun", "--nproc-per-node", str(n), "-m", "bci_dream.cli", "pretrain", "--store",
                       str(work / "store1"), "-o", str(out), "--preset", args.preset, "--max-steps",
                       str(args.ddp_steps), "--batch-size", str(args.batch_size // n), "--warmup-steps", "10",
                       "--seed", str(seed)]
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            curves[n, seed] = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()
                               if '"loss"' in x]
            thirds = [statistics.mean(c) for c in _thirds(curves[n, seed])]
            print(f"   {n} process(es), seed {seed}: mean loss over each third of the run "
                  + " -> ".join(f"{v:.4f}" for v in thirds), flush=True)

        def last_third(key) -> float:
            return statistics.mean(_thirds(curves[key])[-1])

        gap = abs(last_third((1, 0)) - last_third((2, 0)))
        noise = abs(last_third((1, 0)) - last_third((1, 1)))
        built = ", ".join(f"{r:.2f} with {j} worker{'s' if j > 1 else ''}" for j, r in build_rates.items())
        print(f"SUMMARY store_speed.py: build {built} (h of EEG per minute per worker); "
              f"training from the store {sto / mem:.3f} x in-memory (goal >= 0.95); VmRSS growth {growth:+.0f} MB "
              f"over {args.read_batches} batches of a {stored_mb:.0f} MB store (goal: flat); last-third mean loss "
              f"1 process {last_third((1, 0)):.4f}, 2 processes {last_third((2, 0)):.4f}: difference {gap:.4f} "
              f"against {noise:.4f} between two seeds in one process")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
