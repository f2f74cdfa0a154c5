"""RingBuffer: absolute indices, wrap-around, overrun detection, one writer and many readers."""

import threading

import numpy as np
import pytest

from bci_dream.core.errors import ChunkError
from bci_dream.core.ring_buffer import MarkerBuffer, RingBuffer
from bci_dream.core.types import Marker


def _block(start: int, n: int, ch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(start, start + n)
    data = (idx[:, None] * 10 + np.arange(ch)[None, :]).astype(np.float32)
    return data, idx.astype(np.float64) / 100.0


def test_latest_and_since_across_wraparound():
    buf = RingBuffer(100, 3)
    written = 0
    for n in (30, 50, 70, 1, 99):
        buf.write(*_block(written, n))
        written += n
    assert buf.total_written == written == 250
    latest = buf.latest(40)
    assert latest.start == 210 and latest.next_index == 250
    np.testing.assert_array_equal(latest.data, _block(210, 40)[0])
    np.testing.assert_array_equal(latest.timestamps, _block(210, 40)[1])
    res = buf.since(100)
    assert res.lost == 50 and res.start == 150 and len(res) == 100
    np.testing.assert_array_equal(res.data, _block(150, 100)[0])
    assert len(buf.since(250)) == 0
    with pytest.raises(ValueError):
        buf.since(251)


def test_write_larger_than_capacity_keeps_newest():
    buf = RingBuffer(10, 3)
    buf.write(*_block(0, 25))
    assert buf.total_written == 25 and buf.oldest_index == 15
    np.testing.assert_array_equal(buf.latest(100).data, _block(15, 10)[0])


def test_wrong_channel_count_is_rejected():
    buf = RingBuffer(10, 3)
    with pytest.raises(ChunkError):
        buf.write(np.zeros((2, 4), np.float32), np.zeros(2))


def test_one_writer_many_readers_never_see_torn_or_missing_samples():
    """Readers follow with since(); every sample they get must be the one written at that index."""
    buf = RingBuffer(512, 8)
    total = 200_000
    errors: list[str] = []
    done = threading.Event()

    def writer():
        i = 0
        rng = np.random.default_rng(0)
        while i < total:
            n = int(rng.integers(1, 64))
            n = min(n, total - i)
            buf.write(*_block(i, n, 8))
            i += n
        done.set()

    def reader():
        k = 0
        got = 0
        lost = 0
        while not (done.is_set() and k >= buf.total_written):
            res = buf.since(k)
            if len(res):
                expected = _block(res.start, len(res), 8)[0]
                if not np.array_equal(res.data, expected):
                    errors.append(f"torn read at {res.start}")
                    return
            lost += res.lost
            got += len(res)
            k = res.next_index
        if got + lost != total:
            errors.append(f"reader accounted for {got} + {lost} lost of {total}")

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_marker_buffer_indices():
    mb = MarkerBuffer(capacity=3)
    mb.extend([Marker(float(i), str(i)) for i in range(5)])
    items, nxt = mb.since(0)
    assert [m.text for m in items] == ["2", "3", "4"] and nxt == 5
    assert [m.text for m in mb.between(3.0, 10.0)] == ["3", "4"]
