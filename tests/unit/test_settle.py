"""Unit tests for relaunch.watch.settle: grouping bursts of events into one batch."""

from __future__ import annotations

from itertools import pairwise

import pytest

from relaunch.watch.settle import Batch, Settler


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
