"""Signal quality: synthetic channels of each kind, and real recordings."""

from __future__ import annotations

import numpy as np
import pytest

from bci_dream.signal.filters import OnlineFilter, design_filter
from bci_dream.signal.quality import ChannelQuality, QualityThresholds, assess_quality

SFREQ = 250.0
CYTON_RAIL_UV = 187500.0


def load_openbci_txt(path, n_channels: int = 8) -> np.ndarray:
    """EXG columns [n, n_channels] in µV of an OpenBCI GUI text file (lines starting with a digit)."""
    with open(path) as f:
        rows = [line for line in f if line[:1].isdigit()]
    return np.loadtxt(rows, delimiter=",", usecols=range(1, 1 + n_channels), dtype=np.float64)


def pink_noise(rng: np.random.Generator, n: int, std_uv: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / SFREQ)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / x.std() * std_uv


def last_second(raw: np.ndarray, line_freq: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Filter the whole of ``raw`` [n, C] online and return the last second of raw and filtered."""
    filtered = OnlineFilter(design_filter(SFREQ, notch=line_freq), raw.shape[1]).process(raw.astype(np.float32))
    n = int(SFREQ)
    return raw[-n:], filtered[-n:]


@pytest.fixture(scope="module")
def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = int(5 * SFREQ)
    t = np.arange(n) / SFREQ
    good = 40000 + pink_noise(rng, n, 10) + 10 * np.sin(2 * np.pi * 10 * t)  # 40 mV offset, EEG + alpha
    flat = np.full(n, 1234.5) + rng.normal(0, 0.01, n)
    railed = np.clip(good * 6, -CYTON_RAIL_UV, CYTON_RAIL_UV)  # at the rail ~all the time
    railed[::2] = CYTON_RAIL_UV  # and in any case in half the samples
    mains = good + 150 * np.sin(2 * np.pi * 50 * t)
    large = 40000 + pink_noise(rng, n, 400)
    return {"good": good, "flat": flat, "railed": railed, "line_noise": mains, "high_amplitude": large}


def test_synthetic_channels_get_their_status(synthetic):
    names = list(synthetic)
    raw, filt = last_second(np.stack([synthetic[k] for k in names], axis=1))
    result = assess_quality(raw, filt, SFREQ, names, line_freq=50.0, rail_uv=CYTON_RAIL_UV)
    assert [q.status for q in result] == names
    by_name = {q.name: q for q in result}
    good = by_name["good"]
    assert good.ok and good.advice == ""
    assert 5 < good.std_uv < 30 and good.line_noise_ratio < 1 and good.railed_fraction == 0
    assert not by_name["flat"].ok and "skin" in by_name["flat"].advice
    assert by_name["railed"].railed_fraction >= 0.5
    assert by_name["line_noise"].line_noise_ratio > 10
    assert by_name["high_amplitude"].std_uv > 100
    for q in result:
        assert isinstance(q, ChannelQuality)
        assert q.ok == (q.status == "good")
        assert q.ok or q.advice.endswith(".")


def test_rail_unknown_uses_repeated_extreme(synthetic):
    names = ["good", "flat", "railed"]
    swinging = (synthetic["good"] - 40000) * 100
    clipped = np.clip(swinging, None, np.quantile(swinging, 0.7))  # saturates 30% of the time
    raw, filt = last_second(np.stack([synthetic["good"], synthetic["flat"], clipped], axis=1))
    result = assess_quality(raw, filt, SFREQ, names, rail_uv=None)
    assert [q.status for q in result] == names
    assert 0.1 < result[2].railed_fraction < 0.6
    # A constant channel is flat, not railed, when the rail is unknown.
    const = np.full((250, 1), 5.0)
    assert assess_quality(const, const * 0, SFREQ, ["x"])[0].status == "flat"


def test_60_hz_mains_and_thresholds(synthetic):
    rng = np.random.default_rng(1)
    n = int(5 * SFREQ)
    t = np.arange(n) / SFREQ
    x = (pink_noise(rng, n, 10) + 150 * np.sin(2 * np.pi * 60 * t))[:, None]
    raw, filt = last_second(x, line_freq=60.0)
    assert assess_quality(raw, filt, SFREQ, ["C3"], line_freq=60.0)[0].status == "line_noise"
    assert assess_quality(raw, filt, SFREQ, ["C3"], line_freq=50.0)[0].status == "good"
    loose = QualityThresholds(line_noise_ratio=1e6)
    assert assess_quality(raw, filt, SFREQ, ["C3"], line_freq=60.0, thresholds=loose)[0].ok
    # Mains at Nyquist or above cannot be measured: no ratio, no line-noise verdict.
    q = assess_quality(raw[::3], filt[::3], SFREQ / 3, ["C3"], line_freq=60.0)[0]
    assert np.isnan(q.line_noise_ratio)


def test_nonfinite_and_shape_errors():
    rng = np.random.default_rng(2)
    raw = pink_noise(rng, 250, 10)[:, None].repeat(2, axis=1)
    raw[10:20, 0] = np.nan
    raw[:, 1] = np.nan
    result = assess_quality(raw, raw, SFREQ, ["a", "b"])
    assert result[0].status == "good" and result[1].status == "flat"
    with pytest.raises(ValueError):
        assess_quality(raw, raw, SFREQ, ["a"])


def test_openbci_raw_2016_seven_flat_channels(shared_data):
    x = load_openbci_txt(shared_data / "openbci-gui" / "OpenBCI-RAW-2016-07-21_17-46-29.txt")
    raw, filt = x[:5250], OnlineFilter(design_filter(SFREQ, notch=60.0), 8).process(x[:5250].astype(np.float32))
    result = assess_quality(raw[-250:], filt[-250:], SFREQ, [f"ch{i + 1}" for i in range(8)],
                            line_freq=60.0, rail_uv=CYTON_RAIL_UV)
    assert [q.status == "flat" for q in result] == [True, False, True, True, True, True, True, True]


def test_gusbamp_recording_sensible(shared_data):
    pyxdf = pytest.importorskip("pyxdf")
    path = shared_data / "bci-essentials" / "sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf"
    streams, _ = pyxdf.load_xdf(str(path), select_streams=[{"type": "EEG"}])
    eeg = streams[0]
    names = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    sfreq = float(eeg["info"]["nominal_srate"][0])
    x = np.asarray(eeg["time_series"], np.float64)[: int(11 * sfreq)]  # µV, offsets of several mV
    filt = OnlineFilter(design_filter(sfreq, notch=60.0), len(names)).process(x.astype(np.float32))
    n = int(sfreq)
    result = {q.name: q for q in assess_quality(x[-n:], filt[-n:], sfreq, names, line_freq=60.0)}
    good = [k for k, q in result.items() if q.ok]
    # Most electrodes are fine; F4, FC3 and C3 carry 30-200 µV of 60 Hz mains in this recording.
    assert len(good) >= 10
    assert {"F4", "FC3", "C3"} <= {k for k, q in result.items() if q.status == "line_noise"}
    assert all(q.status != "flat" for q in result.values())
    assert all(q.std_uv < 100 for q in result.values())


def test_openbci_v6_mains_everywhere(shared_data):
    """This Cyton recording carries 150-480 µV of 60 Hz on every channel; after the notch it is EEG-sized."""
    x = load_openbci_txt(shared_data / "openbci-gui" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")[: 31 * 250]
    filt = OnlineFilter(design_filter(SFREQ, notch=60.0), 8).process(x.astype(np.float32))
    result = assess_quality(x[-250:], filt[-250:], SFREQ, [f"ch{i + 1}" for i in range(8)],
                            line_freq=60.0, rail_uv=CYTON_RAIL_UV)
    assert all(q.status == "line_noise" for q in result)
    assert all(5 < q.std_uv < 100 and q.railed_fraction == 0 for q in result)
