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


def test_gaps_in_the_timestamps_are_counted_and_timed_but_jitter_is_not():
    """Steps longer than 3 periods and 100 ms are samples that never arrived; the timestamp jitter of a board that
    stamps on arrival (steps of a few ms at 250 Hz) is not a gap."""
    from bci_dream.acquisition.pipeline import StreamPipeline
    from bci_dream.core.types import Chunk, StreamInfo

    rng = np.random.default_rng(0)
    pipe = StreamPipeline(StreamInfo("lossy", ("Fz", "Cz"), 250.0))
    t = np.arange(2500) / 250.0 + rng.uniform(-0.002, 0.002, 2500)  # (jittered stamps)
    t = np.sort(t)
    t[1000:] += 0.2  # 50 samples' worth lost once
    t[2000:] += 1.5  # and 1.5 s once more
    for start in range(0, 2500, 25):
        pipe.push(Chunk(rng.standard_normal((25, 2)).astype(np.float32), t[start:start + 25]))
    stats = pipe.stats
    assert stats.gaps == 2 and abs(stats.longest_gap_s - 1.5) < 0.01 and abs(stats.gap_seconds - 1.7) < 0.02
    assert "2 gaps, 1.7 s in all, longest 1.5 s" == stats.gaps_text()
    assert abs(stats.effective_rate - 2499 / (t[-1] - t[0])) < 1e-9


def test_a_replay_that_lost_most_of_its_samples_says_so_and_ends_with_status_3(shared_data, tmp_path, capsys):
    """A Cyton+Daisy recording (125 Hz) of which only 40 % arrived, in bursts of loss, as over a weak Bluetooth
    link: the replay reports the effective rate and the gaps, and says in one warning line what was lost."""
    from bci_dream.cli import main
    from bci_dream.io.readers import read_recording
    from bci_dream.io.xdf_writer import XdfWriter

    rec = read_recording(shared_data / "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")
    n = 125 * 60
    keep = np.zeros(n, bool)
    rng = np.random.default_rng(3)
    for start in range(0, n, 50):  # of every 50 samples (0.4 s) 20 arrive, the rest is one gap
        first = start + rng.integers(0, 30)
        keep[first:first + 20] = True
    data = np.tile(rec.data[:n], (1, 2))[keep]
    path = tmp_path / "lossy_daisy.xdf"
    with XdfWriter(path) as w:
        sid = w.add_stream("obci_eeg1", "EEG", 16, 125.0, channel_labels=[f"Ch{i + 1}" for i in range(16)])
        w.write_samples(sid, data, (np.arange(n) / 125.0)[keep])
    assert main(["replay", str(path), "--speed", "0", "--layout", "cyton-daisy"]) == 3
    out, err = capsys.readouterr()
    assert "effective rate" in out and "of nominal 125 Hz" in out
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "only 40 % of the nominal 125 Hz arrived" in warnings[0], err
