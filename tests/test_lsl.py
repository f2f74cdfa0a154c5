"""LSL source and publisher against real liblsl outlets and inlets.

Outlets for the source run in a subprocess (tests/lsl_outlet_process.py): destroying an outlet
before an inlet of the same process can crash liblsl. Where a test needs an outlet and an inlet in
this process, it closes the inlet first. Every test uses its own random stream names so parallel
runs do not see each other's streams.
"""

from __future__ import annotations

import importlib.util
import re
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pylsl
import pytest

from bci_dream.acquisition.lsl_publisher import LslPublisher
from bci_dream.acquisition.lsl_source import LslSource, build_predicate, xpath_literal
from bci_dream.acquisition.lsl_stamps import MAX_HELD_S, StampSettler
from bci_dream.core.errors import ChunkError, DeviceError, StreamNotFoundError
from bci_dream.core.types import Chunk, Marker, SourceState, StreamInfo

OUTLET_SCRIPT = Path(__file__).with_name("lsl_outlet_process.py")
_spec = importlib.util.spec_from_file_location("lsl_outlet_process", OUTLET_SCRIPT)
assert _spec is not None and _spec.loader is not None
outlet_process = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(outlet_process)

RATE = 250.0
N_CHANNELS = 8


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- helpers


class OutletProcess:
    """``tests/lsl_outlet_process.py`` in a subprocess; started, waited for "ready", killed at the end."""

    def __init__(self, tmp_path: Path, name: str, source_id: str = "", **options: object) -> None:
        args = [sys.executable, str(OUTLET_SCRIPT), "--name", name, "--source-id", source_id]
        options.setdefault("channels", N_CHANNELS)
        options.setdefault("rate", RATE)
        options.setdefault("seconds", 30)
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.stderr_path = tmp_path / f"outlet-{uuid.uuid4().hex[:6]}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._wait_ready(10.0)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.kill()
            raise AssertionError(f"outlet process not ready: {line!r}; stderr: {self.stderr_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def outlets(tmp_path: Path):
    """Factory of outlet processes, all killed at the end of the test (after the sources stopped)."""
    started: list[OutletProcess] = []

    def start(name: str, source_id: str = "", **options: object) -> OutletProcess:
        p = OutletProcess(tmp_path, name, source_id, **options)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


class Collector:
    """A chunk sink that keeps every chunk and the local clock at which it arrived."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.received_at: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, chunk: Chunk) -> None:
        with self.lock:
            self.chunks.append(chunk)
            self.received_at.append(pylsl.local_clock())

    def sample_chunks(self) -> list[tuple[Chunk, float]]:
        with self.lock:
            return [(c, t) for c, t in zip(self.chunks, self.received_at) if len(c)]

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            chunks = [c for c in self.chunks if len(c)]
        if not chunks:
            return np.empty((0, N_CHANNELS), np.float32), np.empty(0)
        return np.concatenate([c.samples for c in chunks]), np.concatenate([c.timestamps for c in chunks])

    def counter(self) -> np.ndarray:
        return self.samples()[0][:, 0].astype(np.int64)

    def markers(self) -> list[Marker]:
        with self.lock:
            return [m for c in self.chunks for m in c.markers]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def collect_until(source: LslSource, condition: Callable[[Collector], bool], what: str) -> Collector:
    """Open and start ``source`` into a new :class:`Collector` until ``condition`` holds (10 s), then stop it."""
    collector = Collector()
    source.open()
    source.start(collector)
    try:
        wait_until(lambda: condition(collector), 10, what)
    finally:
        source.stop()
    return collector


def check_samples_exact(samples: np.ndarray) -> np.ndarray:
    """Assert the counter in channel 0 is contiguous and the other channels match; return the counter."""
    counter = samples[:, 0].astype(np.int64)
    assert np.array_equal(samples[:, 0], counter.astype(np.float32))
    gaps = np.flatnonzero(np.diff(counter) != 1)
    assert gaps.size == 0, f"counter not contiguous at {counter[gaps[:5]]} -> {counter[gaps[:5] + 1]}"
    np.testing.assert_array_equal(samples, outlet_process.expected_samples(counter, samples.shape[1]))
    return counter


def check_timestamps(collector: Collector, rate: float, max_latency: float = 0.25) -> None:
    """Timestamps regular at ``1/rate`` and close to the local clock when their chunk arrived."""
    _, ts = collector.samples()
    assert ts.dtype == np.float64
    np.testing.assert_allclose(np.diff(ts), 1.0 / rate, atol=1e-4)
    for chunk, received in collector.sample_chunks():
        lag = received - chunk.timestamps[-1]
        assert -0.01 < lag < max_latency, f"last sample stamped {lag:+.3f} s before it arrived"


# --------------------------------------------------------------------------- query building


def test_xpath_quoting() -> None:
    assert xpath_literal("abc") == "'abc'"
    assert xpath_literal("it's") == '"it\'s"'
    assert xpath_literal("a'b\"c") == "concat('a', \"'\", 'b\"c')"
    assert build_predicate(name="X", stream_type="EEG") == "name='X' and type='EEG'"
    assert build_predicate(source_id="s'1") == 'source_id="s\'1"'
    with pytest.raises(ValueError):
        build_predicate()


# --------------------------------------------------------------------------- LslSource


@pytest.mark.timeout(30)
def test_resolve_by_name_type_and_source_id_sample_exact(outlets) -> None:
    name, stream_type, source_id = unique("bcid-eeg"), unique("EEGtest"), unique("sid")
    outlets(name, source_id, type=stream_type)
    sources = {
        "name": LslSource(stream_name=name, stream_type=None, timeout=5.0),
        "type": LslSource(stream_type=stream_type, timeout=5.0),
        "source_id": LslSource(stream_type=None, source_id=source_id, timeout=5.0),
    }
    collectors = {key: Collector() for key in sources}
    try:
        for key, source in sources.items():
            info = source.open()
            assert info.name == name, key
            assert info.source_id == source_id, key
            assert info.stream_type == stream_type, key
            assert info.sfreq == RATE
            assert info.ch_names == ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4")
            assert info.units == "microvolts"
            assert info.to_microvolts == 1.0
        for key, source in sources.items():
            source.start(collectors[key])
        for key, collector in collectors.items():
            wait_until(lambda: len(collector.counter()) >= 300, 10, f"300 samples via {key}")
            assert sources[key].state == SourceState.STREAMING
    finally:
        for source in sources.values():
            source.stop()
    for key, collector in collectors.items():
        assert sources[key].state == SourceState.STOPPED
        assert sources[key].error is None
        samples, _ = collector.samples()
        assert samples.dtype == np.float32 and samples.flags.c_contiguous
        check_samples_exact(samples)
        check_timestamps(collector, RATE)


def test_a_pull_interval_gathers_chunks_and_loses_no_sample(outlets) -> None:
    """With a pull interval longer than the outlet's chunks (10 ms), each pull brings several of them, and every
    sample still arrives once, in order."""
    name = unique("bcid-interval")
    outlets(name, unique("sid"))
    source = LslSource(stream_name=name, stream_type=None, timeout=5.0, pull_interval=0.05)
    collector = Collector()
    source.open()
    source.start(collector)
    try:
        wait_until(lambda: len(collector.counter()) >= 300, 10, "300 samples")
    finally:
        source.stop()
    samples, _ = collector.samples()
    check_samples_exact(samples)
    check_timestamps(collector, RATE)
    pulls = len(collector.sample_chunks())
    assert len(samples) / pulls >= 0.05 * RATE * 0.5  # (about 12 samples a pull, not 2-3)


@pytest.mark.timeout(30)
def test_samples_stamped_from_nothing_are_restamped(outlets) -> None:
    """An inlet that connects while a chunk is on its way gets the chunk's other samples stamped by
    liblsl as 1/sfreq, 2/sfreq, ... from zero (seen as a rare CI failure of the test above). The
    source stamps them back from the first sample the outlet stamped: none is lost, all are on the
    outlet's time grid."""
    name = unique("bcid-eeg")
    outlets(name, unique("sid"), deduced_first=25)
    source = LslSource(stream_name=name, timeout=5.0)
    collector = collect_until(source, lambda c: len(c.counter()) >= 200, "200 samples")
    samples, ts = collector.samples()
    counter = check_samples_exact(samples)
    assert counter[0] == 0
    check_timestamps(collector, RATE)
    # The outlet stamps sample i with t0 + i / rate.
    offset = ts - counter / RATE
    assert np.ptp(offset) < 2e-3, f"timestamps off by up to {np.ptp(offset):.3f} s"


def test_stamp_settler_holds_until_a_stamped_sample() -> None:
    settler = StampSettler(RATE)
    settler.begin()
    offset, sender_now = 1000.0, 5000.0  # our clock is 1000 s ahead of the sender's
    deduced = (np.arange(1, 4) / RATE) + offset
    out, out_ts = settler.settle(np.ones((3, 2), np.float32), deduced, offset, now=6000.0)
    assert len(out) == 0 and settler.settling
    stamped = sender_now + offset + np.arange(4) / RATE
    chunk = np.vstack([np.full((2, 2), 2, np.float32), np.full((4, 2), 3, np.float32)])
    out, out_ts = settler.settle(chunk, np.concatenate([deduced[-1] + np.arange(1, 3) / RATE, stamped]), offset, 6000.1)
    assert not settler.settling
    np.testing.assert_array_equal(out[:, 0], [1, 1, 1, 2, 2, 3, 3, 3, 3])
    np.testing.assert_allclose(out_ts, stamped[0] + np.arange(-5, 4) / RATE, rtol=0, atol=1e-9)
    # Settled: a stream already stamped passes through untouched.
    settler.begin()
    out, out_ts = settler.settle(chunk, stamped[0] + np.arange(6) / RATE, offset, 6000.2)
    assert out is chunk and not settler.settling


def test_stamp_settler_gives_up_and_flushes() -> None:
    settler = StampSettler(RATE)
    settler.begin()
    out, _ = settler.settle(np.zeros((10, 1), np.float32), np.arange(1, 11) / RATE, 0.0, now=50.0)
    assert len(out) == 0
    held, held_ts = settler.flush()  # e.g. the stream stalled
    assert held.shape == (10, 1)
    np.testing.assert_allclose(held_ts, 50.0 - np.arange(9, -1, -1) / RATE)
    assert len(settler.flush()[0]) == 0
    # A stream whose own clock stays near zero: after MAX_HELD_S its samples go out with arrival times.
    n = int(RATE * MAX_HELD_S) + 1
    out, out_ts = settler.settle(np.zeros((n, 1), np.float32), np.arange(n) / RATE, 0.0, now=80.0)
    assert len(out) == n and out_ts[-1] == 80.0 and not settler.settling


@pytest.mark.timeout(30)
def test_outlet_vanishes_and_returns(outlets) -> None:
    name, source_id = unique("bcid-eeg"), unique("sid")
    first = outlets(name, source_id)
    source = LslSource(stream_name=name, source_id=source_id, timeout=5.0)
    source.stall_timeout = 0.5
    states: list[tuple[SourceState, str]] = []
    source.add_state_listener(lambda state, reason: states.append((state, reason)))
    collector = Collector()
    source.open()
    source.start(collector)
    try:
        wait_until(lambda: len(collector.counter()) >= 100, 10, "samples from the first outlet")
        first.kill()
        wait_until(lambda: source.state == SourceState.STALLED, 5, "STALLED after the outlet died")
        assert ("stalled", "no samples for 0.5 s") in [(s.value, r) for s, r in states]
        assert source.running
        time.sleep(0.3)
        n_before = len(collector.counter())
        last = int(collector.counter()[-1])
        outlets(name, source_id, start_index=last + 1)
        wait_until(lambda: source.state == SourceState.STREAMING, 15, "STREAMING after the outlet returned")
        wait_until(lambda: len(collector.counter()) >= n_before + 100, 10, "samples from the second outlet")
    finally:
        source.stop()
    assert source.state == SourceState.STOPPED and source.error is None
    samples, ts = collector.samples()
    counter = samples[:, 0].astype(np.int64)
    assert np.all(np.diff(counter) > 0), "counter must only grow across the reconnection"
    check_samples_exact(samples[:n_before])
    after = check_samples_exact(samples[n_before:])
    assert after[0] > last
    # Timestamps after the gap are right at once (the dejitterer was reset when the stream stalled).
    for chunk, received in collector.sample_chunks():
        assert -0.01 < received - chunk.timestamps[-1] < 0.25
    np.testing.assert_allclose(np.diff(ts[n_before:]), 1.0 / RATE, atol=1e-4)
    assert ts[n_before] - ts[n_before - 1] > 0.5


@pytest.mark.timeout(30)
def test_unrecoverable_stream_is_found_again(outlets) -> None:
    """Without a source_id liblsl cannot recover: the pull raises LostError, the source reports
    RECONNECTING and resolves the stream again by itself."""
    name = unique("bcid-eeg")
    first = outlets(name, "")
    source = LslSource(stream_name=name, timeout=5.0)
    source.stall_timeout = 0.5
    states: list[SourceState] = []
    source.add_state_listener(lambda state, reason: states.append(state))
    collector = Collector()
    source.open()
    assert source.info.source_id == ""
    source.start(collector)
    try:
        wait_until(lambda: len(collector.counter()) >= 100, 10, "samples from the first outlet")
        first.kill()
        wait_until(lambda: source.state == SourceState.RECONNECTING, 10, "RECONNECTING after the outlet died")
        n_before = len(collector.counter())
        last = int(collector.counter()[-1])
        outlets(name, "", start_index=last + 1)
        wait_until(lambda: len(collector.counter()) >= n_before + 100, 15, "samples from the second outlet")
        assert source.state == SourceState.STREAMING
    finally:
        source.stop()
    assert source.error is None and source.state == SourceState.STOPPED
    samples, _ = collector.samples()
    check_samples_exact(samples[:n_before])
    assert check_samples_exact(samples[n_before:])[0] > last


@pytest.mark.timeout(20)
def test_pause_without_disconnect_keeps_timestamps_right(outlets) -> None:
    """An outlet that stops pushing for a while (connection up) stalls the source; afterwards the
    timestamps are right at once (liblsl's dejitterer alone would lag by the pause for minutes)."""
    name = unique("bcid-eeg")
    outlets(name, unique("sid"), pause_after=1.0, pause_for=1.0)
    source = LslSource(stream_name=name, timeout=5.0)
    source.stall_timeout = 0.4
    states: list[SourceState] = []
    source.add_state_listener(lambda state, reason: states.append(state))
    collector = Collector()
    source.open()
    source.start(collector)
    try:
        wait_until(lambda: SourceState.STALLED in states, 10, "STALLED during the pause")
        n_before = len(collector.counter())
        wait_until(lambda: len(collector.counter()) >= n_before + 100, 10, "samples after the pause")
    finally:
        source.stop()
    assert states[-3:] == [SourceState.STALLED, SourceState.STREAMING, SourceState.STOPPED]
    samples, ts = collector.samples()
    counter = samples[:, 0].astype(np.int64)
    check_samples_exact(samples[:n_before])
    check_samples_exact(samples[n_before:])
    assert counter[n_before] - counter[n_before - 1] > 0.5 * RATE
    # The outlet stamps sample i with t0 + i / rate: that offset must not move across the pause.
    offset = ts - counter / RATE
    assert np.ptp(offset) < 2e-3, f"timestamps off by up to {np.ptp(offset):.3f} s after the pause"


@pytest.mark.timeout(15)
def test_stream_not_found_within_timeout() -> None:
    name = unique("bcid-missing")
    source = LslSource(stream_name=name, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(StreamNotFoundError) as e:
        source.open()
    elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 3.0
    message = str(e.value)
    assert "\n" not in message
    assert f"name='{name}'" in message and "type='EEG'" in message and "1.0 s" in message
    assert "--stream-name" in message


@pytest.mark.timeout(20)
def test_marker_stream_reaches_the_sink(outlets) -> None:
    name, marker_name = unique("bcid-eeg"), unique("bcid-markers")
    outlets(name, unique("sid"), markers=marker_name, marker_interval=0.1)
    source = LslSource(stream_name=name, marker_stream=marker_name, timeout=5.0)
    collector = collect_until(source, lambda c: len(c.markers()) >= 8, "8 markers")
    markers = collector.markers()
    indices = []
    for marker in markers:
        assert marker.stream == marker_name
        match = re.fullmatch(r"m(\d+)@(\d+\.\d+)", marker.text)
        assert match, marker.text
        indices.append(int(match.group(1)))
        assert abs(marker.timestamp - float(match.group(2))) < 1e-3
        assert abs(pylsl.local_clock() - marker.timestamp) < 30
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    check_samples_exact(collector.samples()[0])


@pytest.mark.timeout(15)
def test_string_or_irregular_stream_is_not_eeg() -> None:
    # No inlet is ever opened on these outlets, so they may live in this process.
    for fmt, rate, expected in (("string", 100.0, "strings"), ("float32", pylsl.IRREGULAR_RATE, "no nominal")):
        name = unique("bcid-bad")
        outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, rate, fmt, unique("sid")))
        try:
            with pytest.raises(DeviceError, match=expected):
                LslSource(stream_name=name, timeout=5.0).open()
        finally:
            del outlet


# --------------------------------------------------------------------------- LslPublisher


def _resolve_one(predicate: str) -> pylsl.StreamInfo:
    found = pylsl.resolve_bypred(predicate, minimum=1, timeout=5.0)
    assert found, f"nothing matches {predicate}"
    return found[0]


@pytest.mark.timeout(20)
def test_publisher_round_trip() -> None:
    labels = ("Fp1", "Fp2", "C3", "C4")
    info = StreamInfo(name=unique("bcid-headset"), ch_names=labels, sfreq=RATE, units="uV", source_id=unique("serial"))
    publisher = LslPublisher(info)
    assert publisher.name == f"{info.name} (bci-dream)"
    assert publisher.source_id == f"bci-dream:{info.source_id}"
    eeg_inlet = marker_inlet = None
    try:
        eeg_inlet = pylsl.StreamInlet(_resolve_one(f"source_id='{publisher.source_id}'"))  # no clock sync
        marker_inlet = pylsl.StreamInlet(_resolve_one(f"name='{info.name} markers (bci-dream)'"))
        full = eeg_inlet.info(timeout=5.0)
        assert full.name() == publisher.name and full.type() == "EEG"
        assert full.nominal_srate() == RATE and full.channel_format() == pylsl.cf_float32
        channel = full.desc().child("channels").child("channel")
        got = []
        while not channel.empty():
            got.append((channel.child_value("label"), channel.child_value("unit"), channel.child_value("type")))
            channel = channel.next_sibling("channel")
        assert got == [(label, "uV", "EEG") for label in labels]
        assert full.desc().child("acquisition").child_value("manufacturer") == "bci-dream"
        minfo = marker_inlet.info(timeout=5.0)
        assert minfo.type() == "Markers" and minfo.channel_format() == pylsl.cf_string
        assert minfo.nominal_srate() == pylsl.IRREGULAR_RATE
        eeg_inlet.open_stream(timeout=5.0)
        marker_inlet.open_stream(timeout=5.0)
        wait_until(publisher.have_consumers, 5, "the inlet to connect")

        rng = np.random.default_rng(0)
        t0 = pylsl.local_clock()
        sent_samples, sent_ts, sent_markers = [], [], []
        start = 0
        for size in (10, 1, 25, 7):
            samples = rng.standard_normal((size, len(labels))).astype(np.float32) * 50
            ts = t0 + (start + np.arange(size)) / RATE + 1e-7 * rng.random(size)  # not exactly regular
            markers = [Marker(float(ts[0]), f"stim {start}", "psychopy")] if size > 1 else []
            publisher(Chunk(samples, ts, markers))
            sent_samples.append(samples), sent_ts.append(ts), sent_markers.extend(markers)
            start += size
        alone = Marker(t0 + 1.0, "marker alone", "psychopy")
        publisher.push(Chunk.empty(len(labels), [alone]))
        sent_markers.append(alone)
        samples = np.concatenate(sent_samples)
        ts = np.concatenate(sent_ts)

        got_samples, got_ts = [], []
        deadline = time.monotonic() + 5
        while sum(len(t) for t in got_ts) < len(ts) and time.monotonic() < deadline:
            data, stamps = eeg_inlet.pull_chunk(timeout=0.2, max_samples=1024)
            if stamps:
                got_samples.append(np.asarray(data, np.float32)), got_ts.append(np.asarray(stamps))
        got_markers: list[tuple[str, float]] = []
        deadline = time.monotonic() + 5
        while len(got_markers) < len(sent_markers) and time.monotonic() < deadline:
            values, stamps = marker_inlet.pull_chunk(timeout=0.2)
            got_markers += [(v[0], t) for v, t in zip(values, stamps)]
    finally:
        # Inlets first: destroying an outlet before its inlet in the same process can crash liblsl.
        del eeg_inlet, marker_inlet
        publisher.close()
    assert publisher.closed
    publisher.push(Chunk(np.zeros((1, len(labels)), np.float32), np.zeros(1)))  # ignored once closed
    np.testing.assert_array_equal(np.concatenate(got_samples), samples)
    np.testing.assert_allclose(np.concatenate(got_ts), ts, rtol=0, atol=1e-6)
    assert [text for text, _ in got_markers] == [m.text for m in sent_markers]
    np.testing.assert_allclose([t for _, t in got_markers], [m.timestamp for m in sent_markers], rtol=0, atol=1e-6)


def test_a_window_reader_drains_the_inlet_between_pulls(outlets) -> None:
    """With a pull interval of a second, the acquisition thread alone would leave windows up to a second old; the
    live windower drains the inlet first, so each window ends with the newest sample the outlet sent (within its
    10-ms chunks and the transport), every sample arrives once, and the thread stays asleep while a reader drains."""
    from bci_dream.acquisition.live import LiveStream

    name = unique("bcid-drain")
    outlets(name, unique("sid"), channels=8)
    live = LiveStream(LslSource(stream_name=name, stream_type=None, timeout=5.0, pull_interval=1.0))
    live.open()
    windower = live.windower(window_s=0.5, target_sfreq=RATE)
    collector = Collector()
    live.pipeline.add_listener(collector)
    live.start()
    try:
        wait_until(lambda: live.pipeline.raw.total_written >= 200, 10, "200 samples")
        ages = []
        for _ in range(20):
            time.sleep(0.05)
            window = windower.latest()
            assert window is not None
            ages.append(pylsl.local_clock() - window.t_end)
    finally:
        live.stop()
    assert np.median(ages) < 0.1, f"windows {np.median(ages):.3f} s old with drains"
    check_samples_exact(collector.samples()[0])


def test_a_chunk_a_drain_cannot_take_stops_the_source_not_the_reader(outlets) -> None:
    """A drain that hits a chunk the pipeline refuses does not raise in the reader: the acquisition thread reports it
    and the source ends FAILED with the reason."""
    name = unique("bcid-drainfail")
    outlets(name, unique("sid"), channels=4)
    source = LslSource(stream_name=name, stream_type=None, timeout=5.0, pull_interval=1.0)
    source.open()
    calls = []

    def refuse(chunk: Chunk) -> None:
        calls.append(len(chunk))
        if len(calls) > 1:
            raise ChunkError("wrong channel count (test)")

    source.start(refuse)
    try:
        wait_until(lambda: source.state == SourceState.STREAMING, 10, "streaming")
        time.sleep(0.1)
        source.drain()  # must not raise
        time.sleep(0.1)
        source.drain()
        wait_until(lambda: source.state == SourceState.FAILED, 5, "the source to fail")
    finally:
        source.stop()
    assert "wrong channel count" in str(source.error)


def test_stopping_while_a_reader_drains_closes_cleanly(outlets) -> None:
    """A reader draining in a tight loop on its own thread while the source stops: no error, no crash, the inlet
    closed once the drain is done with it."""
    name = unique("bcid-drainstop")
    outlets(name, unique("sid"), channels=4)
    source = LslSource(stream_name=name, stream_type=None, timeout=5.0, pull_interval=0.05)
    collector = Collector()
    source.open()
    source.start(collector)
    wait_until(lambda: source.state == SourceState.STREAMING, 10, "streaming")
    errors: list[BaseException] = []
    done = threading.Event()

    def drain_loop() -> None:
        try:
            while not done.is_set():
                source.drain()
        except BaseException as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    reader = threading.Thread(target=drain_loop)
    reader.start()
    time.sleep(0.3)
    source.stop()
    done.set()
    reader.join(5)
    assert not errors and source.state == SourceState.STOPPED and source._inlet is None
    check_samples_exact(collector.samples()[0])


def test_a_recording_whose_outlet_went_away_says_so_and_keeps_what_came(outlets, tmp_path) -> None:
    """``record`` from an LSL outlet that is killed 2 s in: the samples that came are in the file (footers written)
    and the command says the stream went silent, with exit status 3, instead of a quiet success."""
    import pyxdf

    name = unique("vanish")
    outlet = outlets(name)
    out = tmp_path / "vanish.xdf"
    proc = subprocess.Popen([sys.executable, "-m", "bci_dream.cli", "record", "--device", "lsl", "--stream-name", name,
                             "--seconds", "8", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    while "streaming" not in proc.stdout.readline():  # (until the first status line: a second of samples came)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    time.sleep(1.0)
    outlet.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "sent nothing for the last" in err and "went away" in err and "Traceback" not in err
    streams, _ = pyxdf.load_xdf(str(out))
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    assert len(eeg["time_stamps"]) > RATE and "footer" in eeg


def test_two_outlets_of_one_name_are_said(outlets, caplog) -> None:
    """Two outlets answer the same query (two amplifiers named alike): one is used, and the warning names both."""
    name = unique("twin")
    outlets(name, unique("a"))
    outlets(name, unique("b"))
    source = LslSource(stream_name=name, timeout=5.0)
    try:
        source.open()
        wait_until(lambda: "LSL streams match" in caplog.text, 5, "the warning of a second stream")
    finally:
        source.stop()
    warning = next(r.getMessage() for r in caplog.records if "LSL streams match" in r.getMessage())
    assert warning.startswith("2 LSL streams match") and name in warning and "ignoring" in warning
