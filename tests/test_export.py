"""Export: a real .xdf written as EDF, BDF and FIF through MNE's writers and read back (samples, rate, names,
markers), and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from bci_dream.cli import main
from bci_dream.io.readers import read_recording

SSVEP = "bci-essentials/ssvep_example.xdf"


@pytest.mark.parametrize("suffix, resolution_uv", [(".fif", 1e-3), (".edf", None), (".bdf", None)])
def test_an_xdf_exported_and_read_back_keeps_its_samples_names_and_markers(shared_data, tmp_path, suffix,
                                                                          resolution_uv):
    import mne

    source = read_recording(shared_data / SSVEP)
    out = tmp_path / f"ssvep{suffix}"
    assert main(["export", str(shared_data / SSVEP), "-o", str(out)]) == 0
    raw = mne.io.read_raw(out, preload=True, verbose="error")
    assert raw.info["sfreq"] == source.sfreq and raw.ch_names == list(source.ch_names)
    back = raw.get_data().T * 1e6
    n = source.n_samples  # (EDF and BDF pad the last one-second data record)
    assert back.shape[1] == source.n_channels and n <= back.shape[0] < n + source.sfreq
    back = back[:n]
    # EDF keeps 16 bits, BDF 24, over the physical range MNE gives the file: within a step of it
    span = float(source.data.max() - source.data.min())
    step = resolution_uv if resolution_uv is not None else span / (2 ** (16 if suffix == ".edf" else 24) - 1)
    assert np.abs(back - source.data).max() <= 2 * max(step, 1e-6)
    texts = [a["description"] for a in raw.annotations if a["description"] not in ("BAD_gap", "BAD_ACQ_SKIP")]
    assert len(texts) == len(source.markers)


def test_export_refuses_what_it_cannot_write_in_one_line(shared_data, tmp_path, capsys):
    assert main(["export", str(shared_data / SSVEP), "-o", str(tmp_path / "out.set")]) == 1
    assert "cannot export to out.set" in capsys.readouterr().err
    (tmp_path / "there.fif").write_bytes(b"")
    assert main(["export", str(shared_data / SSVEP), "-o", str(tmp_path / "there.fif")]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.xdf"), "-o", str(tmp_path / "x.edf")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_failed_write_leaves_nothing_behind_and_says_what_to_do(shared_data, tmp_path, capsys):
    """A channel label FIF cannot store ('Réf': FIF names are ASCII) and missing samples EDF cannot store: one line
    naming the problem and the way out, exit status 1, and no half-written file."""
    import mne

    raw = mne.io.read_raw(shared_data / "mne-python/brainvision/tests/data/test_bin_raw.fif", preload=True,
                          verbose="error").pick("eeg")
    raw.rename_channels({raw.ch_names[0]: "Fp1-Ref"})
    mne.export.export_raw(tmp_path / "plain.edf", raw, verbose="error")
    header = (tmp_path / "plain.edf").read_bytes()  # (MNE writes ASCII labels; a lab's EDF may carry latin-1)
    (tmp_path / "accent.edf").write_bytes(header.replace(b"Fp1-Ref", "Fp1-Réf".encode("latin-1"), 1))
    assert main(["export", str(tmp_path / "accent.edf"), "-o", str(tmp_path / "out.fif")]) == 1
    assert "holds a character FIF cannot store ('é'); rename the channels" in capsys.readouterr().err
    assert list(tmp_path.glob("*out*")) == []
    raw.rename_channels({"Fp1-Ref": "Fp1"})
    raw._data[:, 100:200] = np.nan
    raw.save(tmp_path / "gaps_raw.fif", verbose="error")
    assert main(["export", str(tmp_path / "gaps_raw.fif"), "-o", str(tmp_path / "gaps.edf")]) == 1
    assert "missing (NaN) values, which EDF cannot store; export to .fif" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "gaps_raw.fif"), "-o", str(tmp_path / "gaps.fif")]) == 0
    assert sorted(p.name for p in tmp_path.glob("*gaps*")) == ["gaps.fif", "gaps_raw.fif"]


def test_markers_after_a_gap_stay_on_their_samples(tmp_path):
    """Packet loss: 2 s of samples never arrived. EDF and FIF have no per-sample times, so the samples after the gap
    follow on at once; a marker there must keep its place among the samples, not its wall-clock distance."""
    import mne

    from bci_dream.core.types import Marker
    from bci_dream.io.export import file_seconds, raw_from_recording
    from bci_dream.io.recording import Recording

    fs = 100.0
    times = np.concatenate([np.arange(500), 700 + np.arange(500)]) / fs + 1000.0  # 2 s lost after sample 500
    data = np.zeros((1000, 2), np.float32)
    data[750, 0] = 500.0  # a spike on the sample the marker names
    rec = Recording(data, fs, ("Cz", "Pz"), [Marker(990.0, "before"), Marker(float(times[750]), "stim")], times,
                    tmp_path / "gap.xdf", "xdf")
    assert file_seconds(rec, [times[250], times[750] + 0.004]) == pytest.approx([2.5, 7.504])
    assert np.isnan(file_seconds(rec, [2000.0])[0])
    out = tmp_path / "gap_raw.fif"
    raw_from_recording(rec).save(out, verbose="error")  # (export_recording's writer, on this recording)
    raw = mne.io.read_raw(out, verbose="error")
    stim = [a for a in raw.annotations if a["description"] == "stim"]
    assert len(stim) == 1 and round(stim[0]["onset"] * fs) == 750 == int(np.argmax(raw.get_data()[0]))
    assert [a["description"] for a in raw.annotations] == ["BAD_gap", "stim"]  # the marker before the file dropped
