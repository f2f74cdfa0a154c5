"""BrainFlow's real synthetic and playback boards through the source, pipeline and LiveStream."""

import time

import numpy as np
import pytest
from pylsl import local_clock

from bci_dream.acquisition.brainflow_source import BrainFlowSource
from bci_dream.acquisition.live import LiveStream
from bci_dream.core.errors import DeviceError
from bci_dream.core.types import SourceState
from bci_dream.devices import get_profile, load_profile


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_synthetic_board_end_to_end():
    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    info = live.open()
    assert info.n_channels == 16 and info.sfreq == 250 and info.ch_names[0] == "Fz"
    live.start()
    try:
        assert _wait(lambda: live.pipeline.raw.total_written >= 500, 10)
        assert _wait(lambda: live.pipeline.quality, 5)
        status = live.status()
    finally:
        live.stop()
    assert live.source.state == SourceState.STOPPED
    p = live.pipeline
    res = p.raw.since(0)
    assert res.lost == 0 and np.all(np.isfinite(res.data))
    # BrainFlow's wall-clock stamps are moved into the LSL clock.
    assert abs(res.timestamps[-1] - local_clock()) < 2.0
    assert np.all(np.diff(res.timestamps) > 0)
    # The synthetic board has large offsets on some channels; the band-pass removes them.
    filt = p.filtered.latest(250).data
    assert np.abs(filt.mean(axis=0)).max() < np.abs(res.data[-250:].mean(axis=0)).max()
    assert len(status.quality) == 16 and status.latency_ms is not None and status.latency_ms < 1000


def test_playback_board_replays_the_csv_exactly(shared_data):
    from brainflow.data_filter import DataFilter

    path = shared_data / "brainflow" / "test_data.csv"
    expected = DataFilter.read_file(str(path))[1:17].T.astype(np.float32)
    source = BrainFlowSource(get_profile("playback"), {"file": str(path)}, stall_timeout=0.5, reconnect=False)
    live = LiveStream(source)
    live.open()
    live.start()
    assert source.wait(30), "playback did not reach the end of the file"
    live.stop()
    got = live.pipeline.raw.since(0).data
    assert got.shape == expected.shape == (2502, 16)
    np.testing.assert_array_equal(got, expected)


def test_stalled_board_reconnects_without_losing_buffered_samples():
    states: list[SourceState] = []
    source = BrainFlowSource(get_profile("synthetic"), stall_timeout=0.5, reconnect_after=0.3)
    source.add_state_listener(lambda s, r: states.append(s))
    live = LiveStream(source)
    live.open()
    live.start()
    try:
        assert _wait(lambda: live.pipeline.raw.total_written > 250, 10)
        before = live.pipeline.raw.latest(250)
        # The "headset" goes quiet: BrainFlow's real board stops sending.
        source.board.stop_stream()
        assert _wait(lambda: source.state == SourceState.STALLED, 5)
        assert _wait(lambda: source.reconnects == 1 and source.state == SourceState.STREAMING, 15)
        n_after_reconnect = live.pipeline.raw.total_written
        assert _wait(lambda: live.pipeline.raw.total_written > n_after_reconnect + 100, 10)
    finally:
        live.stop()
    assert states[:2] == [SourceState.CONNECTING, SourceState.STREAMING]
    assert SourceState.STALLED in states and SourceState.RECONNECTING in states
    again = live.pipeline.raw.range(before.start, before.next_index)
    np.testing.assert_array_equal(again.data, before.data)


def test_serial_port_that_does_not_exist():
    source = BrainFlowSource(get_profile("cyton"), {"serial_port": "/dev/ttyNOPE42"})
    with pytest.raises(DeviceError, match=r"serial port /dev/ttyNOPE42 does not exist.*--serial-port"):
        source.open()
    assert source.state == SourceState.FAILED


def test_missing_playback_file(tmp_path):
    with pytest.raises(DeviceError, match="does not exist"):
        BrainFlowSource(get_profile("playback"), {"file": str(tmp_path / "x.csv")}).open()


@pytest.mark.parametrize("rel, kind", [("mne-python/edf/tests/data/test.edf", "mne"),
                                       ("muse-lsl/N170/data_2017-09-13-15.30.01.csv", "muselsl")])
def test_a_playback_file_that_is_not_brainflows_points_to_replay(shared_data, rel, kind):
    """BrainFlow's playback board streams nothing from another format, and says nothing: refused before it starts."""
    with pytest.raises(DeviceError, match=rf"is not a BrainFlow CSV \(it reads as {kind}\).*bci-dream replay"):
        BrainFlowSource(get_profile("playback"), {"file": str(shared_data / rel)}).open()


def test_profile_with_wrong_channel_count(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nsource = "brainflow"\nboard = "SYNTHETIC_BOARD"\nchannels = ["Fz", "Cz"]\n')
    with pytest.raises(DeviceError, match="lists 2 channels but the board delivers 16"):
        BrainFlowSource(load_profile(path)).open()


def test_windows_from_the_synthetic_board_follow_the_stream():
    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    windower = live.windower(window_s=2.0, hop_s=0.25, target_sfreq=256.0)
    live.start()
    try:
        assert _wait(lambda: windower.latest() is not None, 10)
        first = windower.poll()
        assert _wait(lambda: (w := windower.poll()) is not None and w.index_end > first.index_end, 5)
        w = windower.latest()
    finally:
        live.stop()
    assert w.data.shape == (128, 512) and w.mask.sum() == 16
    assert w.t_end == live.pipeline.raw.range(w.index_end - 1, w.index_end).timestamps[0]
    assert abs(w.t_end - local_clock()) < 2.0


def test_brainflows_own_buffer_holds_a_minute_not_half_an_hour(monkeypatch):
    """BrainFlow's default ring buffer (450,000 samples: 30 min at 250 Hz) is allocated at once and touched page by
    page as it fills: the process grew by ~230 MB an hour (benchmarks/memory_soak.py). The real synthetic board is
    started with a minute of samples instead."""
    from brainflow.board_shim import BoardShim

    sizes = []
    real = BoardShim.start_stream

    def spy(self, num_samples=450000, streamer_params=None):
        sizes.append(num_samples)
        return real(self, num_samples, streamer_params)

    monkeypatch.setattr(BoardShim, "start_stream", spy)
    source = BrainFlowSource(get_profile("synthetic"))
    source.open()
    try:
        assert sizes == [15_000]  # 60 s at 250 Hz
    finally:
        source.stop()
