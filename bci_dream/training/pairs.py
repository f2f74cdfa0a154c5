"""EEG–image pairs: the manifest that says which image a person saw at which moment of a recording.

A pairs manifest is a CSV file with the header ``recording,onset,marker,image,class``:

- ``recording``: the recording file (any format :func:`bci_dream.io.readers.read_recording` reads);
- ``onset``: seconds in the recording's time base (its ``times``/marker timestamps), or empty;
- ``marker``: marker text; with an empty ``onset`` the row means "every occurrence of that marker";
- ``image``: the image shown;
- ``class``: optional label (e.g. ``face``), kept for evaluation.

Paths may be relative to the manifest's folder. ``bci-dream make-pairs`` writes one row per marker
occurrence for logs that record only the category shown (the image is then chosen from the
category's folder, round-robin over a seeded shuffle).
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bci_dream.core.errors import BciDreamError
from bci_dream.core.files import write_atomically
from bci_dream.io.image_file import IMAGE_SUFFIXES, is_readable_image
from bci_dream.io.readers import read_recording

if TYPE_CHECKING:  # pragma: no cover
    from bci_dream.io.recording import Recording
    from bci_dream.signal.channels import ChannelNaming
    from bci_dream.training.windows import WindowSpec

log = logging.getLogger(__name__)

COLUMNS = ("recording", "onset", "marker", "image", "class")
REQUIRED = ("recording", "onset", "marker", "image")


class PairsError(BciDreamError):
    """A pairs manifest, or what it names, is missing or malformed."""


@dataclass(frozen=True)
class Pair:
    """One manifest row, with paths resolved.

    Attributes:
        recording: the recording file.
        onset: the image onset in the recording's time base (s), or None to use every ``marker``.
        marker: marker text (informative when ``onset`` is given, the selector when it is not).
        image: the image file shown.
        label: the class label, or None.
    """
    recording: Path
    onset: float | None
    marker: str | None
    image: Path
    label: str | None = None


# -- reading and writing --------------------------------------------------------------------------

def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Read a pairs manifest; relative paths are taken from the manifest's folder.

    Raises:
        PairsError: the manifest is missing or unreadable, lacks a column, or a row names a
            recording or image that does not exist, or has neither onset nor marker.
    """
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"pairs manifest {path} does not exist; write one with 'bci-dream make-pairs' "
                         f"(columns: {','.join(COLUMNS)})")
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise PairsError(f"{path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                 f"(header must be {','.join(COLUMNS)}; 'class' is optional)")
            rows = [({(k or "").strip(): (v or "").strip() for k, v in row.items() if not isinstance(v, list)},
                     reader.line_num) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PairsError(f"cannot read pairs manifest {path}: {e}") from e

    pairs: list[Pair] = []
    for row, line in rows:
        if not any(row.values()):
            continue  # blank line
        where = f"{path.name} line {line}"
        recording = _resolve(base, row["recording"], where, "recording")
        image = _resolve(base, row["image"], where, "image")
        onset: float | None = None
        if row["onset"]:
            try:
                onset = float(row["onset"])
            except ValueError:
                raise PairsError(f"{where}: onset {row['onset']!r} is not a number of seconds") from None
            if not np.isfinite(onset):
                raise PairsError(f"{where}: onset {row['onset']!r} is not finite")
        marker = row["marker"] or None
        if onset is None and marker is None:
            raise PairsError(f"{where}: give an onset (seconds) or a marker text")
        pairs.append(Pair(recording, onset, marker, image, row.get("class") or None))
    if not pairs:
        raise PairsError(f"pairs manifest {path} has no rows")
    return pairs


def _resolve(base: Path, text: str, where: str, what: str) -> Path:
    if not text:
        raise PairsError(f"{where}: the {what} column is empty")
    p = Path(text).expanduser()
    p = Path(os.path.normpath(p if p.is_absolute() else base / p))
    if not p.is_file():
        raise PairsError(f"{where}: {what} {text} does not exist ({p})")
    return p


def write_pairs(path: str | os.PathLike, pairs: Sequence[Pair]) -> Path:
    """Write ``pairs`` as a manifest at ``path``; paths are stored relative to its folder where possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = Path(os.path.abspath(path.parent))

    def rel(p: Path) -> str:
        target = Path(os.path.abspath(p))
        try:
            common = Path(os.path.commonpath([target, base]))
        except ValueError:  # another drive on Windows
            return str(target)
        if common == Path(common.anchor):  # nothing shared but the root: keep it absolute
            return str(target)
        return Path(os.path.relpath(target, base)).as_posix()

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for p in pairs:
                w.writerow([rel(p.recording), "" if p.onset is None else repr(float(p.onset)), p.marker or "",
                            rel(p.image), p.label or ""])

    write_atomically(path, write)
    return path


# -- making pairs from a log that records only the category ---------------------------------------

def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; :class:`PairsError` if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairsError(f"image folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise PairsError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    bad = [p.name for p in images if not is_readable_image(p)]
    if bad:
        raise PairsError(f"image folder {folder}: {len(bad)} image(s) are damaged or not images ({', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}); replace or remove them")
    return images


#: The marker a presenter sends beside the class marker to name the image shown (``stim:<class>/<file>``).
DETAIL_PREFIX = "stim:"
#: Seconds between a class marker and its detail marker for them to belong to one onset.
DETAIL_TOLERANCE_S = 0.05


def shown_images(recording: Recording) -> list[tuple[float, str]]:
    """(time, ``"<class>/<file>"``) of every detail marker in ``recording``, in time order."""
    return [(m.timestamp, m.text[len(DETAIL_PREFIX):]) for m in recording.markers if m.text.startswith(DETAIL_PREFIX)]


def make_pairs(recording: Recording, classes: Mapping[str, str | os.PathLike],
               labels: Mapping[str, str] | None = None, seed: int = 0, *, round_robin: bool = False) -> list[Pair]:
    """One pair per occurrence of each marker text in ``classes`` (marker text → image folder), with the image that
    was shown: the one named by the ``stim:<class>/<file>`` marker sent with the onset (the calibration wizard sends
    them), looked up in the class's folder.

    With ``round_robin``, onsets whose log names no image (logs that record the category shown, not the image) get
    an image of their class's folder in turn, over a shuffle seeded by ``seed`` and the marker text — the CLIP
    target is then often not the image seen, and a warning says how many. The label is ``labels[marker]``, else
    the folder's name. Pairs are in time order.

    Raises:
        PairsError: a marker text never occurs in the recording, a folder has no images, the named image is not
            in its folder, or (without ``round_robin``) an onset whose image the log does not name.
    """
    labels = dict(labels or {})
    counts = Counter(m.text for m in recording.markers)
    unknown = [k for k in labels if k not in classes]
    if unknown:
        raise PairsError(f"--label {unknown[0]}=... names a marker without a --class {unknown[0]}=FOLDER")
    pools: dict[str, list[Path]] = {}
    for marker, folder in classes.items():
        if counts[marker] == 0:
            seen = ", ".join(f"{t!r} x{n}" for t, n in counts.most_common(12)) or "none"
            raise PairsError(f"marker {marker!r} does not occur in {recording.path.name} (markers there: {seen})")
        images = list_images(folder)
        random.Random(f"{seed}:{marker}").shuffle(images)
        pools[marker] = images
    details = shown_images(recording)
    detail_times = np.array([t for t, _ in details])
    used: Counter[str] = Counter()
    guessed: Counter[str] = Counter()
    pairs = []
    for m in recording.markers:
        if m.text not in pools:
            continue
        image = None
        if len(detail_times):
            k = int(np.argmin(np.abs(detail_times - m.timestamp)))
            if abs(detail_times[k] - m.timestamp) <= DETAIL_TOLERANCE_S:
                image = Path(classes[m.text]) / Path(details[k][1]).name
                if not image.is_file():
                    raise PairsError(f"{recording.path.name} says {details[k][1]} was shown at {m.timestamp:.3f} s, "
                                     f"but {image} does not exist; give the stimulus set it was recorded with")
        if image is None:
            if not round_robin:
                raise PairsError(f"{recording.path.name} does not name the image shown at marker {m.text!r} "
                                 f"({m.timestamp:.3f} s; no '{DETAIL_PREFIX}<class>/<file>' marker with it); pass "
                                 "--round-robin to pair each such trial with an image of its class in turn, or "
                                 "write the manifest yourself")
            pool = pools[m.text]
            image = pool[used[m.text] % len(pool)]
            used[m.text] += 1
            guessed[m.text] += 1
        pairs.append(Pair(recording.path, float(m.timestamp), m.text, image,
                          labels.get(m.text, Path(classes[m.text]).name)))
    if guessed:
        log.warning("%s: %d of %d trials are paired with an image of their class in turn (--round-robin), not the "
                    "image shown: their CLIP targets are guesses", recording.path.name, sum(guessed.values()),
                    len(pairs))
    return pairs


def epoch_overlap(pairs: Sequence[Pair], window_s: float, offset_s: float = 0.0) -> str | None:
    """One line when the EEG windows of ``pairs`` overlap: onsets (in one recording) closer than ``window_s``, so
    each window also holds the next trial's response; None when they do not."""
    by_recording: dict[Path, list[float]] = {}
    for p in pairs:
        if p.onset is not None:
            by_recording.setdefault(Path(p.recording), []).append(float(p.onset))
    gaps = np.concatenate([np.diff(np.sort(t)) for t in by_recording.values() if len(t) > 1] or [np.zeros(0)])
    gaps = gaps[gaps > 0]
    if not gaps.size or np.median(gaps) >= window_s:
        return None
    typical = float(np.median(gaps))
    return (f"the EEG windows overlap: they are {window_s:g} s long (from {offset_s:g} s after each onset) but "
            f"onsets are {typical:.2f} s apart (median), so each window also holds {window_s - typical:.2f} s of the "
            "next trial; show images less often (a protocol's isi_s + image_s at least the window) for cleaner epochs")


# -- pairs → arrays for training ------------------------------------------------------------------

def pair_onsets(pair: Pair, recording: Recording) -> list[float]:
    """The onsets a pair stands for: its own, or every occurrence of its marker."""
    if pair.onset is not None:
        return [pair.onset]
    return [m.timestamp for m in recording.markers if m.text == pair.marker]


def pairs_to_arrays(pairs: Sequence[Pair], spec: WindowSpec, offset_s: float = 0.0,
                    naming: ChannelNaming | None = None) -> tuple[np.ndarray, np.ndarray, list[Path], list[str | None]]:
    """Cut the EEG window of every pair (``naming``: what the recordings' channels are, see
    :func:`~bci_dream.io.readers.read_recording`).

    Each recording is read once. Rows without an onset expand to every occurrence of their marker.
    Epochs that ``extract_epochs`` marks invalid (outside the recording, gaps) are skipped with
    one warning that counts them.

    Returns:
        eeg: float32 [N, C, T] normalised windows in the canonical montage (C=128, T=512 by default).
        mask: bool [N, C], the montage channels each window's recording has.
        images: N image paths.
        labels: N class labels (or None).

    Raises:
        PairsError: no valid epoch is left.
    """
    from bci_dream.training.windows import extract_epochs

    by_recording: dict[Path, list[Pair]] = {}
    for p in pairs:
        by_recording.setdefault(Path(p.recording), []).append(p)

    eeg_parts, mask_parts, images, labels = [], [], [], []
    total = skipped = 0
    for path, group in by_recording.items():
        recording = read_recording(path, naming=naming)
        onsets: list[float] = []
        owners: list[Pair] = []
        for p in group:
            these = pair_onsets(p, recording)
            if not these:
                log.warning("%s: marker %r does not occur; its row is skipped", path.name, p.marker)
            onsets += these
            owners += [p] * len(these)
        if not onsets:
            continue
        windows, mask, valid = extract_epochs(recording, spec, onsets, offset_s=offset_s)
        valid = np.asarray(valid, dtype=bool)
        total += len(onsets)
        skipped += int((~valid).sum())
        if valid.any():
            eeg_parts.append(np.asarray(windows, dtype=np.float32)[valid])
            mask_parts.append(np.broadcast_to(np.asarray(mask, dtype=bool), (int(valid.sum()), len(mask))))
            for p, ok in zip(owners, valid):
                if ok:
                    images.append(p.image)
                    labels.append(p.label)
    if skipped:
        log.warning("skipped %d of %d epochs that do not fit in their recording", skipped, total)
    if not eeg_parts:
        raise PairsError(f"none of the {total} epochs of the pairs fit in their recordings; check the onsets")
    eeg = np.ascontiguousarray(np.concatenate(eeg_parts), dtype=np.float32)
    mask = np.ascontiguousarray(np.concatenate(mask_parts), dtype=bool)
    return eeg, mask, images, labels
