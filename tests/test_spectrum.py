"""The spectrum view: Welch spectra, the mains peak, and the panel fed from a real recording."""

from __future__ import annotations

import types

import numpy as np

from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.types import Chunk, StreamInfo
from bci_dream.gui.spectrum_panel import SpectrumPanel
from bci_dream.io.readers import read_recording
from bci_dream.signal.spectrum import band_peak, mains_peak, welch_psd

EYES_CLOSED = "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"


def _samples(recording) -> np.ndarray:
    data = np.asarray(recording.data)
    return data if data.shape[0] == recording.n_samples else data.T  # [n, channels]


def test_welch_psd_keeps_1_to_60_hz_and_finds_a_sine_and_the_mains_line():
    sfreq, t = 250.0, np.arange(2500) / 250.0
    rng = np.random.default_rng(0)
    x = np.stack([10 * np.sin(2 * np.pi * 10 * t), 5 * np.sin(2 * np.pi * 50 * t)], 1) + rng.normal(0, 1, (2500, 2))
    freqs, psd = welch_psd(x, sfreq)
    assert freqs[0] >= 1.0 and freqs[-1] <= 60.0 and psd.shape == (2, len(freqs))
    assert freqs[np.argmax(psd[0])] == 10.0 and freqs[np.argmax(psd[1])] == 50.0
    assert mains_peak(freqs, psd + psd[1]) == 50.0
    assert mains_peak(*welch_psd(rng.normal(0, 1, (2500, 4)), sfreq)) is None
    x[100:200] = np.nan  # (a dropout counts as zeros, never NaN in the plot)
    assert np.isfinite(welch_psd(x, sfreq)[1]).all()


def test_the_eyes_closed_recording_shows_the_alpha_peak_in_its_last_30_s(shared_data):
    recording = read_recording(shared_data / EYES_CLOSED)
    x, n = _samples(recording), int(30 * recording.sfreq)
    occipital = [recording.ch_names.index(c) for c in ("O1", "O2")]
    closed = band_peak(*welch_psd(x[-n:], recording.sfreq))[occipital]
    opened = band_peak(*welch_psd(x[:n], recording.sfreq))[occipital]
    assert (closed > 0.2).all() and (opened < 0.1).all()  # (0.2 in log10: 1.6x the power between the flanks)


def test_the_panel_draws_each_channels_spectrum_from_the_ring_buffer_and_marks_the_mains(qtbot, shared_data):
    recording = read_recording(shared_data / EYES_CLOSED)
    x = _samples(recording)[-int(30 * recording.sfreq):].astype(np.float32)
    pipeline = StreamPipeline(StreamInfo("eyes closed", list(recording.ch_names), recording.sfreq, "uV"))
    step = int(recording.sfreq / 10)
    for i in range(0, len(x), step):
        pipeline.push(Chunk(x[i:i + step], 1000.0 + np.arange(i, i + len(x[i:i + step])) / recording.sfreq))
    panel = SpectrumPanel()
    qtbot.addWidget(panel)
    panel.set_stream(types.SimpleNamespace(pipeline=pipeline))  # (the one attribute the panel reads)
    panel.seconds_box.setValue(30)
    panel.refresh()
    assert len(panel.curves) == 8 and all(len(c.getData()[0]) == len(panel.freqs) for c in panel.curves)
    occipital = [recording.ch_names.index(c) for c in ("O1", "O2")]
    assert (band_peak(panel.freqs, panel.psd)[occipital] > 0.2).all()
    assert panel.mains == 60.0 and panel.mains_line.isVisible() and panel.mains_line.value() == 60.0  # (US mains)
    panel.set_stream(None)
    assert panel.curves == []
