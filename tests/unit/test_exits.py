"""What the supervisor says about a run (relaunch.run.exits): how it ended, and when a
program that asks to start again right after starting is started again."""

from __future__ import annotations

import time

import pytest

from relaunch.run.exits import SHORT_RUN, CleanExits, ReloadRequests, how_it_ended


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (1, "exited with code 1"),
        (-9, "was killed by signal 9"),
        (None, "exited (status unknown: the warm-start process that forked it died)"),
    ],
)
def test_how_it_ended(code: int | None, words: str) -> None:
    assert how_it_ended(code) == words


def test_a_request_after_a_long_run_reloads_at_once_and_again_and_again_backs_off() -> None:
    requests = ReloadRequests()
    assert requests.now(time.monotonic() - 2 * SHORT_RUN) and requests.at is None
    assert not requests.now(time.monotonic())  # asked right after starting
    assert requests.at is not None
    due = requests.at
    assert not requests.now(time.monotonic())  # one is due already: nothing changes
    assert requests.at == due


def test_a_clean_exit_waits_restarts_or_exits() -> None:
    assert CleanExits("wait").after(5.0) == (False, None)
    assert CleanExits("exit").after(5.0) == (True, None)
    stop, at = CleanExits("restart").after(5.0)
    assert not stop and at is not None and at <= time.monotonic()  # a long run: at once
    stop, at = CleanExits("restart").after(0.0)
    assert at is not None and at > time.monotonic()  # a short one: after a delay
