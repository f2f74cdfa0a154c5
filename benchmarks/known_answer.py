"""Does calibration learn what is in the EEG? Held-out identification on signals with a known answer.

A semi-synthetic set: real background EEG (bci-essentials' g.USBamp P300 session, 16 channels at 256 Hz, from
../shared/data), tiled to the length needed, with a class-specific response added after each onset: a Hann-windowed
burst 0.1-0.9 s after the onset at 7, 10, 13 or 17 Hz (one frequency per class, 4 classes) on the centro-parietal
channels, its amplitude ``SNR`` times each channel's band-passed background SD. Each class has one image (from the
shipped shapes-colours set), so identifying the image is identifying the class (4-way, chance 25 %).

For every cell of SNRs x training trials per class, the real headless calibration runs on a real .xdf file and an
exact pairs manifest (``bci_dream.calibrate.headless.calibrate_headless``: 20 % of each class held out, tiny
random-weight models in the real formats, the heads only) and the held-out identification is printed beside a
band-power baseline on the same epochs and split (log power in 6 bands per channel, shrinkage LDA), each with its
binomial p-value against chance and a 95 % Wilson interval.

    python benchmarks/known_answer.py [--snr 0.25 0.5 1 2 4] [--trials 5 10 20] [--max-steps 200] [--real]

Calibration cuts stimulus-locked epochs (``--epoch``, default the calibration's 1 s from the onset; the encoder is
resized to them) and the band-power baseline reads the same epochs. Onsets are 2.5 s apart, so that no epoch holds the
next trial's response.

With ``--real`` (or ``--only-real``), two real sessions from ../shared/data go through the same fine-tuning and
evaluation, one image per class (class identification): the bci-essentials SSVEP session (DSI-7, 3 targets, shown
in blocks: the last 20 % of each target's trials are held out, with the two trials before them dropped so that no
overlapping window is on both sides) and the Muse N170 session (face vs house, randomly interleaved: 20 % of each
class held out at random).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt
from scipy.stats import binomtest

from bci_dream.calibrate.headless import calibrate_headless
from bci_dream.generation.tiny import build_tiny_clip_vision, build_tiny_sd_turbo
from bci_dream.io.readers import read_recording
from bci_dream.io.xdf_writer import XdfWriter
from bci_dream.training.pairs import Pair, write_pairs
from bci_dream.training.probe import bandpower_features
from bci_dream.training.settings import FinetuneSettings
from bci_dream.training.windows import WindowSpec, extract_epochs

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND = "bci-essentials/sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf"
CLASSES = {"red-circle": 7.0, "blue-square": 10.0, "green-star": 13.0, "yellow-triangle": 17.0}
RESPONSE_CHANNELS = ("C3", "C1", "Cz", "C2", "C4", "CP5", "CP4", "Pz")
ONSET_SPACING_S = 2.5
RESPONSE_S = (0.1, 0.9)
VALIDATION_FRACTION = 0.2


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def make_session(background, folder: Path, snr: float, per_class: int, seed: int) -> Path:
    """Write ``folder/session.xdf`` and ``folder/pairs.csv``: ``per_class`` training trials per class plus the
    held-out share, in a seeded random order, with the responses injected. Returns the manifest."""
    rng = np.random.default_rng(seed)
    n_total = int(np.ceil(per_class / (1 - VALIDATION_FRACTION)))
    order = rng.permutation(np.repeat(np.arange(len(CLASSES)), n_total))
    fs = background.sfreq
    need = int((len(order) + 2) * ONSET_SPACING_S * fs)
    data = background.data.astype(np.float64)
    reps = int(np.ceil(need / len(data)))
    tiled = np.concatenate([data if k % 2 == 0 else data[::-1] for k in range(reps)])[:need]
    sd = sosfiltfilt(butter(4, (1.0, 45.0), btype="band", fs=fs, output="sos"), tiled, axis=0).std(0)
    channels = [background.ch_names.index(c) for c in RESPONSE_CHANNELS]
    n_burst = int((RESPONSE_S[1] - RESPONSE_S[0]) * fs)
    t = np.arange(n_burst) / fs
    onsets = []
    for k, cls in enumerate(order):
        start = int((1.0 + k * ONSET_SPACING_S) * fs)
        onsets.append(start)
        freq = list(CLASSES.values())[cls]
        burst = np.hanning(n_burst) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        begin = start + int(RESPONSE_S[0] * fs)
        tiled[begin:begin + n_burst, channels] += snr * sd[channels] * burst[:, None] * np.sqrt(2)
    times = 1000.0 + np.arange(len(tiled)) / fs
    path = folder / "session.xdf"
    with XdfWriter(path) as writer:
        eeg = writer.add_stream("known-answer", "EEG", len(background.ch_names), fs, "float32",
                                channel_labels=list(background.ch_names), channel_units="microvolts")
        markers = writer.add_stream("known-answer markers", "Markers", 1, 0.0, "string")
        writer.write_samples(eeg, tiled.astype(np.float32), times)
        writer.write_strings(markers, [str(c) for c in order], times[onsets])
    names = list(CLASSES)
    stimuli = ROOT / "calibration" / "stimuli" / "shapes-colours"
    pairs = [Pair(path, float(times[s]), str(c), stimuli / names[c] / f"{names[c]}-1.png", names[c])
             for s, c in zip(onsets, order)]
    return write_pairs(folder / "pairs.csv", pairs)


def band_power_baseline(train_csv: Path, val_csv: Path, spec: WindowSpec) -> tuple[int, int]:
    """(correct, total) of shrinkage LDA on log band power, trained on ``train_csv``'s epochs, tested on ``val_csv``'s."""
    from bci_dream.training.pairs import read_pairs

    def features(csv: Path):
        pairs = read_pairs(csv)
        rec = read_recording(pairs[0].recording)
        windows, mask, valid = extract_epochs(rec, spec, [p.onset for p in pairs])
        x = bandpower_features(windows[valid], np.broadcast_to(mask, (int(valid.sum()), len(mask))), spec.target_sfreq)
        return x, np.array([p.label for p, ok in zip(pairs, valid) if ok])

    xt, yt = features(train_csv)
    xv, yv = features(val_csv)
    mu, sd = xt.mean(0), xt.std(0) + 1e-9
    xt, xv = (xt - mu) / sd, (xv - mu) / sd
    classes = sorted(set(yt))
    means = np.stack([xt[yt == c].mean(0) for c in classes])
    within = np.concatenate([xt[yt == c] - means[i] for i, c in enumerate(classes)])
    cov = np.cov(within.T)
    cov = 0.5 * cov + 0.5 * np.eye(len(cov)) * np.trace(cov) / len(cov)  # shrinkage
    icov = np.linalg.pinv(cov)
    scores = xv @ icov @ means.T - 0.5 * np.sum(means @ icov * means, axis=1)
    guess = np.array(classes)[scores.argmax(1)]
    return int((guess == yv).sum()), len(yv)


def real_sessions(data: Path, settings: FinetuneSettings, work: Path) -> None:
    """Fine-tune and evaluate on the two real sessions; print one line each beside the band-power baseline."""
    from bci_dream.training.evaluate import evaluate
    from bci_dream.training.finetune import finetune

    stimuli = ROOT / "calibration" / "stimuli" / "shapes-colours"
    names = list(CLASSES)
    spec = WindowSpec(window_s=settings.epoch_s or 2.0, target_sfreq=256.0)
    sessions = []
    ssvep = data / "bci-essentials/ssvep_example.xdf"
    rec = read_recording(ssvep)
    trials = [m for m in rec.markers if m.text.startswith("1.4,")][::3]
    by_target: dict[str, list] = {}
    for m in trials:
        by_target.setdefault(m.text.split(",")[1], []).append(m)
    train, held = [], []
    for target, group in sorted(by_target.items()):
        k = max(1, round(0.2 * len(group)))
        image = stimuli / names[int(target)] / f"{names[int(target)]}-1.png"
        train += [Pair(ssvep, m.timestamp, m.text, image, f"target {target}") for m in group[:-k - 2]]
        held += [Pair(ssvep, m.timestamp, m.text, image, f"target {target}") for m in group[-k:]]
    sessions.append(("SSVEP (DSI-7, 3 targets, chronological hold-out)", train, held, 1 / 3))
    muse = data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
    rec = read_recording(muse)
    rng = np.random.default_rng(0)
    train, held = [], []
    for marker, label in (("1", "house"), ("2", "face")):
        group = [m for m in rec.markers if m.text == marker]
        out = set(rng.choice(len(group), round(0.2 * len(group)), replace=False).tolist())
        image = stimuli / names[int(marker) - 1] / f"{names[int(marker) - 1]}-1.png"
        train += [Pair(muse, m.timestamp, m.text, image, label) for i, m in enumerate(group) if i not in out]
        held += [Pair(muse, m.timestamp, m.text, image, label) for i, m in enumerate(group) if i in out]
    sessions.append(("Muse N170 (face vs house, random hold-out)", train, held, 1 / 2))
    for name, train, held, chance in sessions:
        folder = work / name.split()[0].lower()
        folder.mkdir()
        write_pairs(folder / "train.csv", train)
        write_pairs(folder / "validation.csv", held)
        started = time.perf_counter()
        finetune(folder / "train.csv", folder / "model", settings, progress=False)
        report = evaluate(folder / "validation.csv", folder / "model", clip_model=settings.clip_model, classifier=None,
                          n_way=len(CLASSES), seed=0, device="cpu")
        r = report.identification
        k = round(r.accuracy * r.n_items)
        bk, bn = band_power_baseline(folder / "train.csv", folder / "validation.csv", spec)
        print(f"{name}: {len(train)} training, {r.n_items} held-out trials; {r.n_way}-way, chance {chance:.0%} | "
              f"calibration {cell(k, r.n_items, chance)} | band power + LDA {cell(bk, bn, chance)} | "
              f"{time.perf_counter() - started:.0f} s", flush=True)


def cell(k: int, n: int, chance: float = 0.25) -> str:
    """``accuracy [95 % interval] p=`` of k correct of n against ``chance``."""
    lo, hi = wilson(k, n)
    p = binomtest(k, n, chance, alternative="greater").pvalue
    return f"{k / n:4.0%} [{lo:3.0%}-{hi:3.0%}] p={p:.1g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("BCI_DREAM_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--snr", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--trials", type=int, nargs="+", default=[5, 10, 20], help="training trials per class")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--alignment", default="both")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="keep the random encoder frozen (default: trained, as calibration does without --init)")
    parser.add_argument("--epoch", type=float, default=FinetuneSettings.epoch_s,
                        help="epoch length in seconds from each onset (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also the real SSVEP and N170 sessions")
    parser.add_argument("--only-real", action="store_true", help="only the real sessions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    background = read_recording(args.data / BACKGROUND)
    work = Path(tempfile.mkdtemp(prefix="known-answer-"))
    sd = build_tiny_sd_turbo(work / "sd", seed=0)
    clip = build_tiny_clip_vision(work / "clip", seed=0)
    settings = FinetuneSettings(model=str(sd), clip_model=str(clip), preset=args.preset, diffusion_weight=0.0,
                                max_steps=args.max_steps, batch_size=16, lr=1e-3, resolution=64, device="cpu",
                                alignment=args.alignment, train_encoder=False if args.freeze_encoder else None, seed=args.seed,
                                checkpoint_every=10_000, eval_every=10_000, epoch_s=args.epoch)
    print(f"background: {BACKGROUND} ({background.n_channels} ch, {background.sfreq:g} Hz, "
          f"{background.duration:.0f} s, tiled); 4 classes at {', '.join(f'{f:g}' for f in CLASSES.values())} Hz on "
          f"{', '.join(RESPONSE_CHANNELS)}; held out {VALIDATION_FRACTION:.0%} per class; 4-way, chance 25 %")
    print(f"model: tiny random-weight SD-Turbo-shaped pipeline + tiny CLIP (real formats), encoder '{args.preset}' "
          f"(random init, {'frozen' if args.freeze_encoder else 'trained'}), heads, no UNet, {args.max_steps} steps, "
          f"alignment {args.alignment}, epochs {args.epoch:g} s from the onset")
    if args.only_real:
        real_sessions(args.data, settings, work)
        return
    print(f"{'SNR':>5} {'train/class':>11} {'held out':>8} | {'calibration':>24} | {'band power + LDA':>24} | "
          f"{'s':>5}")
    for snr in args.snr:
        for per_class in args.trials:
            folder = work / f"snr{snr:g}-n{per_class}"
            folder.mkdir()
            manifest = make_session(background, folder, snr, per_class, args.seed)
            started = time.perf_counter()
            result = calibrate_headless(None, "known", settings, pairs=manifest, validation_fraction=VALIDATION_FRACTION,
                                        figure_rows=0, subjects_dir=folder / "subject", progress=False)
            seconds = time.perf_counter() - started
            v = result.profile.validation
            k = round(v["accuracy"] * v["n_items"])
            spec = WindowSpec(window_s=settings.epoch_s or 2.0, target_sfreq=256.0)
            bk, bn = band_power_baseline(folder / "subject" / "train.csv",
                                         folder / "subject" / "validation.csv", spec)

            print(f"{snr:5g} {per_class:11d} {v['n_items']:8d} | {cell(k, v['n_items']):>24} | {cell(bk, bn):>24} | "
                  f"{seconds:5.1f}", flush=True)
    if args.real:
        real_sessions(args.data, settings, work)


if __name__ == "__main__":
    main()

