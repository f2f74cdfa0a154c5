"""Online filter: chunked filtering equals one-shot filtering; NaN safety; notch response."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import signal as sps

from bci_dream.signal.filters import OnlineFilter, design_filter

SFREQ = 250.0


def load_openbci_txt(path, n_channels: int = 8) -> np.ndarray:
    """EXG columns [n, n_channels] in µV of an OpenBCI GUI text file (lines starting with a digit)."""
    with open(path) as f:
        rows = [line for line in f if line[:1].isdigit()]
    return np.loadtxt(rows, delimiter=",", usecols=range(1, 1 + n_channels), dtype=np.float64)


def run_chunked(filt: OnlineFilter, x: np.ndarray, rng: np.random.Generator, max_chunk: int = 300) -> np.ndarray:
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, max_chunk + 1))
        out.append(filt.process(x[i:i + n]))
        i += n
    return np.concatenate(out)


def reference(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    zi = sps.sosfilt_zi(sos)[..., None] * x[0]
    return sps.sosfilt(sos, x, axis=0, zi=zi)[0]


def assert_matches(out: np.ndarray, ref: np.ndarray) -> None:
    assert out.dtype == np.float32
    assert out.shape == ref.shape
    scale = ref.std(axis=0)
    err = np.abs(out - ref).max(axis=0)
    assert np.all(err <= 1e-5 * scale), (err, scale)


def test_design_shapes():
    sos = design_filter(SFREQ)
    assert sos.shape == (5, 6)  # 4 band-pass sections + 1 notch
    assert design_filter(SFREQ, bandpass=None, notch=None).shape == (0, 6)
    assert design_filter(SFREQ, bandpass=(0.0, 30.0), notch=None).shape == (2, 6)  # low-pass only
    with pytest.raises(ValueError):
        design_filter(SFREQ, bandpass=(40.0, 10.0))


def test_high_cut_clamped_and_notch_above_nyquist_skipped(caplog):
    with caplog.at_level(logging.WARNING, logger="bci_dream.signal.filters"):
        sos = design_filter(100.0, bandpass=(1.0, 60.0), notch=60.0)
    assert "too close to Nyquist" in caplog.text
    assert sos.shape == (4, 6)  # notch at 60 Hz >= Nyquist 50 Hz: skipped
    w, h = sps.sosfreqz(sos, worN=[45.0], fs=100.0)
    assert abs(20 * np.log10(abs(h[0])) + 3.0) < 0.1  # -3 dB at the clamped 45 Hz cut


def test_chunked_equals_one_shot_random_chunks():
    rng = np.random.default_rng(0)
    n, c = 5000, 4
    t = np.arange(n) / SFREQ
    x = (rng.normal(0, 20, (n, c)) + 30000 * np.array([1, -1, 0.5, 2])
         + 50 * np.sin(2 * np.pi * 10 * t)[:, None]).astype(np.float32)
    sos = design_filter(SFREQ)
    ref = reference(sos, x)
    assert_matches(run_chunked(OnlineFilter(sos, c), x, rng), ref)
    # One sample at a time, for the first stretch.
    filt = OnlineFilter(sos, c)
    ones = np.concatenate([filt.process(x[i:i + 1]) for i in range(500)])
    assert_matches(ones, ref[:500])


def test_steady_state_start_does_not_ring_on_dc_offset():
    x = np.full((500, 2), 60000.0, np.float32)  # 60 mV offset, no signal
    out = OnlineFilter(design_filter(SFREQ), 2).process(x)
    assert np.abs(out).max() < 1e-3


def test_real_openbci_recording_chunked(shared_data):
    x = load_openbci_txt(shared_data / "openbci-gui" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")
    assert x.shape[1] == 8 and x.shape[0] > 20000
    x = x.astype(np.float32)
    sos = design_filter(SFREQ, notch=60.0)
    ref = reference(sos, x)
    out = run_chunked(OnlineFilter(sos, 8), x, np.random.default_rng(1))
    assert_matches(out, ref)
    # The filter removes the tens-of-mV offsets: what remains is EEG-sized.
    assert np.abs(x.mean(axis=0)).max() > 10000
    assert np.median(out[2500:].std(axis=0)) < 200


def test_nan_does_not_poison_later_output():
    rng = np.random.default_rng(2)
    x = (rng.normal(0, 10, (2000, 3)) + 20000).astype(np.float32)
    sos = design_filter(SFREQ)
    filt = OnlineFilter(sos, 3)
    first = filt.process(x[:1000])
    bad = x[1000:1100].copy()
    bad[10:20, 0] = np.nan
    bad[50, 1] = np.inf
    bad[60, 2] = -np.inf
    mid = filt.process(bad)
    assert filt.last_nonfinite == 12
    rest = filt.process(x[1100:])
    assert filt.last_nonfinite == 0
    assert np.isfinite(np.concatenate([first, mid, rest])).all()
    # Same as filtering the series with the bad values replaced by the last finite one.
    fixed = x.copy()
    fixed[1010:1020, 0] = x[1009, 0]
    fixed[1050, 1] = x[1049, 1]
    fixed[1060, 2] = x[1059, 2]
    assert_matches(np.concatenate([first, mid, rest]), reference(sos, fixed))


def test_nan_before_any_finite_value_becomes_zero():
    filt = OnlineFilter.none(2)
    out = filt.process(np.array([[np.nan, 1.0], [2.0, np.nan]], np.float32))
    np.testing.assert_array_equal(out, [[0.0, 1.0], [2.0, 1.0]])
    assert filt.last_nonfinite == 2


def test_passthrough_and_reset():
    x = np.random.default_rng(3).normal(size=(100, 2)).astype(np.float32)
    for filt in (OnlineFilter.none(2), OnlineFilter(design_filter(SFREQ, bandpass=None, notch=None), 2)):
        np.testing.assert_array_equal(filt.process(x), x)
    filt = OnlineFilter(design_filter(SFREQ), 2)
    a = filt.process(x)
    filt.reset()
    np.testing.assert_array_equal(filt.process(x), a)
    with pytest.raises(ValueError):
        filt.process(np.zeros((10, 3), np.float32))


def _steady_amplitude(sos: np.ndarray, freq: float) -> float:
    t = np.arange(int(10 * SFREQ)) / SFREQ
    x = np.sin(2 * np.pi * freq * t).astype(np.float32)[:, None]
    y = OnlineFilter(sos, 1).process(x)[-int(2 * SFREQ):, 0]
    return float(np.sqrt(2) * y.std())


def test_notch_attenuates_mains_and_passes_alpha():
    notch_only = design_filter(SFREQ, bandpass=None, notch=50.0)
    assert 20 * np.log10(_steady_amplitude(notch_only, 50.0)) < -20
    assert abs(20 * np.log10(_steady_amplitude(notch_only, 10.0))) < 1
    full = design_filter(SFREQ)
    assert 20 * np.log10(_steady_amplitude(full, 50.0)) < -20
    assert abs(20 * np.log10(_steady_amplitude(full, 10.0))) < 1


def test_the_private_sosfilt_kernel_is_checked_against_the_public_one(monkeypatch, caplog):
    """The acquisition thread filters with scipy's private kernel only if it matches sosfilt: a kernel that
    filters differently, or raises, is refused once and the public function used; the output stays the same."""
    from bci_dream.signal import filters

    assert filters.verify_sosfilt_kernel(filters._private_kernel) is filters._private_kernel  # this scipy's

    def off_by_a_little(sos, signals, state):
        filters._private_kernel(sos, signals, state)
        signals *= 1.001

    def changed_signature(sos, signals):
        raise TypeError("_sosfilt() takes 2 positional arguments but 3 were given")

    caplog.set_level(logging.WARNING)
    assert filters.verify_sosfilt_kernel(off_by_a_little) is None
    assert filters.verify_sosfilt_kernel(changed_signature) is None
    assert "filters differently" in caplog.text and "cannot be used" in caplog.text

    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 4)) * 20
    sos = design_filter(250.0)
    want = sps.sosfilt(sos, x, axis=0, zi=sps.sosfilt_zi(sos)[..., None] * x[0])[0]
    monkeypatch.setattr(filters, "_sosfilt_kernel", changed_signature)  # (as if it broke after the check)
    f = OnlineFilter(sos, 4)
    got = np.concatenate([f.process(x[:100]), f.process(x[100:])])
    assert filters._sosfilt_kernel is None and "kernel failed" in caplog.text
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
