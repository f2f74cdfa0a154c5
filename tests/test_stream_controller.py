"""The Qt-free stream controller behind the main window and the calibration wizard: its races, without a display.

Most tests drive fake streams whose ``open`` blocks until the test lets it go, so that the interleavings the GUI
meets (a second Connect while the first device is still opening, a window closed mid-open, a result that
arrives after a disconnect) happen in a chosen order. The last tests use real streams: BrainFlow's synthetic
board (one board of a kind can be prepared only once at a time) and an .xdf replay with a recording.
"""

from __future__ import annotations

import threading
import time

import pytest

from bci_dream.acquisition.live import LiveStream, make_source
from bci_dream.acquisition.xdf_replay import XdfReplaySource
from bci_dream.core.errors import DeviceError
from bci_dream.devices import get_profile
from bci_dream.runtime.stream_controller import StreamController, StreamEvents


class FakeSource:
    def __init__(self) -> None:
        self.listeners = []

    def add_state_listener(self, listener) -> None:
        self.listeners.append(listener)

    def say(self, state: str, reason: str = "") -> None:
        for listener in self.listeners:
            listener(type("State", (), {"value": state})(), reason)


class FakeLive:
    """A stream whose open waits for ``release`` (set at once by default); records what was done to it."""

    def __init__(self, name: str, log: list, *, block: bool = False, fail_start: Exception | None = None,
                 fail_stop: bool = False) -> None:
        self.name, self.log = name, log
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.fail_start, self.fail_stop = fail_start, fail_stop
        self.source = FakeSource()
        self.pipeline = None
        self.stops = 0

    def open(self):
        self.log.append(("open", self.name))
        assert self.release.wait(10), "the test never released this open"
        self.pipeline = object()

    def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.log.append(("start", self.name))

    def stop(self):
        self.stops += 1
        self.log.append(("stop", self.name))
        if self.fail_stop:
            raise RuntimeError(f"{self.name} would not stop")


class Recorder:
    """The controller's events, collected; ``wait_for(kind)`` blocks until one of that kind came."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._cond = threading.Condition()

    def listeners(self) -> StreamEvents:
        def add(kind):
            def listener(*args):
                with self._cond:
                    self.events.append((kind, *args))
                    self._cond.notify_all()
            return listener
        return StreamEvents(opened=add("opened"), failed=add("failed"), state=add("state"), recorded=add("recorded"))

    def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[tuple]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.of(kind)) >= count, timeout), (kind, self.events)
            return self.of(kind)

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]


@pytest.fixture()
def rec() -> Recorder:
    return Recorder()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_second_open_stops_the_first_stream_before_the_next_one_opens(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    first, second = FakeLive("first", log, block=True), FakeLive("second", log)
    n1 = controller.open(lambda: first)
    wait_until(lambda: ("open", "first") in log)
    n2 = controller.open(lambda: second)  # while the first device is still opening
    assert not controller.is_current(n1) and controller.is_current(n2)
    first.release.set()
    (_, number, live), = rec.wait_for("opened")
    assert (number, live) == (n2, second)
    assert controller.accept(number, live) and controller.live is second
    # the superseded stream was closed by its own worker, before the second one was opened
    assert log.index(("stop", "first")) < log.index(("open", "second"))
    assert first.stops == 1 and second.stops == 0 and not rec.of("failed")


def test_a_result_that_arrives_after_a_disconnect_is_stopped_not_taken(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    stream = FakeLive("late", log)
    controller.open(lambda: stream)
    (_, number, live), = rec.wait_for("opened")
    controller.close()  # the user disconnects before the GUI thread handled the result
    assert controller.accept(number, live) is False
    assert controller.live is None
    wait_until(lambda: stream.stops == 1)


def test_a_stream_opened_but_not_yet_taken_is_stopped_before_the_next_one_opens(rec):
    """The window has not handled the first 'opened' yet when Connect is pressed again: the first stream must
    give its device back before the second one opens (one device can be opened only once)."""
    log: list = []
    controller = StreamController(rec.listeners())
    first, second = FakeLive("first", log), FakeLive("second", log)
    n1 = controller.open(lambda: first)
    rec.wait_for("opened")
    n2 = controller.open(lambda: second)
    rec.wait_for("opened", count=2)
    assert log.index(("stop", "first")) < log.index(("open", "second"))
    assert controller.accept(n1, first) is False and controller.accept(n2, second) is True
    assert first.stops == 1 and second.stops == 0


def test_closing_the_window_stops_a_stream_that_opened_but_was_not_yet_taken(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    stream = FakeLive("unclaimed", log)
    controller.open(lambda: stream)
    rec.wait_for("opened")
    controller.close(wait=True)  # the window closes before its event loop handled 'opened'
    assert stream.stops == 1


def test_a_stream_that_opened_but_failed_to_start_is_closed_and_said_in_one_line(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    broken = FakeLive("cyton", log, fail_start=DeviceError("the board stopped answering; check the dongle"))
    number = controller.open(lambda: broken, what="cyton")
    (_, failed_number, message), = rec.wait_for("failed")
    assert failed_number == number and message == "the board stopped answering; check the dongle"
    assert broken.stops == 1 and not rec.of("opened")


def test_an_unexpected_error_names_the_device_and_the_error(rec):
    controller = StreamController(rec.listeners())

    def explode():
        raise ZeroDivisionError("bad profile arithmetic")

    controller.open(explode, what="muse")
    (_, _, message), = rec.wait_for("failed")
    assert message == "could not open muse: ZeroDivisionError: bad profile arithmetic"


def test_an_error_while_stopping_one_thing_does_not_keep_the_others_running(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    stubborn = FakeLive("stubborn", log, fail_stop=True)
    controller.open(lambda: stubborn)
    (_, number, live), = rec.wait_for("opened")
    controller.accept(number, live)
    engine_stopped = []
    controller.close(retire=(lambda: engine_stopped.append(True),), wait=True)
    assert engine_stopped == [True] and stubborn.stops == 1
    again = FakeLive("again", log)
    controller.open(lambda: again)  # and the controller still works
    rec.wait_for("opened", count=2)


def test_close_with_wait_waits_for_an_open_in_progress_and_stops_it(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    slow = FakeLive("slow", log, block=True)
    controller.open(lambda: slow)
    wait_until(lambda: ("open", "slow") in log)
    threading.Timer(0.2, slow.release.set).start()
    t0 = time.monotonic()
    controller.close(wait=True)  # the window closes while the device is still opening
    assert time.monotonic() - t0 >= 0.15
    assert slow.stops == 1 and not rec.of("opened")


def test_state_changes_carry_the_request_they_belong_to(rec):
    log: list = []
    controller = StreamController(rec.listeners())
    stream = FakeLive("s", log)
    number = controller.open(lambda: stream)
    rec.wait_for("opened")
    stream.source.say("stalled", "no samples for 2 s")
    assert rec.wait_for("state") == [("state", number, "stalled", "no samples for 2 s")]
    controller.close(wait=True)
    assert not controller.is_current(number)  # (the window drops that stream's late state changes)


def test_opening_the_real_synthetic_board_repeatedly_opens_it_once_at_a_time(rec):
    """BrainFlow refuses to prepare a second session of the same board while one exists: Connect pressed three
    times in a row must still end with one streaming board and no error."""
    controller = StreamController(rec.listeners())
    profile = get_profile("synthetic")
    numbers = [controller.open(lambda: LiveStream(make_source(profile)), what="synthetic") for _ in range(3)]
    opened = rec.wait_for("opened", timeout=30)[0]
    assert opened[1] == numbers[-1] and not rec.of("failed")
    assert controller.accept(opened[1], opened[2])
    live = controller.live
    try:
        wait_until(lambda: live.pipeline.stats.samples > 250, timeout=15)
    finally:
        controller.close(wait=True)
    assert live.source.state.value == "stopped"


def test_a_recording_stopped_with_its_stream_is_reported_and_kept(rec, shared_data, tmp_path):
    xdf = shared_data / "bci-essentials" / "sub-P001_ses-S001_task-T1_run-001_eeg_old1.xdf"
    controller = StreamController(rec.listeners())
    controller.open(lambda: LiveStream(XdfReplaySource(xdf, speed=4.0)), what=xdf.name)
    (_, number, live), = rec.wait_for("opened", timeout=30)
    controller.accept(number, live)
    out = tmp_path / "kept.xdf"
    live.start_recording(out)
    wait_until(lambda: live.pipeline.stats.samples > 512)
    controller.close(wait=True)
    (_, summary), = rec.wait_for("recorded")
    assert summary.path == out and out.stat().st_size > 0 and summary.samples > 512
