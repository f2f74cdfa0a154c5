"""Encoder windows cut from recordings with exactly the live path's preprocessing.

The live path is: chunk → µV → :class:`~bci_dream.signal.filters.OnlineFilter` (causal band-pass +
notch, state carried across chunks, initialised to the steady state of the first sample) → ring
buffer → :class:`~bci_dream.signal.windower.Windower` (resampling onto the stream's fixed output grid,
canonical montage mapping) → :func:`~bci_dream.signal.normalize.normalize_window`.

Offline, :func:`preprocess` runs the same filter over the whole recording in one call (the state
carries sample to sample, so this equals any chunking), and windows are cut with the Windower's own
grid and geometry: the outputs that no later sample changes are computed once for the whole recording,
and each window's newest outputs (within half a filter of its last source sample) from the samples before
its end only, the newest one held beyond it, as live. The result equals ``Windower.window_at(index_end)``
on a ring buffer fed the same signal from its start, up to float rounding (``tests/test_training_windows.py``
checks this), edges included.

A window is identified by ``index_end``: one past the index of its last source sample, like
``Windower.window_at``. Its ``t_end`` is ``recording.times[index_end - 1]``; its last sample lies
``Window.lag_s`` (under one output period) before that.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError, RecordingError
from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.io.readers import read_recording
from bci_dream.io.recording import Recording
from bci_dream.signal.channels import LEFT_OUT
from bci_dream.signal.filters import OnlineFilter, design_filter
from bci_dream.signal.gaps import missing_seconds
from bci_dream.signal.montage import Montage
from bci_dream.signal.normalize import normalize_window
from bci_dream.signal.windower import Windower

try:  # torch is needed only for WindowDataset
    import torch
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None
    _Dataset = object

if TYPE_CHECKING:  # pragma: no cover
    from bci_dream.models.eeg_model import EegModelConfig

log = logging.getLogger(__name__)

#: µV: a window in which every channel the model sees stays within this range holds no EEG (a 16-bit EDF's step is
#: about 0.1 µV, the smallest real EEG moves tens).
FLAT_UV = 0.5



@dataclass
class WindowSpec:
    """What an encoder window is.

    Attributes:
        window_s: window length in seconds (2 s: 512 samples at 256 Hz, the encoder presets' input; DreamDiffusion itself used 0.44 s at 1 kHz stretched to 512 samples).
        target_sfreq: sampling rate of the windows in Hz.
        montage: montage the channels are mapped into (default: the canonical 128 channels).
        bandpass: band-pass edges in Hz of the online filter, or None.
        notch: mains notch in Hz, or None.
    """

    window_s: float = defaults.WINDOW_S
    target_sfreq: float = defaults.WINDOW_SFREQ
    montage: Montage = field(default_factory=Montage.canonical)
    bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ
    notch: float | None = defaults.NOTCH_HZ

    @property
    def n_samples(self) -> int:
        """Samples per window at ``target_sfreq`` (T)."""
        return int(round(self.window_s * self.target_sfreq))

    @property
    def n_channels(self) -> int:
        """Rows of a window (montage channels)."""
        return len(self.montage)


def window_spec_for(config: EegModelConfig) -> WindowSpec:
    """The :class:`WindowSpec` that makes windows for a model of ``config`` (length, rate and filters from it),
    as the live windower makes them."""
    enc, pre = config.encoder, config.preprocessing
    return WindowSpec(window_s=enc.window_seconds, target_sfreq=enc.sfreq,
                      bandpass=tuple(pre.bandpass) if pre.bandpass else None, notch=pre.notch)


def preprocess(recording: Recording, *, bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ,
               notch: float | None = defaults.NOTCH_HZ) -> np.ndarray:
    """The recording filtered as the live pipeline filters it: float32 [n, C], µV.

    Causal SOS band-pass + notch (:func:`~bci_dream.signal.filters.design_filter`) applied by one
    :class:`~bci_dream.signal.filters.OnlineFilter` over the whole recording, its state initialised
    to the steady state of the first sample. Non-finite values are forward-filled by the filter; with
    no filter at all they become 0, as in the live pipeline.

    Raises:
        ValueError: the band does not fit the recording's rate.
    """
    sos = design_filter(recording.sfreq, bandpass=bandpass, notch=notch)
    x = recording.data
    if len(sos) == 0:
        finite = np.isfinite(x)
        return np.where(finite, x, np.float32(0)).astype(np.float32) if not finite.all() else x.astype(np.float32)
    return OnlineFilter(sos, recording.n_channels).process(x)


def make_windower(sfreq: float, ch_names: Sequence[str], spec: WindowSpec) -> Windower:
    """A live :class:`Windower` with ``spec``'s settings (over a small ring buffer): its geometry
    (``grid``, ``n_core``, ``n_samples``) and montage ``mapping`` are what offline windows use."""
    capacity = 2 * int(math.ceil(spec.window_s * sfreq)) + 64
    return Windower(RingBuffer(capacity, len(ch_names)), sfreq, ch_names, window_s=spec.window_s,
                    hop_s=1.0, target_sfreq=spec.target_sfreq, montage=spec.montage)


def window_ends(n: int, sfreq: float, spec: WindowSpec, hop_s: float = 1.0, *,
                windower: Windower | None = None) -> np.ndarray:
    """``index_end`` of every window of a recording of ``n`` samples: the first as soon as a window
    fits (like the live windower's first poll), then every ``hop_s`` seconds (rounded to samples)."""
    if not hop_s > 0:
        raise ValueError(f"hop_s must be positive, got {hop_s}")
    w = windower or make_windower(sfreq, ["Cz"], spec)
    if n < w.n_core:
        return np.zeros(0, np.int64)
    hop = hop_s * sfreq
    k = int(math.floor((n - w.n_core) / hop + 1e-9)) + 1
    ends = w.n_core + np.round(np.arange(k) * hop).astype(np.int64)
    return ends[ends <= n]


def straddles_gap(times: np.ndarray, sfreq: float, ends: np.ndarray, n_core: int) -> np.ndarray:
    """bool [len(ends)]: the window of source samples ``[end - n_core, end)`` spans more time than its samples
    account for by a gap (:func:`bci_dream.signal.gaps.missing_seconds`): samples that never arrived."""
    times = np.asarray(times, np.float64)
    ends = np.asarray(ends, np.int64)
    return missing_seconds(times[ends - n_core], times[ends - 1], n_core, sfreq) > 0


def dead_windows(data: np.ndarray, ends: np.ndarray, n_core: int) -> np.ndarray:
    """bool [len(ends)]: the source samples ``[end - n_core, end)`` of ``data`` (float [n, C] µV, the channels the
    model sees) hold no EEG: over half of the values are not finite, or every channel stays within
    :data:`FLAT_UV` (a disconnected amplifier, a file of zeros)."""
    out = np.zeros(len(ends), bool)
    for i, end in enumerate(np.asarray(ends, np.int64)):
        x = data[end - n_core:end]
        finite = np.isfinite(x)
        if finite.sum() * 2 < x.size:
            out[i] = True
            continue
        values = np.where(finite, x, np.nan)
        spread = np.fmax.reduce(values, axis=0) - np.fmin.reduce(values, axis=0)  # (NaN for a channel of no values)
        out[i] = bool(np.all(~(spread > FLAT_UV)))
    return out


def _cut(filtered: np.ndarray, ends: np.ndarray, w: Windower) -> np.ndarray:
    """Windows of the mapped channels only: float32 [N, n_mapped, T], made as the live Windower makes them (not
    normalised). ``ends`` must satisfy ``n_core <= end <= n``."""
    src = w.mapping.source_index
    T = w.n_samples
    ends = np.asarray(ends, np.int64)
    out = np.zeros((len(ends), len(src), T), np.float32)
    if len(ends) == 0 or len(src) == 0:
        return out
    x = np.nan_to_num(np.asarray(filtered[:, src], np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    grid = w.grid
    if grid is None:
        for i, end in enumerate(ends):
            out[i] = x[end - T:end].T
        return out
    last = np.array([grid.last_output(e) for e in ends], np.int64)
    settled_end = np.array([grid.settled_end(e) for e in ends], np.int64)
    first = last - T + 1
    # The outputs no later sample changes, once for the whole recording (the samples before 0 held at sample 0).
    k0 = int(first.min())
    settled = grid.outputs(x, 0, np.arange(k0, max(k0, int(settled_end.max()))), 0, len(x) - 1)
    for i, end in enumerate(ends):
        n_settled = int(settled_end[i] - first[i])
        out[i, :, :n_settled] = settled[first[i] - k0:settled_end[i] - k0].T
        # The outputs within half a filter of the newest sample, from the samples before the end only: as live.
        out[i, :, n_settled:] = grid.edge_outputs(x, 0, int(end)).T
    return out


def _expand(compact: np.ndarray, w: Windower) -> np.ndarray:
    full = np.zeros((compact.shape[0], len(w.montage), compact.shape[-1]), np.float32)
    full[:, w.mapping.target_index] = compact
    return full


def extract_windows(recording: Recording, spec: WindowSpec | None = None, hop_s: float = 1.0, *,
                    filtered: np.ndarray | None = None, normalise: bool = True,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every window of ``recording``, every ``hop_s`` seconds, as the live path would make them.

    Args:
        recording: any :class:`Recording`.
        spec: window settings (default :class:`WindowSpec`).
        hop_s: seconds between window ends.
        filtered: the result of :func:`preprocess` with ``spec``'s filters, to skip filtering again.
        normalise: apply :func:`normalize_window` (True for encoder inputs).

    Returns:
        ``(windows, mask, t_end)``: float32 [N, C_montage, T] (normalised unless asked otherwise,
        masked rows 0), bool [C_montage], float64 [N] recording time of each window's last sample.
        N is 0 when the recording is shorter than one window.
    """
    spec = spec or WindowSpec()
    w = make_windower(recording.sfreq, recording.ch_names, spec)
    if filtered is None:
        filtered = preprocess(recording, bandpass=spec.bandpass, notch=spec.notch)
    ends = window_ends(recording.n_samples, recording.sfreq, spec, hop_s, windower=w)
    compact = _cut(filtered, ends, w)
    if normalise:
        compact = normalize_window(compact, np.ones(compact.shape[1], bool))
    t_end = recording.times[ends - 1] if len(ends) else np.zeros(0, np.float64)
    return _expand(compact, w), w.mapping.mask.copy(), np.asarray(t_end, np.float64)


def extract_epochs(recording: Recording, spec: WindowSpec | None, onsets: Sequence[float] | np.ndarray,
                   offset_s: float = 0.0, *, filtered: np.ndarray | None = None, normalise: bool = True,
                   max_gap_s: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows that start at ``onset + offset_s`` (e.g. the 2 s after a stimulus appeared).

    ``onsets`` are in the time base of ``recording.times`` (marker timestamps). The window's first
    source sample is the one whose timestamp is nearest to ``onset + offset_s``; the window covers
    the ``T`` output samples from there, cut and resampled exactly like live windows (its
    ``index_end`` is that sample + ``round((T - 1) * sfreq / target_sfreq) + 1``).

    Args:
        max_gap_s: an onset whose nearest recorded sample is further away than this (or 1.5
            samples, whichever is more) lies outside the recording or in a gap: invalid. The default
            tolerates the timestamp jitter of muselsl files (up to ~30 ms).

    Returns:
        ``(windows, mask, valid)``: float32 [N, C_montage, T], bool [C_montage], bool [N]; windows
        that start before the recording, end after it, or in a gap are invalid and all zero.
    """
    spec = spec or WindowSpec()
    w = make_windower(recording.sfreq, recording.ch_names, spec)
    onsets = np.asarray(onsets, dtype=np.float64).reshape(-1) + float(offset_s)
    n = recording.n_samples
    if filtered is None:
        filtered = preprocess(recording, bandpass=spec.bandpass, notch=spec.notch)
    start = recording.index_at(onsets) if len(onsets) else np.zeros(0, np.int64)
    span = int(round((w.n_samples - 1) * recording.sfreq / spec.target_sfreq)) + 1
    ends = start + span
    tolerance = max(1.5 / recording.sfreq, max_gap_s)
    near = np.abs(recording.times[np.clip(start, 0, max(n - 1, 0))] - onsets) <= tolerance if n \
        else np.zeros(len(onsets), bool)
    valid = near & (ends <= n) & (ends >= w.n_core) & np.isfinite(onsets)
    compact = np.zeros((len(onsets), w.mapping.n_mapped, w.n_samples), np.float32)
    if valid.any():
        compact[valid] = _cut(filtered, ends[valid], w)
        if normalise:
            compact[valid] = normalize_window(compact[valid], np.ones(compact.shape[1], bool))
    return _expand(compact, w), w.mapping.mask.copy(), valid


@dataclass
class RecordingWindows:
    """The encoder windows of one recording, only the rows of the channels it has.

    Attributes:
        windows: float32 [N, n_mapped, T], normalised (the montage rows ``target_index`` of each window).
        target_index: int [n_mapped], the montage row of each stored row.
        t_end: float64 [N], recording time of each window's last sample.
        gap_windows: windows left out because they straddle a gap in the timestamps.
    """

    windows: np.ndarray
    target_index: np.ndarray
    t_end: np.ndarray
    gap_windows: int = 0


def recording_windows(recording: Recording, spec: WindowSpec, hop_s: float = 1.0) -> RecordingWindows:
    """Every window of ``recording`` every ``hop_s`` seconds, as the live path makes them, but those across gaps.

    Raises:
        RecordingError: no channel of the recording is in the montage, it is shorter than a window, or every
            window straddles a gap.
        ValueError: the filter band does not fit its sampling rate.
    """
    w = make_windower(recording.sfreq, recording.ch_names, spec)
    ends = window_ends(recording.n_samples, recording.sfreq, spec, hop_s, windower=w)
    if len(ends) == 0:
        raise RecordingError(f"{recording.path} lasts {recording.duration:.2f} s, shorter than one "
                             f"{spec.window_s:g} s window")
    if w.mapping.n_mapped == 0:
        raise RecordingError(f"no channel of {recording.path} is a 10-05 site (channels: "
                             f"{', '.join(recording.ch_names[:8])}{' ...' if recording.n_channels > 8 else ''}); "
                             "name them with --channels NAMES, --channels-file FILE (a list, a BIDS channels.tsv "
                             "or electrodes.tsv, a montage file) or --layout PROFILE")
    left_out = [c for c in w.mapping.unmapped if not c.endswith(LEFT_OUT)]
    if left_out:
        log.warning("%s: %d of %d channels are not 10-05 sites and are left out: %s", recording.path.name,
                    len(left_out), recording.n_channels, ", ".join(left_out[:12]) + (" ..." if len(left_out) > 12
                                                                                     else ""))
    across = straddles_gap(recording.times, recording.sfreq, ends, w.n_core)
    if across.any():
        log.info("%s: %d of %d windows straddle a gap in the timestamps and are left out", recording.path.name,
                 int(across.sum()), len(ends))
        ends = ends[~across]
        if len(ends) == 0:
            raise RecordingError(f"every window of {recording.path} straddles a gap in its timestamps "
                                 "(samples that never arrived)")
    dead = dead_windows(recording.data[:, w.mapping.source_index], ends, w.n_core)
    if dead.any():
        log.warning("%s: %d of %d windows are flat or missing (every channel constant, or most values NaN) and are "
                    "left out", recording.path.name, int(dead.sum()), len(ends))
        ends = ends[~dead]
        if len(ends) == 0:
            raise RecordingError(f"every window of {recording.path} is flat or missing (every channel constant, or "
                                 "most values NaN): it holds no EEG to learn from")
    filtered = preprocess(recording, bandpass=spec.bandpass, notch=spec.notch)
    windows = normalize_window(_cut(filtered, ends, w), np.ones(w.mapping.n_mapped, bool))
    return RecordingWindows(windows, w.mapping.target_index.copy(), np.asarray(recording.times[ends - 1], np.float64),
                            int(across.sum()))


class WindowDataset(_Dataset):
    """All windows of many recordings, preprocessed once and kept in memory.

    Only the rows of channels that a recording has are stored (``[N_r, n_mapped, T]`` per recording,
    ``float32`` or ``float16``); :meth:`__getitem__` places them into the montage.

    Items: ``dict(eeg=float32 tensor [C, T], mask=bool tensor [C], recording=int)``; ``recording``
    indexes :attr:`recordings`. :meth:`window` also gives the window's ``t_end``.

    Attributes:
        spec: the window settings.
        recordings: one dict per recording used (``path``, ``source_format``, ``sfreq``,
            ``ch_names``, ``n_windows``).
        skipped: ``(path, reason)`` of every recording left out (unreadable, too short, no channel
            in the montage).
    """

    def __init__(self, spec: WindowSpec | None = None, dtype: np.dtype | type = np.float32) -> None:
        self.spec = spec or WindowSpec()
        self.dtype = np.dtype(dtype)
        self.recordings: list[dict] = []
        self.skipped: list[tuple[Path, str]] = []
        #: Windows left out because their samples straddle a gap in the recording's timestamps.
        self.gap_windows = 0
        self._windows: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._t_end: list[np.ndarray] = []
        self._index = np.zeros((0, 2), np.int64)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike], spec: WindowSpec | None = None, hop_s: float = 1.0,
                   on_error: str = "skip", dtype: np.dtype | type = np.float32, **read_options) -> WindowDataset:
        """Read every recording (:func:`read_recording`) and cut its windows.

        Args:
            paths: recording files, any supported format, mixed freely.
            on_error: ``"skip"`` (log a warning, record the file in :attr:`skipped`) or ``"raise"``.
            read_options: passed to :func:`read_recording` (``stream=``, ``board=``).
        """
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
        ds = cls(spec, dtype)
        for p in paths:
            path = Path(p)
            try:
                recording = read_recording(path, **read_options)
                ds.add(recording, hop_s=hop_s)
            except (BciDreamError, ValueError) as e:
                if on_error == "raise":
                    raise
                reason = str(e)
                ds.skipped.append((path, reason))
                log.warning("skipping %s: %s", path, reason)
        if ds.skipped:
            log.warning("%d of %d recordings skipped:\n%s", len(ds.skipped), len(ds.skipped) + len(ds.recordings),
                        "\n".join(f"  {p}: {r}" for p, r in ds.skipped))
        log.info("%s", ds.summary())
        return ds

    def add(self, recording: Recording, hop_s: float = 1.0) -> int:
        """Cut and store the windows of ``recording``; return how many.

        Raises:
            RecordingError: no channel of the recording is in the montage, or it is shorter than a
                window.
            ValueError: the filter band does not fit its sampling rate.
        """
        cut = recording_windows(recording, self.spec, hop_s)
        self.gap_windows += cut.gap_windows
        n = len(cut.t_end)
        r = len(self.recordings)
        self._windows.append(cut.windows.astype(self.dtype))
        self._targets.append(cut.target_index)
        mask = np.zeros(self.spec.n_channels, bool)
        mask[cut.target_index] = True
        self._masks.append(mask)
        self._t_end.append(cut.t_end)
        self.recordings.append({"path": recording.path, "source_format": recording.source_format,
                                "sfreq": recording.sfreq, "ch_names": recording.ch_names, "n_windows": n})
        new = np.stack([np.full(n, r, np.int64), np.arange(n, dtype=np.int64)], axis=1)
        self._index = np.concatenate([self._index, new])
        return n

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray, int, float]:
        """Item ``i`` as numpy: (float32 [C, T], bool [C], recording index, t_end)."""
        r, j = self._index[i]
        eeg = np.zeros((self.spec.n_channels, self.spec.n_samples), np.float32)
        eeg[self._targets[r]] = self._windows[r][j]
        return eeg, self._masks[r].copy(), int(r), float(self._t_end[r][j])

    def __getitem__(self, i: int) -> dict:
        if torch is None:  # pragma: no cover
            raise ImportError("WindowDataset items are torch tensors: pip install torch")
        eeg, mask, r, _ = self.window(int(i))
        return {"eeg": torch.from_numpy(eeg), "mask": torch.from_numpy(mask), "recording": r}

    def summary(self) -> str:
        """One line: windows, recordings, skipped files."""
        gaps = f"; {self.gap_windows} windows across gaps left out" if self.gap_windows else ""
        return (f"{len(self)} windows of {self.spec.n_channels} x {self.spec.n_samples} from "
                f"{len(self.recordings)} recordings; {len(self.skipped)} skipped{gaps}")
