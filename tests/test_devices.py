"""Device profiles: every shipped profile loads, and bad profiles or names fail with one clear line."""

import pytest

from bci_dream.core.errors import DeviceError
from bci_dream.devices import (
    CONNECTION_PARAMETERS,
    SOURCE_KINDS,
    get_profile,
    list_profiles,
    load_profile,
    shipped_data_folder,
)
from bci_dream.signal.montage import Montage

SHIPPED = {"synthetic", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s", "playback", "lsl"}


SHIPPED_FILES = sorted(shipped_data_folder("devices").glob("*.toml"))


def test_the_headsets_users_expect_are_shipped():
    assert {p.stem for p in SHIPPED_FILES} >= SHIPPED and set(list_profiles()) >= SHIPPED


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.stem)
def test_every_shipped_profile_is_complete_and_matches_its_board(path):
    """Each profile in devices/ (a new headset is one TOML file there, and lands in this test by itself): it
    loads, names itself after its file, has known parameters and sane filters, maps its channels into the
    canonical montage, and agrees with BrainFlow's description of its board."""
    p = load_profile(path)
    assert p.name == path.stem and p.description and p.source in SOURCE_KINDS and p.units
    assert set(p.parameters) <= set(CONNECTION_PARAMETERS) and not set(p.required) & set(p.optional)
    if p.bandpass is not None:
        low, high = p.bandpass
        assert 0 < low < high and (not p.sampling_rate or high < p.sampling_rate / 2)
    assert p.notch in (None, 50.0, 60.0)
    assert p.rail_uv is None or p.rail_uv > 0
    mapped = Montage.canonical().map(p.channels) if p.channels else None
    assert mapped is None or mapped.n_mapped == len(p.channels), f"{p.name}: channels outside the montage"
    if p.source == "lsl":
        assert not p.board and p.lsl
        return
    from brainflow.board_shim import BoardIds, BoardShim

    board = p.master_board or p.board
    descr = BoardShim.get_board_descr(BoardIds[board].value)
    assert len(descr["eeg_channels"]) == len(p.channels) and descr["sampling_rate"] == p.sampling_rate
    # every aux kind the profile records, names or switches on is on the board, with as many rows as names
    for kind in {*p.aux, *p.aux_channels, *p.aux_commands}:
        rows = [BoardShim.get_board_descr(BoardIds[board].value, preset).get(f"{kind}_channels")
                for preset in (0, 1, 2) if _has_preset(BoardIds[board].value, preset)]
        rows = [r for r in rows if r]
        assert rows, f"{p.name}: the board has no {kind} rows"
        assert kind not in p.aux_channels or len(p.aux_channels[kind]) == len(rows[0])
    if p.board not in ("PLAYBACK_FILE_BOARD",):
        assert not p.master_board


def test_unknown_device_names_the_known_ones():
    with pytest.raises(DeviceError, match="unknown device 'nope'.*synthetic"):
        get_profile("nope")


def test_required_and_unknown_parameters():
    cyton = get_profile("cyton")
    with pytest.raises(DeviceError, match="needs --serial-port"):
        cyton.check_parameters({})
    with pytest.raises(DeviceError, match="does not take --mac-address"):
        cyton.check_parameters({"serial_port": "/dev/x", "mac_address": "aa"})


def test_user_profile_folder_adds_a_headset(tmp_path, monkeypatch):
    (tmp_path / "my-cap.toml").write_text(
        'name = "my-cap"\ndescription = "x"\nsource = "brainflow"\nboard = "SYNTHETIC_BOARD"\n'
        'channels = ["Fz"]\nsampling_rate = 250\n')
    (tmp_path / "broken.toml").write_text("name = [")
    monkeypatch.setenv("BCI_DREAM_DEVICES", str(tmp_path))
    assert "my-cap" in list_profiles()
    with pytest.raises(DeviceError, match="not valid TOML"):
        load_profile(tmp_path / "broken.toml")


def _has_preset(board: int, preset: int) -> bool:
    from brainflow.board_shim import BoardShim

    # (never ask for the description of a preset a board lacks: BrainFlow 5.23 then fails to start that board)
    return preset in BoardShim.get_board_presets(board)
