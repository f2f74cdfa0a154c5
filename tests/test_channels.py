"""Channel names and positions: labels as real files write them, names from the user, files, layouts and
positions, and the one-line errors for each way of getting them wrong."""

from __future__ import annotations

import json
import shutil

import mne
import numpy as np
import pytest

from bci_dream.cli import main
from bci_dream.io.channels_file import bids_sidecar, read_channels_file
from bci_dream.io.readers import read_recording
from bci_dream.signal.channels import (
    LEFT_OUT,
    ChannelNamingError,
    canonical_directions,
    layout_naming,
    naming_from_positions,
    parse_channel_list,
    standard_1005_montage,
)
from bci_dream.signal.montage import Montage, normalise_channel_name

GENERIC_FIF = "mne-python/brainvision/tests/data/test_bin_raw.fif"
#: The channels of that FIF (the BrainVision recording it was converted from: the same 32 channels).
VHDR = "mne-python/brainvision/tests/data/test.vhdr"

#: Labels met in real files (EDF+, EEGLAB, BrainVision, OpenBCI, LSL apps, BIDS) and the site they are.
REAL_WORLD_LABELS = [
    ("Fp1", "Fp1"), ("FP1", "Fp1"), ("fp1", "Fp1"), ("EEG Fp1-REF", "Fp1"), ("EEG FP1-Ref", "Fp1"),
    ("EEG Fp1-LE", "Fp1"), ("EEG:Fz", "Fz"), ("EEG_Cz", "Cz"), ("Cz-A1", "Cz"), ("Pz-M2", "Pz"), ("Oz-AVG", "Oz"),
    ("Fc5.", "FC5"), ("Fz ", "Fz"), ("POZ", "POz"), ("FCZ", "FCz"), ("AFF1H", "AFF1h"), ("O01", "O1"),
    ("FP02", "Fp2"), ("F07", "F7"), ("T08", "T8"), ("PO010", "PO10"), ("T3", "T7"), ("T4", "T8"),
    ("EEG T5-LE", "P7"), ("T6-A2", "P8"), ("EXG TP9", "TP9"),
    # not sites: left as they are (a name is never guessed)
    ("Ch1", "Ch1"), ("E12", "E12"), ("A1", "A1"), ("M2", "M2"), ("Right AUX", "Right AUX"), ("TRG", "TRG"),
    ("Fpz-Cz", "Fpz-Cz"), ("S1", "S1"),
]


@pytest.mark.parametrize("label, site", REAL_WORLD_LABELS, ids=[a for a, _ in REAL_WORLD_LABELS])
def test_real_world_labels_become_their_site_and_nothing_else(label, site):
    assert normalise_channel_name(label) == site


def test_a_channel_list_names_channels_in_order_and_leaves_out_dashes():
    naming = parse_channel_list("Fp1, fp2 ,-,,T3")
    assert naming.ordered == ("Fp1", "Fp2", None, None, "T7")
    assert naming.apply(["Ch1", "Ch2", "Ch3", "Ch4", "Ch5"]) == ("Fp1", "Fp2", "Ch3" + LEFT_OUT, "Ch4" + LEFT_OUT,
                                                                 "T7")
    mapping = Montage.canonical().map(naming.apply(["Ch1", "Ch2", "Ch3", "Ch4", "Ch5"]))
    assert mapping.n_mapped == 3


@pytest.mark.parametrize("text, match", [
    ("Fp1,Fpz1,C3", r"'Fpz1' is not a 10-05 site.*closest sites: Fpz"),
    ("Fp1,Fp1", "names Fp1 more than once"),
    ("-,-", "leaves every channel out"),
])
def test_a_bad_channel_list_is_one_line_naming_what_and_the_closest_sites(text, match):
    with pytest.raises(ChannelNamingError, match=match) as info:
        parse_channel_list(text)
    assert "\n" not in str(info.value)


def test_a_list_of_the_wrong_length_names_both_counts():
    with pytest.raises(ChannelNamingError, match=r"names 2 channels but the stream has 3 \(Ch1, Ch2, Ch3\)"):
        parse_channel_list("Fp1,Fp2").apply(["Ch1", "Ch2", "Ch3"])


def test_channels_files_plain_bids_channels_and_their_errors(tmp_path):
    plain = tmp_path / "names.txt"
    plain.write_text("# OpenBCI cap\nFp1\nFp2\n-\nO1\n")
    assert read_channels_file(plain).ordered == ("Fp1", "Fp2", None, "O1")
    bids = tmp_path / "sub-01_task-rest_channels.tsv"
    bids.write_text("name\ttype\tunits\nFp1\tEEG\tuV\nVEOG\tEOG\tuV\nEEG 003\tEEG\tuV\nCz\tEEG\tuV\nSTI\tTRIG\tn/a\n")
    assert read_channels_file(bids).ordered == ("Fp1", None, None, "Cz", None)
    (tmp_path / "bad.tsv").write_text("label\tx\nFp1\t1\n")
    with pytest.raises(ChannelNamingError, match="no 'name' column"):
        read_channels_file(tmp_path / "bad.tsv")
    with pytest.raises(ChannelNamingError, match="does not exist"):
        read_channels_file(tmp_path / "missing.tsv")
    (tmp_path / "junk.elc").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ChannelNamingError, match="cannot read channels file"):
        read_channels_file(tmp_path / "junk.elc")


def _standard_positions(sites, jitter_m: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Head-frame positions of ``sites`` (as a digitiser or a CapTrak electrodes.tsv gives them), labelled E1 ..."""
    from bci_dream.signal.channels import standard_head_positions

    standard = standard_head_positions()
    rng = np.random.default_rng(seed)
    return {f"E{i + 1}": standard[s] + rng.normal(0, jitter_m, 3) for i, s in enumerate(sites)}


def test_positions_map_each_channel_to_the_nearest_site_with_its_distance():
    sites = ["Fp1", "Fz", "C3", "Cz", "C4", "Pz", "O1", "O2", "TP9", "AF8"]
    naming = naming_from_positions(_standard_positions(sites, jitter_m=0.002), "a cap")
    assert [naming.by_label[f"E{i + 1}"] for i in range(len(sites))] == sites
    assert max(naming.distances_mm.values()) < 10
    assert "farthest" in naming.describe()
    with pytest.raises(ChannelNamingError, match="'mri' coordinate frame"):
        naming_from_positions(_standard_positions(sites), "an MRI digitisation", frame="mri")
    assert len(canonical_directions()[0]) >= 120  # (the canonical sites MNE places)


def test_electrodes_tsv_and_digitisation_files_give_positions(tmp_path):
    sites = ["F3", "F4", "C3", "C4", "P3", "P4"]
    positions = _standard_positions(sites)
    tsv = tmp_path / "sub-01_electrodes.tsv"
    tsv.write_text("name\tx\ty\tz\n" + "".join(f"{k}\t{v[0]}\t{v[1]}\t{v[2]}\n" for k, v in positions.items())
                   + "REF\tn/a\tn/a\tn/a\n")
    assert list(read_channels_file(tsv).by_label.values()) == sites
    (tmp_path / "sub-01_coordsystem.json").write_text(json.dumps({"EEGCoordinateSystem": "CTF"}))
    with pytest.raises(ChannelNamingError, match="'ctf' coordinate frame"):
        read_channels_file(tsv)
    dig = tmp_path / "cap-dig.fif"
    mne.channels.make_dig_montage(ch_pos=positions, coord_frame="head").save(dig, verbose="error")
    assert read_channels_file(dig).by_label == dict(zip(positions, sites))


def test_a_fif_with_generic_names_and_stored_positions_is_named_by_them(shared_data, tmp_path):
    raw = mne.io.read_raw(shared_data / VHDR, preload=True, verbose="error")
    raw.pick(raw.ch_names[:8])
    sites = list(raw.ch_names)
    raw.set_montage(standard_1005_montage(), match_case=False, verbose="error")
    raw.rename_channels({name: f"EEG {i:03d}" for i, name in enumerate(raw.ch_names)})
    path = tmp_path / "generic_raw.fif"
    raw.save(path, verbose="error")
    rec = read_recording(path)
    assert [normalise_channel_name(s) for s in sites] == list(rec.ch_names)
    assert rec.info["file_ch_names"][0] == "EEG 000" and "own positions" in rec.info["channel_naming"]["source"]


def test_a_bids_sidecar_beside_a_recording_names_its_channels(shared_data, tmp_path):
    names = mne.io.read_raw(shared_data / VHDR, verbose="error").ch_names  # (the FIF's 32 channels, named)
    path = tmp_path / "sub-01_task-rest_run-1_eeg.fif"
    shutil.copy(shared_data / GENERIC_FIF, path)
    sidecar = tmp_path / "sub-01_task-rest_channels.tsv"  # (BIDS inheritance: no run entity)
    sidecar.write_text("name\ttype\n" + "".join(f"{n}\t{'EEG' if i < 28 else 'MISC'}\n" for i, n in enumerate(names)))
    assert bids_sidecar(path) == sidecar
    rec = read_recording(path)
    assert rec.ch_names[:3] == ("Fp1", "Fp2", "F3") and rec.ch_names[28].endswith(LEFT_OUT)


def test_a_device_layout_names_an_unlabelled_stream():
    from bci_dream.devices import get_profile

    naming = layout_naming(get_profile("cyton-daisy"))
    assert len(naming.ordered) == 16 and naming.source == "layout cyton-daisy"
    with pytest.raises(ChannelNamingError, match="lsl.*names no channels"):
        layout_naming(get_profile("lsl"))


def test_pretrain_takes_a_recording_with_generic_labels_once_they_are_named(shared_data, tmp_path, capsys):
    fif = shared_data / GENERIC_FIF
    assert main(["pretrain", str(fif), "-o", str(tmp_path / "a"), "--preset", "tiny", "--max-steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "EEG 001" in err and "--channels" in err and "--layout" in err
    names = tmp_path / "names.txt"
    names.write_text("\n".join(mne.io.read_raw(shared_data / VHDR, verbose="error").ch_names[:28] + ["-"] * 4))
    assert main(["pretrain", str(fif), "-o", str(tmp_path / "b"), "--preset", "tiny", "--max-steps", "1",
                 "--channels-file", str(names)]) == 0
    assert "pretrained 'tiny' for 1 steps" in capsys.readouterr().out
    meta = json.loads((tmp_path / "b" / "config.json").read_text())["meta"]
    assert meta["channel_naming"]["ordered"][:2] == ["Fp1", "Fp2"]


@pytest.mark.parametrize("extra, match", [
    (["--channels", "Fp1,Fp2"], "names 2 channels but the stream has 8"),
    (["--channels", "Fp1,Fp2,C3,C4,P7,P8,O1,Oh2"], "'Oh2' is not a 10-05 site"),
    (["--channels-file", "/nonexistent/names.txt"], "channels file /nonexistent/names.txt does not exist"),
    (["--layout", "muse-2"], "names 4 channels but the stream has 8"),
    (["--layout", "cyton", "--channels", "Fp1"], "give one of --channels, --channels-file and --layout"),
])
def test_channel_options_that_do_not_fit_are_one_line_and_exit_1(shared_data, extra, match, capsys):
    code = main(["replay", str(shared_data / "bci-essentials/ssvep_example.xdf"), "--speed", "0", *extra])
    err = capsys.readouterr().err
    assert code == 1 and match in err and len([ln for ln in err.splitlines() if "error" in ln]) == 1
