"""Unit tests for relaunch.watch.settle: grouping bursts of events into one batch."""

from __future__ import annotations

from itertools import pairwise

import pytest

from relaunch.watch.events import OVERFLOW
from relaunch.watch.settle import CLOSED, MODIFIED, Batch, Change, Settler, WriteHold


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


def test_idle() -> None:
    s = Settler()
    assert not s.pending
    assert s.due() is None
    assert s.take(100.0) is None


def test_adding_nothing_starts_nothing() -> None:
    s = Settler()
    s.add([], 1.0)
    assert not s.pending
    assert s.due() is None


@pytest.mark.parametrize(
    ("quiet", "max_wait"),
    [(-0.1, 1.0), (0.5, 0.1)],
)
def test_invalid_parameters(quiet: float, max_wait: float) -> None:
    with pytest.raises(ValueError):
        Settler(quiet=quiet, max_wait=max_wait)


def test_quiet_period() -> None:
    s = Settler(quiet=0.01, max_wait=1.0)
    s.add(["/a.py"], 10.0)
    assert s.pending
    assert s.due() == approx(10.01)
    assert s.take(10.0) is None
    assert s.take(10.009) is None
    batch = s.take(10.01)
    assert batch == Batch(frozenset({"/a.py"}), 10.0, 10.0)
    assert not s.pending
    assert s.take(20.0) is None


def test_each_event_restarts_the_quiet_period() -> None:
    s = Settler(quiet=0.05, max_wait=1.0)
    s.add(["/a.py"], 0.0)
    s.add(["/b.py"], 0.04)
    assert s.take(0.06) is None  # quiet since 0.04 for only 0.02
    assert s.due() == approx(0.09)
    s.add(["/a.py"], 0.08)
    assert s.take(0.12) is None
    batch = s.take(0.13)
    assert batch is not None
    assert batch.paths == frozenset({"/a.py", "/b.py"})
    assert batch.first_event == 0.0
    assert batch.last_event == 0.08


def test_zero_quiet_is_due_at_once() -> None:
    s = Settler(quiet=0.0, max_wait=0.0)
    s.add(["/a"], 5.0)
    assert s.take(5.0) == Batch(frozenset({"/a"}), 5.0, 5.0)


def test_max_wait_bounds_a_continuous_stream() -> None:
    s = Settler(quiet=0.01, max_wait=0.5)
    batches: list[tuple[float, Batch]] = []
    t = 0.0
    step = 0.005  # events arrive faster than the quiet period: never quiet
    while t < 1.2:
        s.add([f"/f{int(t * 1000)}"], t)
        batch = s.take(t)
        if batch is not None:
            batches.append((t, batch))
        t = round(t + step, 6)
    assert batches, "a continuous stream never produced a batch"
    first_time, first = batches[0]
    assert first.first_event == 0.0
    assert first_time == approx(0.5)
    for taken_at, batch in batches:
        assert taken_at - batch.first_event <= 0.5 + 1e-9
    assert len(batches) == 2  # 0.0 -> 0.5, 0.505 -> 1.005


def test_due_never_later_than_max_wait() -> None:
    s = Settler(quiet=0.3, max_wait=0.5)
    s.add(["/a"], 0.0)
    s.add(["/a"], 0.4)
    assert s.due() == approx(0.5)


@pytest.mark.parametrize(
    ("count", "due"),
    [
        (1, 0.01),
        (4, 0.01),  # exactly `burst` paths: still an editor's save
        (5, 0.1),  # more: a tool is at work, wait longer
        (50, 0.1),
    ],
)
def test_burst_stretches_the_quiet_period(count: int, due: float) -> None:
    s = Settler(quiet=0.01, max_wait=1.0, burst=4, burst_quiet=0.1)
    s.add([f"/f{i}.py" for i in range(count)], 0.0)
    assert s.due() == approx(due)
    assert s.take(due - 0.001) is None
    assert s.take(due) is not None


def test_burst_counts_distinct_paths() -> None:
    s = Settler(quiet=0.01, max_wait=1.0, burst=2, burst_quiet=0.2)
    for t in (0.0, 0.001, 0.002, 0.003):
        s.add(["/same.py"], t)
    assert s.due() == approx(0.013)
    s.add(["/b.py", "/c.py"], 0.004)
    assert s.due() == approx(0.204)


def test_burst_quiet_is_clamped() -> None:
    assert Settler(quiet=0.01, max_wait=0.05, burst_quiet=1.0).burst_quiet == approx(0.05)
    assert Settler(quiet=0.02, max_wait=1.0, burst_quiet=0.001).burst_quiet == approx(0.02)


def test_burst_still_bounded_by_max_wait() -> None:
    s = Settler(quiet=0.01, max_wait=0.3, burst=1, burst_quiet=0.25)
    s.add(["/a", "/b"], 0.0)
    s.add(["/c"], 0.2)
    assert s.due() == approx(0.3)


class Held:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls: list[float] = []
        self.now = 0.0

    def __call__(self) -> bool:
        self.calls.append(self.now)
        return self.answers.pop(0) if self.answers else False


def test_held_holds_until_released() -> None:
    s = Settler(quiet=0.01, max_wait=1.0, hold_max=30.0)
    held = Held([True, True, True])
    s.add(["/a"], 0.0)
    t = 0.01
    batch = None
    while batch is None and t < 5:
        held.now = t
        batch = s.take(t, held=held)
        t = round(t + 0.001, 6)
    assert batch == Batch(frozenset({"/a"}), 0.0, 0.0)
    assert len(held.calls) == 4  # three times held, the fourth released
    # each re-check comes a quiet period after the previous one
    for before, after in pairwise(held.calls):
        assert after - before == approx(0.01)


def test_held_keeps_collecting_events() -> None:
    s = Settler(quiet=0.01, max_wait=1.0)
    s.add(["/a"], 0.0)
    assert s.take(0.01, held=lambda: True) is None
    assert s.pending
    s.add(["/b"], 0.015)
    batch = s.take(0.05, held=lambda: False)
    assert batch is not None
    assert batch.paths == frozenset({"/a", "/b"})
    assert batch.last_event == 0.015


def test_held_is_bounded_by_hold_max() -> None:
    s = Settler(quiet=0.01, max_wait=1.0, hold_max=2.0)
    calls = 0

    def always() -> bool:
        nonlocal calls
        calls += 1
        return True

    s.add(["/a"], 0.0)
    t = 0.0
    batch = None
    while batch is None and t < 10:
        batch = s.take(t, held=always)
        t = round(t + 0.01, 6)
    assert batch is not None
    taken_at = round(t - 0.01, 6)
    assert taken_at == approx(2.0)
    assert calls > 0


def test_hold_max_is_at_least_max_wait() -> None:
    assert Settler(max_wait=5.0, hold_max=1.0).hold_max == 5.0


def test_held_only_asked_when_a_batch_is_due() -> None:
    s = Settler(quiet=0.05, max_wait=1.0)
    calls: list[float] = []

    def held() -> bool:
        calls.append(0)
        return False

    assert s.take(0.0, held=held) is None  # idle
    s.add(["/a"], 0.0)
    assert s.take(0.01, held=held) is None
    assert s.take(0.049, held=held) is None
    assert calls == []
    assert s.take(0.05, held=held) is not None
    assert calls == [0]
    assert s.take(0.06, held=held) is None  # idle again
    assert calls == [0]


def test_state_resets_after_a_batch() -> None:
    s = Settler(quiet=0.01, max_wait=1.0)
    s.add(["/a"], 0.0)
    assert s.take(0.01, held=lambda: True) is None  # held once: a re-check is scheduled
    assert s.take(0.02) is not None
    s.add(["/b"], 5.0)
    assert s.due() == approx(5.01)
    assert s.take(5.01) == Batch(frozenset({"/b"}), 5.0, 5.0)


def test_batch_first_and_last_times() -> None:
    s = Settler(quiet=0.1, max_wait=10.0)
    s.add(["/a"], 1.0)
    s.add(["/b"], 1.05)
    s.add(["/c", "/d"], 1.08)
    batch = s.take(1.2)
    assert batch == Batch(frozenset({"/a", "/b", "/c", "/d"}), 1.0, 1.08)


# -- WriteHold: events wait while a watched file is being written in place -----------

M, C = MODIFIED, CLOSED
Event = tuple[float, str, Change | None]


def replay(
    events: list[Event], *, watched: set[str], max_wait: float = 1.0, end: float = 100.0
) -> list[tuple[float, list[str]]]:
    """Feed ``events`` in order, asking take() after each and whenever due() says (as
    the inotify thread does); returns (when, paths) for each release."""
    hold = WriteHold(max_wait=max_wait)
    hold.watch(watched)
    released: list[tuple[float, list[str]]] = []
    pending = list(events)
    now = 0.0
    while True:
        due = hold.due()
        next_event = pending[0][0] if pending else None
        if next_event is not None and (due is None or next_event <= due):
            now, path, change = pending.pop(0)
            hold.add(path, now, change)
        elif due is not None:
            now = due
        else:
            break
        paths = hold.take(now)
        if paths:
            released.append((now, paths))
        assert now <= end
    return released


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [(0.0, "/a.py", M), (0.001, "/a.py", M), (0.002, "/a.py", C)],
            [(0.002, ["/a.py"])],
            id="in-place save: released at the close",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (0.2, "/a.py", M), (0.201, "/a.py", C)],
            [(0.201, ["/a.py"])],
            id="in-place save pausing after the truncation: still one release, at the close",
        ),
        pytest.param(
            [(0.0, "/.a.py.tmp", M), (0.001, "/.a.py.tmp", C), (0.002, "/a.py", C)],
            [(0.0, ["/.a.py.tmp"]), (0.001, ["/.a.py.tmp"]), (0.002, ["/a.py"])],
            id="atomic save: a temporary file renamed over, nothing waited for",
        ),
        pytest.param(
            [(0.0, "/a.py", None), (0.5, "/a.py", C)],
            [(0.0, ["/a.py"]), (0.5, ["/a.py"])],
            id="attributes changed, opened for writing and closed unwritten: at once",
        ),
        pytest.param(
            [(0.0, "/app.log", M), (0.1, "/a.py", M), (0.101, "/a.py", C)],
            [(0.0, ["/app.log"]), (0.101, ["/a.py"])],
            id="an unwatched file kept open (a log) holds nothing",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (0.1, "/b.py", M), (0.2, "/a.py", C), (0.3, "/b.py", C)],
            [(0.3, ["/a.py", "/b.py"])],
            id="two files written at once: one release when both are closed",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (0.1, "/new.py", None), (0.2, "/a.py", C)],
            [(0.2, ["/a.py", "/new.py"])],
            id="other events during a write wait with it",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (0.3, "/a.py", M), (0.6, "/a.py", M)],
            [(1.0, ["/a.py"])],
            id="never closed: released max_wait after the first modification",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (1.5, "/a.py", M), (1.6, "/b.py", M), (1.7, "/b.py", C)],
            [(1.0, ["/a.py"]), (1.5, ["/a.py"]), (1.7, ["/b.py"])],
            id="still open after max_wait: its later writes pass at once, hold nothing",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (1.5, "/a.py", C), (2.0, "/a.py", M), (2.1, "/a.py", C)],
            [(1.0, ["/a.py"]), (1.5, ["/a.py"]), (2.1, ["/a.py"])],
            id="closed at last: its next write is waited for again",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (0.5, "/b.py", M), (1.2, "/b.py", M)],
            [(1.5, ["/a.py", "/b.py"])],
            id="each write has its own bound",
        ),
        pytest.param(
            [(0.0, "/a.py", M), (0.1, "/a.py", C), (0.1, "/a.py", C)],
            [(0.1, ["/a.py"]), (0.1, ["/a.py"])],
            id="a close without a write before it is harmless",
        ),
    ],
)
def test_write_hold(events: list[Event], expected: list[tuple[float, list[str]]]) -> None:
    released = replay(events, watched={"/a.py", "/b.py"})
    assert [(approx(t), paths) for t, paths in expected] == released


def test_write_hold_idle() -> None:
    hold = WriteHold()
    assert hold.take(0.0) == []
    assert hold.due() is None
    assert hold.writing == frozenset()


def test_write_hold_due_is_the_first_modification_plus_max_wait() -> None:
    hold = WriteHold(max_wait=0.5)
    hold.watch(["/a.py"])
    hold.add("/a.py", 1.0, M)
    hold.add("/a.py", 1.3, M)  # more writes do not extend the wait
    assert hold.writing == frozenset({"/a.py"})
    assert hold.due() == approx(1.5)
    assert hold.take(1.499) == []
    assert hold.take(1.5) == ["/a.py"]
    assert hold.due() is None
    assert hold.writing == frozenset()


def test_write_hold_releases_each_path_once_in_arrival_order() -> None:
    hold = WriteHold()
    hold.watch(["/a.py"])
    for path in ("/a.py", "/c.py", "/b.py", "/c.py", "/a.py"):
        hold.add(path, 0.0, M)
    hold.add("/a.py", 0.1, C)
    assert hold.take(0.1) == ["/a.py", "/c.py", "/b.py"]
    assert hold.take(0.2) == []


def test_write_hold_forget_after_an_overflow() -> None:
    hold = WriteHold()
    hold.watch(["/a.py"])
    hold.add("/a.py", 0.0, M)
    assert hold.take(0.01) == []
    hold.forget()  # the close may have been among the lost events
    hold.add(OVERFLOW, 0.02)
    assert hold.take(0.02) == ["/a.py", OVERFLOW]


def test_write_hold_only_waits_for_the_watch_set() -> None:
    hold = WriteHold()
    hold.add("/a.py", 0.0, M)
    assert hold.take(0.0) == ["/a.py"]  # nothing watched yet
    hold.watch(["/a.py"])
    hold.add("/a.py", 0.1, M)
    assert hold.take(0.1) == []
    hold.watch(["/b.py"])  # the file left the watch set: no longer waited for
    assert hold.writing == frozenset()
    assert hold.due() is None
    assert hold.take(0.2) == ["/a.py"]


def test_write_hold_overdue_is_forgotten_with_the_watch_set() -> None:
    hold = WriteHold(max_wait=0.5)
    hold.watch(["/a.py"])
    hold.add("/a.py", 0.0, M)
    assert hold.take(0.5) == ["/a.py"]  # overdue: passes at once from now on
    hold.add("/a.py", 0.6, M)
    assert hold.take(0.6) == ["/a.py"]
    hold.watch([])
    hold.watch(["/a.py"])  # back in the set: a fresh start
    hold.add("/a.py", 0.7, M)
    assert hold.take(0.7) == []


def test_write_hold_zero_max_wait_never_holds() -> None:
    hold = WriteHold(max_wait=0.0)
    hold.watch(["/a.py"])
    hold.add("/a.py", 0.0, M)
    assert hold.take(0.0) == ["/a.py"]


def test_write_hold_invalid_max_wait() -> None:
    with pytest.raises(ValueError):
        WriteHold(max_wait=-1.0)
