"""A calibration session on disk: its recordings, the trials shown, and what they make for fine-tuning.

A session lives in ``SUBJECT/sessions/<started>/``::

    session.json      subject, device, protocol, stimulus set, trial count, status, the recording parts, and the
                      electrodes' impedance when it was measured before the session (kΩ)
    trials.jsonl      one line per trial shown (appended and flushed as it is shown), or per trial marked
                      affected (e.g. the headset was lost during its EEG window)
    part-01.xdf       the recording (a session resumed after an interruption goes on in part-02.xdf, ...)
    pairs.csv         the EEG-image pairs of the trials that count (``bci-dream finetune`` reads it)

Nothing is rewritten in place: a session stopped half-way (or a killed process) keeps every trial
shown so far, and :meth:`CalibrationSession.next_index` says where to go on. Times are LSL clock
seconds (``pylsl.local_clock()``), the recording's time base.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bci_dream.calibrate.photodiode import recorded_photodiode_offsets
from bci_dream.core.errors import BciDreamError
from bci_dream.io.xdf_reader import read_xdf
from bci_dream.training.pairs import Pair, write_pairs

log = logging.getLogger(__name__)

SESSIONS = "sessions"
SESSION_FILE = "session.json"
TRIALS_FILE = "trials.jsonl"
PAIRS_FILE = "pairs.csv"
#: Status of a session: still being recorded (or killed while it was), stopped early, or complete.
STATUSES = ("recording", "stopped", "complete")


class SessionError(BciDreamError):
    """A session folder that is missing or cannot be read."""


@dataclass(frozen=True)
class ShownTrial:
    """One trial as it happened.

    Attributes:
        index: the trial's index in the protocol's schedule.
        part: 1-based number of the recording part it was shown in.
        marker: the marker text sent at onset (the class index).
        class_name: the image's class.
        image: the image file shown.
        scheduled_s: its onset in the protocol's timeline (s from the session start).
        intended_time: when the schedule wanted it on screen (LSL s).
        requested_time: when the presenter started drawing it (LSL s).
        frame_time: when the drawn frame had been handed to the window system (LSL s); the marker's timestamp.
    """
    index: int
    part: int
    marker: str
    class_name: str
    image: str
    scheduled_s: float
    intended_time: float
    requested_time: float
    frame_time: float


@dataclass(frozen=True)
class TimingReport:
    """How precisely the stimuli were shown and marked (milliseconds).

    Attributes:
        trials: trials shown.
        marker_offset_ms: recorded marker time − frame time per trial found in the recording (the offset
            between the marker a recording carries and the frame it stands for); empty before reading back.
        lateness_ms: frame time − intended onset (timer precision + drawing) per trial.
        draw_ms: frame time − drawing start per trial.
        missing: trials whose marker was not found in the recording.
        photodiode_ms: light onset − marker time per trial, from a photodiode channel (NaN: no edge found;
            empty: no photodiode). This is the true marker-to-display offset.
        refresh_hz: the screen's refresh rate: without a photodiode, the display shows a frame up to
            1/refresh_hz after its frame time (plus the monitor's own lag).
    """
    trials: int
    marker_offset_ms: np.ndarray
    lateness_ms: np.ndarray
    draw_ms: np.ndarray
    missing: int = 0
    photodiode_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    refresh_hz: float | None = None

    def summary(self) -> str:
        """One line: marker-vs-frame offset, onset lateness and drawing time (p50 / p95 / max)."""
        def stats(x: np.ndarray, signed: bool = False) -> str:
            if not x.size:
                return "n/a"
            a = np.abs(x) if signed else x
            return (f"p50 {np.percentile(a, 50):.3f}, p95 {np.percentile(a, 95):.3f}, "
                    f"max {np.max(a):.3f} ms")

        found = f"{self.marker_offset_ms.size} of {self.trials} markers read back"
        text = (f"recorded marker vs frame time |offset| {stats(self.marker_offset_ms, True)} ({found}); onset "
                f"lateness {stats(self.lateness_ms)}; drawing {stats(self.draw_ms)}")
        light = self.photodiode_ms[np.isfinite(self.photodiode_ms)]
        if self.photodiode_ms.size:
            text += (f"; photodiode: light {stats(light)} after the marker ({light.size} of "
                     f"{self.photodiode_ms.size} onsets seen)")
        elif self.refresh_hz:
            text += (f"; the display adds up to {1000 / self.refresh_hz:.1f} ms (one refresh at {self.refresh_hz:g} Hz)"
                     " plus its own lag, which a photodiode measures")
        return text


@dataclass
class CalibrationSession:
    """A session folder (see the module docstring). Create with :meth:`create`, reopen with :meth:`load`.

    Attributes:
        folder: the session folder.
        subject, device, protocol, stimuli: who, on what, with which protocol file and stimulus folder.
        n_trials: trials in the protocol's schedule.
        status: ``"recording"``, ``"stopped"`` or ``"complete"``.
        parts: recording file names, in order.
        trials: trials shown, in order (a trial shown again after its first showing was affected comes twice).
        affected: trial index → why its EEG cannot be used (the latest showing of that index is meant).
        impedance: the electrodes' impedance measured before the session, or None: ``{"measured": ISO time (UTC),
            "method": how, "kohm": {channel: kΩ or None when not measured}}``.
    """
    folder: Path
    subject: str
    device: str
    protocol: str
    stimuli: str
    n_trials: int
    status: str = "recording"
    started: str = ""
    parts: list[str] = field(default_factory=list)
    trials: list[ShownTrial] = field(default_factory=list)
    affected: dict[int, str] = field(default_factory=dict)
    impedance: dict | None = None

    # -- creating and reopening ------------------------------------------------------------------------

    @classmethod
    def create(cls, subject_folder: str | os.PathLike, subject: str, device: str, protocol: str | os.PathLike,
               stimuli: str | os.PathLike, n_trials: int) -> CalibrationSession:
        """A new session folder under ``subject_folder/sessions`` named after the start time (UTC)."""
        now = datetime.now(timezone.utc)
        root = Path(subject_folder) / SESSIONS
        name = now.strftime("%Y%m%dT%H%M%SZ")
        folder, k = root / name, 1
        while folder.exists():
            k += 1
            folder = root / f"{name}-{k}"
        folder.mkdir(parents=True)
        session = cls(folder, subject, device, str(protocol), str(stimuli), int(n_trials),
                      started=now.isoformat(timespec="seconds"))
        session._save_meta()
        (folder / TRIALS_FILE).touch()
        return session

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CalibrationSession:
        """Reopen a session folder (its trials read back from ``trials.jsonl``; a torn last line is skipped).

        Raises:
            SessionError: no ``session.json`` or one that cannot be read.
        """
        folder = Path(folder)
        try:
            meta = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
            session = cls(folder, **{k: meta[k] for k in ("subject", "device", "protocol", "stimuli", "n_trials",
                                                           "status", "started", "parts")},
                          impedance=meta.get("impedance"))
        except FileNotFoundError:
            raise SessionError(f"{folder} is not a calibration session (no {SESSION_FILE})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise SessionError(f"{folder / SESSION_FILE} cannot be read ({e}); start a new session") from None
        path = folder / TRIALS_FILE
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                if "affected" in row:
                    session.affected[int(row["affected"])] = str(row["reason"])
                else:
                    session.trials.append(ShownTrial(**row))
            except (ValueError, TypeError, KeyError):
                log.warning("%s line %d cannot be read (a write cut short?); skipped", path, n)
        return session

    @staticmethod
    def unfinished(subject_folder: str | os.PathLike) -> CalibrationSession | None:
        """The newest session of a subject that was stopped or cut short before its last trial, if any."""
        root = Path(subject_folder) / SESSIONS
        for folder in sorted(root.glob("*"), reverse=True) if root.is_dir() else []:
            try:
                session = CalibrationSession.load(folder)
            except SessionError:
                continue
            if session.status != "complete" and session.next_index() < session.n_trials:
                return session
        return None

    def _save_meta(self) -> None:
        meta = {k: getattr(self, k) for k in ("subject", "device", "protocol", "stimuli", "n_trials", "status",
                                              "started", "parts", "impedance")}
        tmp = self.folder / (SESSION_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / SESSION_FILE)

    def set_impedance(self, method: str, kohm: dict[str, float], measured_at: float | None = None) -> None:
        """Keep the electrodes' impedance (kΩ by channel; NaN: not measured), how and when (UNIX time; default now)
        it was measured."""
        when = datetime.now(timezone.utc) if measured_at is None else datetime.fromtimestamp(measured_at, timezone.utc)
        measured = when.isoformat(timespec="seconds")
        self.impedance = {"measured": measured, "method": method,
                          "kohm": {name: (round(float(v), 2) if math.isfinite(v) else None) for name, v in kohm.items()}}
        self._save_meta()

    # -- while recording -------------------------------------------------------------------------------

    def part_path(self) -> Path:
        """The file for the next recording part (``part-01.xdf``, ``part-02.xdf`` ...); see :meth:`add_part`."""
        return self.folder / f"part-{len(self.parts) + 1:02d}.xdf"

    def add_part(self, path: str | os.PathLike) -> None:
        """Register a recording part once it is being recorded (the session is ``recording`` again)."""
        self.parts.append(Path(path).name)
        self.status = "recording"
        self._save_meta()

    def new_part(self) -> Path:
        """:meth:`part_path`, registered at once."""
        path = self.part_path()
        self.add_part(path)
        return path

    def _append(self, row: dict) -> None:
        with open(self.folder / TRIALS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def add_trial(self, trial: ShownTrial) -> None:
        """Log a trial as shown (written through at once). A trial shown again is no longer affected."""
        self.trials.append(trial)
        self.affected.pop(trial.index, None)
        self._append(asdict(trial))

    def mark_affected(self, indices: list[int], reason: str) -> None:
        """Mark trials whose EEG cannot be used (written through at once)."""
        for index in indices:
            self.affected[index] = reason
            self._append({"affected": index, "reason": reason})

    def trials_after(self, time: float) -> list[int]:
        """Indices of the trials (latest showings) whose onset is after ``time`` (LSL s)."""
        return sorted({t.index for t in self.latest_showings() if t.frame_time > time})

    def finish(self, status: str) -> None:
        """Set the status (``"stopped"`` or ``"complete"``) and write the pairs manifest."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        self.status = status
        self._save_meta()
        if self.usable_trials():
            self.write_pairs()

    # -- reading ---------------------------------------------------------------------------------------

    def snapshot(self) -> CalibrationSession:
        """A copy of the session as it is now (its lists copied), for reading on another thread."""
        return replace(self, parts=list(self.parts), trials=list(self.trials), affected=dict(self.affected))

    def latest_showings(self) -> list[ShownTrial]:
        """Each shown trial index once, at its latest showing, in schedule order."""
        latest: dict[int, ShownTrial] = {}
        for t in self.trials:
            latest[t.index] = t
        return [latest[i] for i in sorted(latest)]

    def next_index(self) -> int:
        """Where to go on: the first affected trial, else the one after the last trial shown."""
        shown = self.latest_showings()
        following = shown[-1].index + 1 if shown else 0
        return min([following, *self.affected])

    def usable_trials(self) -> list[ShownTrial]:
        """Trials shown and not affected, in schedule order."""
        return [t for t in self.latest_showings() if t.index not in self.affected]

    def pairs(self) -> list[Pair]:
        """The EEG-image pairs of the usable trials: onset = the frame time, in the part's recording."""
        return [Pair(self.folder / self.parts[t.part - 1], t.frame_time, t.marker, Path(t.image), t.class_name)
                for t in self.usable_trials()]

    def write_pairs(self) -> Path:
        """Write :meth:`pairs` to ``pairs.csv`` in the session folder (paths relative to it)."""
        path = self.folder / PAIRS_FILE
        write_pairs(path, self.pairs())
        return path

    def timing(self, read_back: bool = True, *, photodiode: str | None = None,
               refresh_hz: float | None = None) -> TimingReport:
        """The timing of the trials shown; with ``read_back``, each trial's marker is looked up in the recording
        (the nearest marker with the trial's text in its marker stream) and compared to its frame time.

        Args:
            photodiode: the recording's channel with a photodiode on the presenter's corner square: the light
                onsets after each frame time are measured (:mod:`bci_dream.calibrate.photodiode`).
            refresh_hz: the screen's refresh rate, reported as the bound without a photodiode.
        """
        shown = self.trials
        lateness = np.array([(t.frame_time - t.intended_time) * 1e3 for t in shown])
        draw = np.array([(t.frame_time - t.requested_time) * 1e3 for t in shown])
        offsets: list[float] = []
        missing = 0
        if read_back:
            recorded = {part: self._recorded_markers(part) for part in range(1, len(self.parts) + 1)}
            for t in shown:
                times = recorded.get(t.part, {}).get(t.marker)
                if times is None or not times.size:
                    missing += 1
                    continue
                nearest = float(times[np.argmin(np.abs(times - t.frame_time))])
                if abs(nearest - t.frame_time) > 0.1:
                    missing += 1
                    continue
                offsets.append((nearest - t.frame_time) * 1e3)
        light = np.zeros(0)
        if photodiode:
            light = np.full(len(shown), np.nan)
            for part in range(1, len(self.parts) + 1):
                rows = [k for k, t in enumerate(shown) if t.part == part]
                try:
                    light[rows] = recorded_photodiode_offsets(self.folder / self.parts[part - 1], photodiode,
                                                              [shown[k].frame_time for k in rows])
                except BciDreamError as e:
                    log.warning("photodiode: %s", e)
        return TimingReport(len(shown), np.array(offsets), lateness, draw, missing, light, refresh_hz)

    def _recorded_markers(self, part: int) -> dict[str, np.ndarray]:
        path = self.folder / self.parts[part - 1]
        try:
            session = read_xdf(path, dejitter=False)
        except BciDreamError as e:
            log.warning("cannot read back the markers of %s: %s", path, e)
            return {}
        out: dict[str, list[float]] = {}
        for stream in session.markers:
            if stream.name == "bci-dream events":
                continue
            for t, text in zip(stream.timestamps, stream.texts):
                out.setdefault(text, []).append(float(t))
        return {k: np.array(v) for k, v in out.items()}

    def describe(self) -> str:
        """One line: how far the session got."""
        usable = len(self.usable_trials())
        return (f"session {self.folder.name}: {len(self.latest_showings())} of {self.n_trials} trials shown, "
                f"{usable} usable, {len(self.affected)} affected ({self.status})")
