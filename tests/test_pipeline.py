"""StreamPipeline: bad chunks (NaN, wrong channel count, timestamps that jump or go back)."""

import numpy as np
import pytest
from scipy import signal

from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.errors import ChunkError
from bci_dream.core.types import Chunk, Marker, StreamInfo
from bci_dream.signal.filters import design_filter

INFO = StreamInfo("test", ("Fz", "Cz", "Pz"), 250.0, "uV")


def _chunk(start: int, n: int, ch: int = 3) -> Chunk:
    t = np.arange(start, start + n) / 250.0
    x = np.sin(2 * np.pi * 10 * t)[:, None] * 20 + np.arange(ch)[None, :] * 1000
    return Chunk(x.astype(np.float32), t)


def test_filtered_buffer_matches_sosfilt_over_the_whole_signal():
    p = StreamPipeline(INFO)
    chunks = [_chunk(i, 25) for i in range(0, 2500, 25)]
    for c in chunks:
        p.push(c)
    x = np.concatenate([c.samples for c in chunks]).astype(np.float64)
    sos = design_filter(250.0, bandpass=(1.0, 45.0), notch=50.0)
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
    expected, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    got = p.filtered.since(0).data
    np.testing.assert_allclose(got, expected, atol=1e-3 * x.std())


def test_nan_and_inf_are_counted_recorded_raw_and_do_not_poison_the_filter():
    p = StreamPipeline(INFO)
    seen = []
    p.add_listener(seen.append)
    p.push(_chunk(0, 250))
    bad = _chunk(250, 250)
    bad.samples[10:20, 1] = np.nan
    bad.samples[30, 2] = np.inf
    p.push(bad)
    p.push(_chunk(500, 250))
    assert p.stats.nonfinite_values == 11
    assert np.isnan(p.raw.since(0).data[260:270, 1]).all()  # raw keeps what was received
    assert np.isfinite(p.filtered.since(0).data).all()
    assert sum(len(c) for c in seen) == 750


def test_wrong_channel_count_is_refused_with_a_clear_message():
    p = StreamPipeline(INFO)
    with pytest.raises(ChunkError, match="delivered 4 channels but its profile declares 3"):
        p.push(_chunk(0, 10, ch=4))
    assert p.stats.rejected_chunks == 1 and p.raw.total_written == 0


def test_timestamps_backwards_and_jumps_are_counted_and_data_kept():
    p = StreamPipeline(INFO)
    p.push(_chunk(0, 100))
    back = _chunk(50, 10)  # starts before the previous chunk ended
    p.push(back)
    jump = _chunk(10_000, 10)  # 40 s later
    p.push(jump)
    assert p.stats.timestamps_backwards == 1
    assert p.stats.timestamp_jumps == 1
    assert p.raw.total_written == 120


def test_markers_without_samples_are_kept():
    p = StreamPipeline(INFO)
    p.push(Chunk.empty(3, [Marker(1.0, "start")]))
    assert p.markers.since(0)[0][0].text == "start" and p.stats.markers == 1
