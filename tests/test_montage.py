"""Canonical montage and channel-name mapping."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bci_dream.signal.montage import ALIASES, CANONICAL_128, Montage, normalise_channel_name

HEADSETS = {
    "muse": ["TP9", "AF7", "AF8", "TP10"],
    "cyton": ["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"],
    "daisy": ["F7", "F8", "F3", "F4", "T7", "T8", "P3", "P4"],
    "brainflow_synthetic": ["Fz", "C3", "Cz", "C4", "Pz", "PO7", "Oz", "PO8",
                            "F5", "F7", "F3", "F1", "F2", "F4", "F6", "F8"],
    "dsi7": ["F4", "C4", "C3", "F3"],
    "gusbamp": ["F3", "Fz", "F4", "FC3", "FCz", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
                "CP5", "CP4", "Pz"],
}


def test_canonical_has_128_unique_names():
    assert len(CANONICAL_128) == 128
    assert len(set(CANONICAL_128)) == 128
    assert len({n.lower() for n in CANONICAL_128}) == 128
    assert CANONICAL_128[:3] == ("Fp1", "Fpz", "Fp2")
    assert CANONICAL_128[-3:] == ("I1", "Iz", "I2")
    assert sum(n.endswith("h") for n in CANONICAL_128) == 42
    for name in ("AFF1h", "FFC3h", "FCC5h", "CCP3h", "CPP1h", "PPO1h", "OI1h", "AF9", "AF10", "T9", "PO1"):
        assert name in CANONICAL_128
    assert len(Montage.canonical()) == 128


@pytest.mark.parametrize("headset", sorted(HEADSETS))
def test_headset_names_all_map(headset):
    names = HEADSETS[headset]
    mapping = Montage.canonical().map(names)
    assert mapping.unmapped == []
    assert mapping.mask.sum() == len(names)
    assert [CANONICAL_128[i] for i in mapping.target_index] == names
    np.testing.assert_array_equal(mapping.source_index, np.arange(len(names)))


def test_nonstandard_channels_unmapped():
    dsi = ["S2", "F4", "C4", "S3", "S1", "C3", "F3", "TRG"]
    mapping = Montage.canonical().map(dsi)
    assert mapping.unmapped == ["S2", "S3", "S1", "TRG"]
    assert mapping.mask.sum() == 4
    muse = ["TP9", "AF7", "AF8", "TP10", "Right AUX"]
    assert Montage.canonical().map(muse).unmapped == ["Right AUX"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("EEG Fp1-REF", "Fp1"),
        ("EEG FP1-Ref", "Fp1"),
        ("EEG Fp1-Réf", "Fp1"),  # (French clinical systems)
        ("Fp1-LE", "Fp1"),
        ("eeg cz-avg", "Cz"),
        ("  FCZ ", "FCz"),
        ("Fc5.", "FC5"),  # EDF padding (PhysioNet motor imagery)
        ("afz..", "AFz"),
        ("EEG T3-REF", "T7"),
        ("T4", "T8"),
        ("t5", "P7"),
        ("T6-A1", "P8"),
        ("aff1H", "AFF1h"),
        ("M1", "M1"),
        ("A2", "A2"),
        ("EEG A1-REF", "A1"),
        ("Right AUX", "Right AUX"),
        ("EEG", "EEG"),
    ],
)
def test_normalise_channel_name(raw, expected):
    assert normalise_channel_name(raw) == expected


def test_aliases_and_references():
    assert ALIASES == {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
    m = Montage.canonical()
    mapping = m.map(["EEG Fp1-REF", "T3", "M1", "A2", "Foo", "EEG T6-LE"])
    assert mapping.unmapped == ["M1", "A2", "Foo"]
    assert [m.names[i] for i in mapping.target_index] == ["Fp1", "T7", "P8"]
    assert "T5" in m and "M1" not in m and m.index("p7") == m.index("T5")


def test_duplicate_keeps_first(caplog):
    with caplog.at_level(logging.WARNING, logger="bci_dream.signal.montage"):
        mapping = Montage.canonical().map(["T7", "C3", "T3"])
    assert "keeping the first" in caplog.text
    assert mapping.unmapped == ["T3"]
    np.testing.assert_array_equal(mapping.source_index, [0, 1])


def test_apply_places_rows_and_zero_fills():
    m = Montage(["Fz", "Cz", "Pz", "Oz"])
    mapping = m.map(["Pz", "EEG Fz", "X"])
    x = np.arange(3 * 5, dtype=np.float64).reshape(3, 5)
    out = mapping.apply(x)
    assert out.dtype == np.float32 and out.shape == (4, 5)
    np.testing.assert_array_equal(out[0], x[1])
    np.testing.assert_array_equal(out[2], x[0])
    assert not out[1].any() and not out[3].any()
    np.testing.assert_array_equal(mapping.mask, [True, False, True, False])
    with pytest.raises(ValueError):
        mapping.apply(np.zeros((4, 5)))
    with pytest.raises(ValueError):
        Montage(["Cz", "CZ"])
