"""Linear probe on frozen encoder embeddings for two real recordings, against band power and chance.

- SSVEP (bci-essentials ssvep_example.xdf, DSI-7): the target index in each '1.4,<target>,10,12,15'
  marker; one window every third marker (about 1 s apart). The session shows the three targets in three
  blocks, so target and time are confounded; folds are grouped by 5-s segments so that neighbouring,
  overlapping windows never sit on both sides of a split.
- Muse N170 (muse-lsl): face ('2') vs house ('1') trials, randomly interleaved; the 2-s window that
  starts at each stimulus onset.

    python benchmarks/linear_probe.py --checkpoint CKPT [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from bci_dream.io.readers import read_recording
from bci_dream.models.checkpoint import load_checkpoint
from bci_dream.training.probe import bandpower_features, chance_level, cross_validated_accuracy, embedding_features
from bci_dream.training.windows import WindowSpec, extract_epochs


def ssvep(data: Path, spec: WindowSpec):
    rec = read_recording(data / "bci-essentials/ssvep_example.xdf")
    trials = [m for m in rec.markers if m.text.startswith("1.4,")][::3]
    onsets = np.array([m.timestamp for m in trials])
    labels = np.array([int(m.text.split(",")[1]) for m in trials])
    windows, mask, valid = extract_epochs(rec, spec, onsets)
    groups = np.floor((onsets - rec.times[0]) / 5.0).astype(int)
    return windows[valid], mask, labels[valid], groups[valid]


def n170(data: Path, spec: WindowSpec):
    rec = read_recording(data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv")
    trials = [m for m in rec.markers if m.text in ("1", "2")]
    onsets = np.array([m.timestamp for m in trials])
    labels = np.array([m.text for m in trials])
    windows, mask, valid = extract_epochs(rec, spec, onsets)
    return windows[valid], mask, labels[valid], None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a pretrain (or finetune) checkpoint")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "BCI_DREAM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model, raw = load_checkpoint(args.checkpoint)
    enc = model.encoder
    pre = model.config.preprocessing
    spec = WindowSpec(window_s=enc.config.window_seconds, target_sfreq=enc.config.sfreq,
                      bandpass=pre.bandpass, notch=pre.notch)
    print(f"checkpoint {args.checkpoint}: preset '{enc.config.preset}', "
          f"{raw.get('meta', {}).get('steps', '?')} steps")
    for name, load in (("SSVEP target (3 classes)", ssvep), ("N170 face vs house", n170)):
        windows, mask, labels, groups = load(args.data, spec)
        masks = np.broadcast_to(mask, windows.shape[:2])
        emb = embedding_features(enc, windows, masks)
        bp = bandpower_features(windows, masks, spec.target_sfreq)
        r_emb = cross_validated_accuracy(emb, labels, groups=groups, folds=args.folds, name="embeddings")
        r_bp = cross_validated_accuracy(bp, labels, groups=groups, folds=args.folds, name="band power")
        print(f"{name}: {len(labels)} windows, {int(mask.sum())} channels in the montage; chance "
              f"{chance_level(labels):.3f}; embeddings {r_emb.accuracy:.3f} ± {r_emb.std:.3f} ({r_emb.n_features} "
              f"features); band power {r_bp.accuracy:.3f} ± {r_bp.std:.3f} ({r_bp.n_features} features)")


if __name__ == "__main__":
    main()
