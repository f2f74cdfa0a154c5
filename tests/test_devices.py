"""Device profiles: every shipped profile loads, and bad profiles or names fail with one clear line."""

import pytest

from bci_dream.devices import get_profile, list_profiles, load_profile, shipped_data_folder
from bci_dream.errors import DeviceError

SHIPPED = {"synthetic", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s", "playback", "lsl"}


def test_all_profiles_ship_and_load():
    assert {p.stem for p in shipped_data_folder("devices").glob("*.toml")} >= SHIPPED
    profiles = list_profiles()
    assert set(profiles) >= SHIPPED
    for name in SHIPPED - {"lsl"}:
        p = profiles[name]
        assert p.source == "brainflow" and p.board and p.channels and p.sampling_rate > 0


def test_profiles_match_brainflow_board_descriptions():
    from brainflow.board_shim import BoardIds, BoardShim

    for name in SHIPPED - {"lsl", "playback"}:
        p = get_profile(name)
        descr = BoardShim.get_board_descr(BoardIds[p.board].value)
        assert len(descr["eeg_channels"]) == len(p.channels), name
        assert descr["sampling_rate"] == p.sampling_rate, name


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
