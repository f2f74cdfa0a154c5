"""The head map: channel places on a flat head, relative band power, and the panel fed from a real recording."""

from __future__ import annotations

import types

import numpy as np

from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.types import Chunk, StreamInfo
from bci_dream.gui.head_map_panel import QUALITY, QUALITY_COLORS, HeadMapPanel
from bci_dream.io.readers import read_recording
from bci_dream.signal.head_map import flat_positions, relative_band_power

EYES_CLOSED = "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"


def test_sites_land_where_a_head_map_puts_them_and_unknown_names_nowhere():
    pos = flat_positions(["Cz", "Fpz", "Oz", "T7", "T8", "C3", "EEG O1-REF", "Ch7", "Right AUX"])
    np.testing.assert_allclose(pos[0], 0.0, atol=0.05)  # the vertex in the middle
    assert pos[1, 1] > 0.9 and pos[2, 1] < -0.9  # nose up, back down
    assert pos[3, 0] < -0.9 and pos[4, 0] > 0.9  # left ear left, right ear right
    np.testing.assert_allclose(np.hypot(*pos[1:5].T), 1.0, atol=0.1)  # Fpz, Oz, T7, T8 on the circle
    assert -0.7 < pos[5, 0] < -0.3 and abs(pos[5, 1]) < 0.1  # C3 half-way to T7
    assert pos[6, 1] < -0.7 and pos[6, 0] < 0  # a clinical label: its site
    assert np.isnan(pos[7:]).all()


def test_relative_band_power_finds_a_10_hz_channel():
    sfreq, t = 250.0, np.arange(1000) / 250.0
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (1000, 3))
    x[:, 1] += 10 * np.sin(2 * np.pi * 10 * t)
    x[:, 2] = 0
    alpha = relative_band_power(x, sfreq, (8.0, 13.0))
    assert alpha[1] > 0.8 and alpha[0] < 0.3 and np.isnan(alpha[2])


def _pipeline_of(recording, start_s: float, stop_s: float) -> StreamPipeline:
    data = np.asarray(recording.data)
    x = (data if data.shape[0] == recording.n_samples else data.T)[int(start_s * recording.sfreq):
                                                                     int(stop_s * recording.sfreq)]
    pipeline = StreamPipeline(StreamInfo("eyes closed", list(recording.ch_names), recording.sfreq, "uV"))
    step = int(recording.sfreq / 10)
    for i in range(0, len(x), step):
        pipeline.push(Chunk(x[i:i + step].astype(np.float32), 1000.0 + np.arange(i, i + len(x[i:i + step]))
                            / recording.sfreq))
    return pipeline


def test_the_panel_colours_each_site_by_alpha_and_by_quality(qtbot, shared_data):
    """The OpenBCI recording's eyes-closed part (70-82 s of 90): every channel drawn at its site, O1/O2 with more alpha
    than Fp1/Fp2; the quality view takes the pipeline's statuses."""
    recording = read_recording(shared_data / EYES_CLOSED)
    pipeline = _pipeline_of(recording, 70, 82)
    panel = HeadMapPanel()
    qtbot.addWidget(panel)
    panel.set_stream(types.SimpleNamespace(pipeline=pipeline))
    assert np.isfinite(panel.positions).all() and len(panel.labels) == recording.n_channels
    assert panel.mode_box.currentText().startswith("alpha")
    panel.update_map()
    names = list(recording.ch_names)
    occipital = panel.values[[names.index("O1"), names.index("O2")]]
    frontal = panel.values[[names.index("Fp1"), names.index("Fp2")]]
    assert occipital.min() > frontal.max()
    assert len(panel.colors) == recording.n_channels and len(set(panel.colors)) > 1
    assert "dark" in panel.legend.text()
    panel.mode_box.setCurrentText(QUALITY)
    assert set(panel.colors) <= set(QUALITY_COLORS.values())
    panel.set_stream(None)
    assert panel.labels == []


def test_channels_that_are_not_sites_are_counted_not_drawn(qtbot):
    info = StreamInfo("generic", ["Fz", "Cz", "Ch3", "Ch4"], 250.0, "uV")
    pipeline = StreamPipeline(info)
    x = np.random.default_rng(0).normal(0, 10, (750, 4)).astype(np.float32)
    pipeline.push(Chunk(x, 1000.0 + np.arange(750) / 250.0))
    panel = HeadMapPanel()
    qtbot.addWidget(panel)
    panel.set_stream(types.SimpleNamespace(pipeline=pipeline))
    panel.update_map()
    assert len(panel.colors) == 2 and "2 channels not at a 10-05 site" in panel.legend.text()
