"""Windower: window size, resampling, montage mask, timing, poll cadence and window_at."""

from __future__ import annotations

import numpy as np
import pytest

from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.signal.montage import CANONICAL_128, Montage
from bci_dream.signal.resample import resample, resampled_length
from bci_dream.signal.windower import Window, Windower

SFREQ = 250.0
CYTON = ["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"]
T0 = 1000.0  # LSL clock of sample 0
FREQ = 10.0


def sine(start: int, n: int, n_channels: int = 8, sfreq: float = SFREQ) -> tuple[np.ndarray, np.ndarray]:
    """Samples [n, C] of 20 µV sines at 10 Hz (channel c scaled by c + 1) and their timestamps."""
    t = (start + np.arange(n)) / sfreq
    data = 20 * np.sin(2 * np.pi * FREQ * t)[:, None] * np.arange(1, n_channels + 1)
    return data.astype(np.float32), T0 + t


def feed(buf: RingBuffer, n: int, chunk: int = 10, sfreq: float = SFREQ) -> None:
    end = buf.total_written + n
    while buf.total_written < end:
        k = min(chunk, end - buf.total_written)
        buf.write(*sine(buf.total_written, k, buf.n_channels, sfreq))


def test_window_shape_frequency_mask_and_t_end():
    buf = RingBuffer(int(10 * SFREQ), 8)
    w = Windower(buf, SFREQ, CYTON)
    assert w.n_samples == 512
    feed(buf, 499)
    assert w.latest() is None and w.poll() is None
    feed(buf, 700)
    win = w.latest()
    assert isinstance(win, Window)
    assert win.data.shape == (128, 512) and win.data.dtype == np.float32
    assert win.sfreq == 256.0 and win.ch_names == CANONICAL_128
    assert win.index_end == 1199
    assert win.t_end == T0 + 1198 / SFREQ
    expected_mask = np.isin(np.array(CANONICAL_128), CYTON)
    np.testing.assert_array_equal(win.mask, expected_mask)
    assert not win.data[~win.mask].any()
    # Same frequency: the spectral peak of every channel is at 10 Hz.
    o2 = win.data[CANONICAL_128.index("O2")]
    freqs = np.fft.rfftfreq(512, 1 / 256)
    assert freqs[np.argmax(np.abs(np.fft.rfft(o2)))] == FREQ
    # Sample-accurate timing: the last sample lies lag_s (under one output period) before t_end, on the stream's
    # fixed output grid (k * 125/128 source samples), earlier ones every 1/256 s before.
    assert 0 <= win.lag_s < 1 / 256
    last_k = int((1198 * 256) // 250)
    assert win.lag_s == pytest.approx((1198 - last_k * 250 / 256) / SFREQ)
    t = (win.t_end - win.lag_s - T0) - np.arange(511, -1, -1) / 256
    for name, scale in (("Fp1", 1), ("O2", 8)):
        got = win.data[CANONICAL_128.index(name)]
        ref = 20 * scale * np.sin(2 * np.pi * FREQ * t)
        assert np.abs(got - ref)[:-8].max() < 0.01 * 20 * scale  # away from the newest edge
        assert np.abs(got - ref).max() < 0.05 * 20 * scale  # the edge is extrapolated


def test_poll_cadence_and_latest_wins():
    buf = RingBuffer(int(10 * SFREQ), 8)
    w = Windower(buf, SFREQ, CYTON, hop_s=0.25)
    ends = []
    for _ in range(300):  # 3000 samples = 12 s in chunks of 10
        feed(buf, 10)
        win = w.poll()
        if win is not None:
            ends.append(win.index_end)
    assert ends[0] == 500  # the first full window
    gaps = np.diff(ends)
    assert np.all(gaps >= 62.5) and np.all(gaps <= 70)  # one window per hop (62.5 samples)
    assert len(ends) == pytest.approx((3000 - 500) / 70 + 1, abs=8)
    assert w.poll() is None  # nothing new
    feed(buf, 1000)  # four seconds at once: only the newest window
    win = w.poll()
    assert win is not None and win.index_end == buf.total_written
    assert w.poll() is None
    feed(buf, 62)
    assert w.poll() is None
    feed(buf, 1)
    assert w.poll().index_end == buf.total_written


def test_window_at():
    buf = RingBuffer(int(4 * SFREQ), 8)
    w = Windower(buf, SFREQ, CYTON)
    feed(buf, 800)
    at_800 = w.latest()
    assert w.window_at(801) is None  # not written yet
    assert w.window_at(400) is None  # not a full window before it
    feed(buf, 300)
    again = w.window_at(800)
    assert again.index_end == 800 and again.t_end == at_800.t_end
    np.testing.assert_allclose(again.data, at_800.data, atol=1e-4)
    feed(buf, 500)  # 1600 written, the buffer keeps 1000: samples before 600 are gone
    assert w.window_at(800) is None
    assert w.window_at(1100) is not None


def test_units_identity_rate_and_custom_montage():
    sfreq = 256.0
    buf = RingBuffer(2048, 5)
    names = ["TP9", "AF7", "AF8", "TP10", "Right AUX"]
    montage = Montage(["AF7", "AF8", "TP9", "TP10", "Fz"])
    w = Windower(buf, sfreq, names, montage=montage, to_microvolts=1e6, window_s=1.0)
    feed(buf, 300, sfreq=sfreq)
    data, _ = sine(0, 300, 5, sfreq)
    win = w.latest()
    assert win.data.shape == (5, 256) and win.ch_names == montage.names
    np.testing.assert_array_equal(win.mask, [True, True, True, True, False])
    np.testing.assert_allclose(win.data[2], data[-256:, 0] * 1e6, rtol=1e-6)  # TP9, no resampling
    np.testing.assert_allclose(win.data[0], data[-256:, 1] * 1e6, rtol=1e-6)  # AF7


@pytest.mark.parametrize("sfreq", [125.0, 250.0, 300.0, 500.0, 1000.0, 2048.0])
def test_window_length_is_exact_at_any_rate(sfreq):
    buf = RingBuffer(int(5 * sfreq), 4)
    w = Windower(buf, sfreq, ["Fz", "Cz", "Pz", "Oz"])
    feed(buf, int(2.5 * sfreq), chunk=int(sfreq), sfreq=sfreq)
    win = w.latest()
    assert win.data.shape == (128, 512)
    assert np.isfinite(win.data).all()


@pytest.mark.parametrize("sfreq", [250.0, 500.0, 1000.0, 200.0])
def test_the_cached_filter_resamples_exactly_as_scipy_designs_it(sfreq):
    from scipy import signal as sps

    from bci_dream.signal.resample import resample_ratio

    x = np.random.default_rng(0).standard_normal((3, 1200)).astype(np.float32)
    up, down = resample_ratio(sfreq, 256.0)
    for _ in range(2):  # (the second call takes the cached filter)
        np.testing.assert_array_equal(resample(x, sfreq, 256.0), sps.resample_poly(x, up, down, axis=-1,
                                                                                   padtype="line"))


def test_resample_helpers():
    x = np.random.default_rng(0).normal(size=(3, 500)).astype(np.float32)
    assert resample(x, 250, 250) is x
    y = resample(x, 250, 256)
    assert y.shape == (3, resampled_length(500, 250, 256)) == (3, 512)
    assert resample(x.T, 250, 125, axis=0).shape == (250, 3)


def test_a_window_says_how_long_a_gap_it_holds():
    """A window whose source samples skip 0.3 s carries gap_s (written to frames.jsonl); an intact one 0."""
    from bci_dream.core.ring_buffer import RingBuffer
    from bci_dream.signal.windower import Windower

    buf = RingBuffer(5000, 2)
    t = np.arange(2000) / 250.0
    t[1700:] += 0.3
    buf.write(np.zeros((2000, 2), np.float32), t)
    w = Windower(buf, 250.0, ("Fz", "Cz"))
    assert abs(w.window_at(2000).gap_s - 0.3) < 1e-6
    assert w.window_at(1400).gap_s == 0.0


@pytest.mark.parametrize("sfreq", [250.0, 1000.0, 300.0, 125.0, 512.0])
def test_grid_resampler_is_scipys_polyphase_away_from_the_ends(sfreq):
    """Output k of the fixed grid is resample_poly's output k (same FIR) wherever all its inputs exist; consecutive
    runs (banded products) and scattered outputs (gathered) agree; the edge outputs equal outputs() with the newest
    input held."""
    from scipy import signal as sps

    from bci_dream.signal.grid_resampler import GridResampler
    from bci_dream.signal.resample import resample_ratio

    x = np.random.default_rng(1).standard_normal((3000, 3)).astype(np.float32)
    grid = GridResampler(sfreq, 256.0)
    up, down = resample_ratio(sfreq, 256.0)
    reference = sps.resample_poly(x, up, down, axis=0, padtype="line")
    k = np.arange(0, grid.settled_end(len(x)))
    together = grid.outputs(x, 0, k, 0, len(x) - 1)
    scattered = grid.outputs(x, 0, k[::-1].copy(), 0, len(x) - 1)[::-1]
    inner = k >= grid.half // down + 2  # (before that, outputs read inputs before sample 0)
    np.testing.assert_allclose(together[inner], reference[k[inner]], atol=2e-6)
    np.testing.assert_allclose(scattered, together, atol=2e-6)
    e = 2500
    edge = np.arange(grid.settled_end(e), grid.last_output(e) + 1)
    np.testing.assert_allclose(grid.edge_outputs(x[:e], 0, e), grid.outputs(x, 0, edge, 0, e - 1),
                               atol=2e-6)


@pytest.mark.parametrize("sfreq", [250.0, 1000.0])
def test_windows_read_as_samples_arrive_equal_windows_made_from_scratch(sfreq):
    """A reader that keeps up (its ring of settled outputs grows with every read, in chunks of any size) gets the
    same windows as a new windower reading the same buffer at the same index_end; one that fell behind the ring
    buffer starts over and still gets them."""
    rng = np.random.default_rng(2)
    buf = RingBuffer(int(4 * sfreq), 4)
    names = ["Fz", "Cz", "Pz", "Oz"]
    live = Windower(buf, sfreq, names)
    t = 0
    for _ in range(120):
        n = int(rng.integers(1, int(0.08 * sfreq)))
        buf.write(rng.standard_normal((n, 4)).astype(np.float32) * 20, (t + np.arange(n)) / sfreq)
        t += n
        window = live.latest()
        if window is None:
            continue
        fresh = Windower(buf, sfreq, names).window_at(window.index_end)
        np.testing.assert_allclose(window.data, fresh.data, atol=1e-4)
        assert window.t_end == fresh.t_end and window.lag_s == fresh.lag_s
    assert window is not None
    buf.write(rng.standard_normal((int(5 * sfreq), 4)).astype(np.float32), (t + np.arange(int(5 * sfreq))) / sfreq)
    late = live.latest()
    np.testing.assert_allclose(late.data, Windower(buf, sfreq, names).latest().data, atol=1e-4)


@pytest.mark.parametrize("sfreq", [1.0, 2.0, 3.0])
def test_a_stream_at_a_few_hertz_is_windowed_without_error(sfreq):
    """From a stream far slower than EEG (a counter at 1-3 Hz chosen as the EEG stream), every output of a window
    still waits on later samples: the window is all edge, and equals one made from scratch."""
    buf = RingBuffer(64, 8)
    live = Windower(buf, sfreq, CYTON, hop_s=0.25)
    made = 0
    for _ in range(40):
        feed(buf, 1, chunk=1, sfreq=sfreq)
        window = live.poll()
        if window is not None:
            made += 1
            fresh = Windower(buf, sfreq, CYTON).window_at(window.index_end)
            np.testing.assert_allclose(window.data, fresh.data, atol=1e-4)
    assert made > 0


def test_a_new_mapping_takes_effect_at_the_next_window():
    """The engine restricts a windower's mapping to a model's channels: the next window holds only those."""
    buf = RingBuffer(int(10 * SFREQ), 8)
    w = Windower(buf, SFREQ, CYTON)
    feed(buf, 1200)
    assert w.latest().mask.sum() == 8
    keep = np.isin(np.array(CANONICAL_128), ["O1", "O2"])
    w.mapping = w.mapping.restricted_to(keep)
    feed(buf, 30)
    win = w.latest()
    np.testing.assert_array_equal(win.mask, keep)
    assert not win.data[~keep].any() and win.data[keep].any()
