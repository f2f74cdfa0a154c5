"""Headset profiles: one TOML file per headset in ``devices/``, loaded into :class:`DeviceProfile`.

Profiles are searched, first match wins, in
1. the folders listed in the ``BCI_DREAM_DEVICES`` environment variable (``os.pathsep``-separated),
2. the user's folder ``~/.config/bci-dream/devices`` (``$XDG_CONFIG_HOME`` respected),
3. the profiles shipped with the package (``devices/`` of the source tree, ``bci_dream/_data/devices``
   inside an installed wheel).
Adding a headset means adding a file to one of them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from bci_dream.core import defaults
from bci_dream.core.errors import DeviceError
from bci_dream.core.toml_file import read_toml
from bci_dream.signal.impedance_thresholds import ImpedanceThresholds

log = logging.getLogger(__name__)

#: Connection parameters a profile may ask for; each is a ``--flag`` of the command line.
CONNECTION_PARAMETERS = (
    "serial_port", "mac_address", "serial_number", "ip_address", "ip_port", "file",
    "master_board", "timeout", "other_info",
    "stream_name", "stream_type", "source_id", "marker_stream",
)

SOURCE_KINDS = ("brainflow", "lsl")

#: How a board measures electrode impedance (``[impedance] method`` in a profile): an OpenBCI Cyton's (or Daisy's)
#: lead-off current, one channel at a time, or a Ganglion's own impedance mode. Boards without one cannot measure it.
IMPEDANCE_METHODS = ("cyton-lead-off", "ganglion")

#: Kinds of non-EEG rows a BrainFlow board may deliver, each recorded as a stream of its own when asked for
#: (``record = [...]`` in a profile's ``[aux]`` table, or ``--aux``): the board description's ``<kind>_channels``
#: key, and the XDF stream type (muselsl's names where it has one).
AUX_KINDS: dict[str, str] = {
    "accel": "ACC", "gyro": "GYRO", "ppg": "PPG", "analog": "AUX", "eda": "EDA", "temperature": "TEMP",
    "other": "AUX",
}
#: Channel labels of a kind when the profile names none (``accel`` → AccX, AccY, AccZ; ``ppg`` → PPG1, PPG2 ...).
AUX_DEFAULT_LABELS: dict[str, tuple[str, ...]] = {"accel": ("AccX", "AccY", "AccZ"),
                                                  "gyro": ("GyroX", "GyroY", "GyroZ")}
_AUX_PREFIX = {"ppg": "PPG", "analog": "Analog", "eda": "EDA", "temperature": "Temp", "other": "Other"}


def aux_labels(kind: str, n: int, names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Labels of the ``n`` rows of an aux ``kind``: ``names`` (from the profile) if it has ``n``, else defaults."""
    if len(names) == n:
        return names
    default = AUX_DEFAULT_LABELS.get(kind, ())
    if len(default) == n:
        return default
    prefix = _AUX_PREFIX.get(kind, kind.capitalize())
    return tuple(f"{prefix}{i + 1}" for i in range(n))


def parse_aux_kinds(text: str | None) -> tuple[str, ...] | None:
    """``--aux`` text (``"accel,ppg"``, ``"none"``) as kinds; None when not given; :class:`DeviceError` if unknown."""
    if text is None:
        return None
    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    return () if kinds in ((), ("none",)) else check_aux_kinds(dict.fromkeys(kinds))


def check_aux_kinds(kinds) -> tuple[str, ...]:
    """``kinds`` as a tuple; :class:`DeviceError` naming the first that is not in :data:`AUX_KINDS`."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in AUX_KINDS]
    if unknown:
        raise DeviceError(f"unknown aux kind '{unknown[0]}'; use any of {', '.join(AUX_KINDS)} (comma-separated), "
                          "or none")
    return kinds


@dataclass(frozen=True)
class DeviceProfile:
    """A headset and how to talk to it.

    Attributes:
        name: the profile's name, used as ``--device NAME``.
        description: one line for ``bci-dream devices``.
        source: ``"brainflow"`` or ``"lsl"``.
        board: BrainFlow ``BoardIds`` member name (``"CYTON_BOARD"``), empty for LSL.
        preset: BrainFlow preset carrying EEG (``"DEFAULT_PRESET"``).
        sampling_rate: nominal rate in Hz (0: taken from the stream).
        units: unit of the EEG samples (``"uV"``).
        channels: 10-20 names of the EEG channels, in board order (empty: taken from the stream).
        required: connection parameters that must be given.
        optional: connection parameters that may be given.
        bandpass: default band-pass edges in Hz, or None.
        notch: default line-noise notch in Hz (50 or 60), or None.
        rail_uv: amplitude at which the amplifier saturates, in µV, if known.
        package_counter_modulo: modulus of the board's sample counter, to count dropped samples.
        master_board: for BrainFlow's playback and streaming boards, the board that was recorded.
        lsl: defaults for LSL resolution (``stream_type``, ``stream_name``, ``source_id``).
        aux: kinds of non-EEG rows (:data:`AUX_KINDS`) recorded beside the EEG, each as a stream of its own.
        aux_channels: labels of each aux kind's rows (e.g. ``analog``: A5, A6, A7 on a Cyton).
        aux_commands: ``config_board`` commands that switch a kind on, sent after connecting when it is recorded
            (a Cyton's analog inputs: ``/2``; a Muse's PPG: ``p61``).
        impedance: how the board measures electrode impedance (one of :data:`IMPEDANCE_METHODS`; "": it cannot).
        impedance_thresholds: the kΩ at which its electrodes stop being good, and fair.
        path: the file the profile was read from.
    """

    name: str
    description: str
    source: str
    board: str = ""
    preset: str = "DEFAULT_PRESET"
    sampling_rate: float = 0.0
    units: str = "uV"
    channels: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ
    notch: float | None = defaults.NOTCH_HZ
    rail_uv: float | None = None
    package_counter_modulo: int | None = None
    master_board: str = ""
    lsl: dict = field(default_factory=dict)
    aux: tuple[str, ...] = ()
    aux_channels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aux_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    impedance: str = ""
    impedance_thresholds: ImpedanceThresholds = field(default_factory=ImpedanceThresholds)
    path: Path | None = None

    @property
    def main_parameter(self) -> str | None:
        """The parameter a connection box sets: the first required one, else the first optional one (None: none)."""
        names = self.required or self.optional
        return names[0] if names else None

    @property
    def main_parameter_hint(self) -> str:
        """Placeholder text for that box, e.g. ``"serial port"`` or ``"mac address (optional)"``."""
        name = self.main_parameter
        if name is None:
            return "no connection parameter needed"
        return name.replace("_", " ") + ("" if name in self.required else " (optional)")

    @property
    def parameters(self) -> tuple[str, ...]:
        """All connection parameters the profile accepts."""
        return self.required + self.optional

    def check_parameters(self, params: dict[str, object]) -> None:
        """Raise :class:`DeviceError` if a required parameter is missing or an unknown one is given."""
        given = {k for k, v in params.items() if v not in (None, "")}
        missing = [p for p in self.required if p not in given]
        if missing:
            flags = ", ".join("--" + p.replace("_", "-") for p in missing)
            raise DeviceError(f"device '{self.name}' needs {flags}")
        unknown = sorted(given - set(self.parameters))
        if unknown:
            flags = ", ".join("--" + p.replace("_", "-") for p in unknown)
            accepted = ", ".join("--" + p.replace("_", "-") for p in self.parameters) or "none"
            raise DeviceError(f"device '{self.name}' does not take {flags} (it takes: {accepted})")


def impedance_unavailable(profile: DeviceProfile) -> str:
    """Why ``profile``'s device cannot measure electrode impedance, in one sentence; "" when it can (its
    ``[impedance] method`` is set and it is a board with electrodes, not a playback or a relay of one)."""
    what = profile.description or profile.name
    board = profile.board.upper()
    if profile.source == "lsl":
        return (f"{what}: an LSL stream carries no impedance measurement (measure it in the amplifier's own "
                "software); the signal check stands in for it")
    if board in ("PLAYBACK_FILE_BOARD", "STREAMING_BOARD"):
        return f"{what} plays back or relays a board, with no electrodes to measure; the signal check stands in for it"
    if profile.impedance:
        return ""
    if board == "SYNTHETIC_BOARD":
        return (f"{what} cannot measure electrode impedance: its signal is generated, with no electrodes; the signal "
                "check stands in for it")
    return (f"{what} cannot measure electrode impedance through BrainFlow (boards that can: cyton, cyton-daisy, "
            "ganglion); the signal check stands in for it")


def profile_folders() -> list[Path]:
    """Folders searched for ``*.toml`` profiles, highest priority first."""
    folders = [Path(p) for p in os.environ.get("BCI_DREAM_DEVICES", "").split(os.pathsep) if p]
    config_home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    folders.append(config_home / "bci-dream" / "devices")
    folders.append(shipped_data_folder("devices"))
    return folders


def shipped_data_folder(name: str) -> Path:
    """A data folder shipped with the package: inside the wheel, or at the top of a source checkout."""
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "_data" / name
    return installed if installed.is_dir() else package_dir.parent / name


def load_profile(path: str | os.PathLike) -> DeviceProfile:
    """Read one profile file; raise :class:`DeviceError` naming the file and the problem."""
    path = Path(path)
    raw = read_toml(path, "device profile", DeviceError)
    try:
        return _profile_from_dict(raw, path)
    except (KeyError, TypeError, ValueError) as e:
        raise DeviceError(f"device profile {path} is invalid: {e}") from e


def _profile_from_dict(raw: dict, path: Path) -> DeviceProfile:
    source = str(raw.get("source", "brainflow"))
    if source not in SOURCE_KINDS:
        raise ValueError(f"source must be one of {', '.join(SOURCE_KINDS)}, not '{source}'")
    connection = raw.get("connection", {})
    required = tuple(connection.get("required", ()))
    optional = tuple(connection.get("optional", ()))
    for p in required + optional:
        if p not in CONNECTION_PARAMETERS:
            raise ValueError(f"unknown connection parameter '{p}'")
    filters = raw.get("filters", {})
    bandpass = filters.get("bandpass")
    channels = tuple(str(c) for c in raw.get("channels", ()))
    if source == "brainflow" and not raw.get("board"):
        raise ValueError("a brainflow profile needs 'board' (a BoardIds name such as CYTON_BOARD)")
    if len(set(channels)) != len(channels):
        raise ValueError("channel names must be unique")
    aux = dict(raw.get("aux", {}))
    aux_kinds = tuple(str(k) for k in aux.get("record", ()))
    aux_channels = {str(k): tuple(str(c) for c in v) for k, v in dict(aux.get("channels", {})).items()}
    aux_commands = {str(k): tuple(str(c) for c in ([v] if isinstance(v, str) else v))
                    for k, v in dict(aux.get("commands", {})).items()}
    for kind in (*aux_kinds, *aux_channels, *aux_commands):
        if kind not in AUX_KINDS:
            raise ValueError(f"unknown aux kind '{kind}' (kinds: {', '.join(AUX_KINDS)})")
    if aux_kinds and source != "brainflow":
        raise ValueError("[aux] record applies to BrainFlow boards; an LSL source's other streams are separate streams")
    impedance = dict(raw.get("impedance", {}))
    method = str(impedance.get("method", ""))
    if method and method not in IMPEDANCE_METHODS:
        raise ValueError(f"unknown [impedance] method '{method}' (methods: {', '.join(IMPEDANCE_METHODS)})")
    if method and source != "brainflow":
        raise ValueError("[impedance] method applies to BrainFlow boards")
    defaults_kohm = ImpedanceThresholds()
    thresholds = ImpedanceThresholds(float(impedance.get("good_kohm", defaults_kohm.good_kohm)),
                                     float(impedance.get("fair_kohm", defaults_kohm.fair_kohm)))
    if not 0 < thresholds.good_kohm <= thresholds.fair_kohm:
        raise ValueError("[impedance] needs 0 < good_kohm <= fair_kohm")
    return DeviceProfile(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")),
        source=source,
        board=str(raw.get("board", "")),
        preset=str(raw.get("preset", "DEFAULT_PRESET")),
        sampling_rate=float(raw.get("sampling_rate", 0.0)),
        units=str(raw.get("units", "uV")),
        channels=channels,
        required=required,
        optional=optional,
        bandpass=(float(bandpass[0]), float(bandpass[1])) if bandpass else None,
        notch=float(filters["notch"]) if filters.get("notch") else None,
        rail_uv=float(raw["rail_uv"]) if raw.get("rail_uv") else None,
        package_counter_modulo=int(raw["package_counter_modulo"]) if raw.get("package_counter_modulo") else None,
        master_board=str(raw.get("master_board", "")),
        lsl=dict(raw.get("lsl", {})),
        aux=aux_kinds,
        aux_channels=aux_channels,
        aux_commands=aux_commands,
        impedance=method,
        impedance_thresholds=thresholds,
        path=path,
    )


def list_profiles() -> dict[str, DeviceProfile]:
    """All profiles found, by name; a profile earlier in :func:`profile_folders` hides later ones.

    Broken profile files are skipped with a logged warning so that one bad file does not hide the rest.
    """
    profiles: dict[str, DeviceProfile] = {}
    for folder in profile_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                profile = load_profile(path)
            except DeviceError as e:
                log.warning("%s", e)
                continue
            profiles.setdefault(profile.name, profile)
    return dict(sorted(profiles.items()))


def get_profile(name: str) -> DeviceProfile:
    """The profile called ``name``, or a path to a ``.toml`` file; :class:`DeviceError` if unknown."""
    if name.endswith(".toml"):
        return load_profile(name)
    profiles = list_profiles()
    if name not in profiles:
        known = ", ".join(profiles) or "none found"
        raise DeviceError(f"unknown device '{name}'; known devices: {known} (run 'bci-dream devices')")
    return profiles[name]
