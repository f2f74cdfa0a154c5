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
    for channel in (0, 7):  # (each channel's line is its own spectrum, in log10)
        freqs, log_power = panel.channel_curve(channel)
        np.testing.assert_allclose(freqs, panel.freqs)
        np.testing.assert_allclose(log_power, np.log10(np.maximum(panel.psd[channel], 1e-12)))
    occipital = [recording.ch_names.index(c) for c in ("O1", "O2")]
    assert (band_peak(panel.freqs, panel.psd)[occipital] > 0.2).all()
    assert panel.mains == 60.0 and panel.mains_line.isVisible() and panel.mains_line.value() == 60.0  # (US mains)
    panel.set_stream(None)
    assert panel.curves == []


def test_spectrogram_columns_put_a_sine_in_its_row_and_match_welch():
    from bci_dream.signal.spectrum import spectrogram_columns

    sfreq, t = 250.0, np.arange(2500) / 250.0
    x = 10 * np.sin(2 * np.pi * 12 * t) + np.random.default_rng(0).normal(0, 1, 2500)
    freqs, power = spectrogram_columns(x, sfreq, np.array([250, 1000, 2500]))
    assert power.shape == (3, len(freqs)) and freqs[0] >= 1 and freqs[-1] <= 60
    assert (freqs[np.argmax(power, axis=1)] == 12.0).all()
    welch_freqs, welch = welch_psd(x[-250:, None], sfreq)  # (one segment: Welch is that segment's density)
    np.testing.assert_allclose(power[-1], welch[0], rtol=1e-6)


def test_the_spectrogram_panel_scrolls_the_eyes_closed_alpha_in_from_the_ring_buffer(qtbot, shared_data):
    """Fed the OpenBCI recording's last 40 s, the panel's newest columns (eyes closed) hold more 8-12 Hz power on O1
    than its flanks; only new columns are computed on later updates; the channel choice restarts it."""
    from bci_dream.gui.spectrogram_panel import ALL_CHANNELS, HISTORY_S, STEP_S, SpectrogramPanel

    recording = read_recording(shared_data / EYES_CLOSED)
    x = _samples(recording)[-int(40 * recording.sfreq):].astype(np.float32)
    pipeline = StreamPipeline(StreamInfo("eyes closed", list(recording.ch_names), recording.sfreq, "uV"))
    step = int(recording.sfreq / 10)

    def feed(a: int, b: int) -> None:
        for i in range(a, b, step):
            pipeline.push(Chunk(x[i:min(b, i + step)], 1000.0 + np.arange(i, min(b, i + step)) / recording.sfreq))

    feed(0, len(x) - 250)
    panel = SpectrogramPanel()
    qtbot.addWidget(panel)
    panel.set_stream(types.SimpleNamespace(pipeline=pipeline))
    assert panel.channel_box.itemText(0) == ALL_CHANNELS
    panel.channel_box.setCurrentText("O1")
    panel.update_columns()
    n_cols = int(HISTORY_S / STEP_S)
    assert panel.columns.shape == (n_cols, len(panel.freqs)) and np.isfinite(panel.columns).all()
    alpha = (panel.freqs >= 8) & (panel.freqs <= 12)
    flanks = ((panel.freqs >= 5) & (panel.freqs <= 7)) | ((panel.freqs >= 14) & (panel.freqs <= 18))
    newest = panel.columns[-40:]  # (the last 10 s: eyes closed)
    assert newest[:, alpha].mean() > newest[:, flanks].mean() + 0.1
    before = panel.columns.copy()
    feed(len(x) - 250, len(x))  # one more second: four (or five) new columns, the rest scrolled left
    panel.update_columns()
    shifts = [s for s in (4, 5) if np.allclose(panel.columns[:-s], before[s:])]
    assert shifts, "the old columns did not scroll by one second"
    assert panel.image.image is not None and panel.image.image.shape == (len(panel.freqs), n_cols)
    panel.channel_box.setCurrentText(ALL_CHANNELS)
    assert panel.columns.size == 0
    panel.update_columns()
    assert np.isfinite(panel.columns).all()
