"""Unit tests for relaunch.run.backoff: growing delays for short runs."""

from __future__ import annotations

from relaunch.run.backoff import Backoff


def test_short_runs_double_the_delay_up_to_the_longest() -> None:
    backoff = Backoff(short_run=1.0, first=0.1, longest=1.0)
    assert [backoff.delay(0.01) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_long_run_starts_over() -> None:
    backoff = Backoff()
    assert backoff.delay(0.5) == 0.1
    assert backoff.delay(0.5) == 0.2
    assert backoff.delay(1.0) == 0.0
    assert backoff.delay(0.5) == 0.1


def test_no_delay_while_runs_are_long() -> None:
    backoff = Backoff()
    assert [backoff.delay(30.0) for _ in range(3)] == [0.0, 0.0, 0.0]
