"""Unit tests for asking the program whether it handles a change itself (Django's
``file_changed`` contract): the child's side (bootstrap's Channel, over real pipes)
and the default driver's decision."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import pytest

from relaunch._inside.bootstrap import Channel
from relaunch.run.drivers import Driver, Handled, NotReloaded


@pytest.fixture
def pipes() -> Iterator[tuple[Channel, int, int]]:
    """A Channel, the supervisor's end to read its messages, and to write to it."""
    report_r, report_w = os.pipe()
    control_r, control_w = os.pipe()
    yield Channel(report_w, control_r), report_r, control_w
    for fd in (report_r, report_w, control_r, control_w):
        os.close(fd)


def read_messages(fd: int, count: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    buffer = b""
    while len(out) < count:
        buffer += os.read(fd, 4096)
        *lines, buffer = buffer.split(b"\n")
        out.extend(json.loads(line) for line in lines)
    return out


@pytest.mark.timeout(10)
def test_the_channel_asks_the_judge_and_answers(pipes: tuple[Channel, int, int]) -> None:
    channel, report_r, control_w = pipes
    asked: list[list[str]] = []

    def judge(paths: list[str]) -> bool:
        asked.append(paths)
        return paths == ["/p/handled.py"]

    channel.judge_changes(judge)
    assert read_messages(report_r, 1) == [{"t": "changes"}]
    os.write(control_w, b'changed ["/p/handled.py"]\n')
    assert read_messages(report_r, 1) == [{"t": "handled"}]
    os.write(control_w, b'changed ["/p/views.py", "/p/x.py"]\n')
    assert read_messages(report_r, 1) == [{"t": "unhandled"}]
    assert asked == [["/p/handled.py"], ["/p/views.py", "/p/x.py"]]


@pytest.mark.timeout(10)
def test_a_judge_that_raises_means_restart(pipes: tuple[Channel, int, int]) -> None:
    channel, report_r, control_w = pipes

    def judge(paths: list[str]) -> bool:
        raise RuntimeError("receiver bug")

    channel.judge_changes(judge)
    read_messages(report_r, 1)
    os.write(control_w, b'changed ["/p/a.py"]\n')
    assert read_messages(report_r, 1) == [{"t": "unhandled"}]


class FakeChild:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[Sequence[str]] = []

    def handles_change(self, paths: Sequence[str], timeout: float) -> bool:
        self.asked.append(paths)
        return self.answer


def test_the_default_driver_restarts_unless_the_program_handled_the_change() -> None:
    driver = Driver()
    handled, unhandled = FakeChild(True), FakeChild(False)
    done = driver.reload(handled, ["/p/a.py"])  # type: ignore[arg-type]
    assert isinstance(done, Handled) and isinstance(done, NotReloaded)
    assert driver.reload(unhandled, ["/p/a.py"]) is None  # type: ignore[arg-type]
    # A manual reload (no file) is never asked about.
    assert driver.reload(handled, []) is None  # type: ignore[arg-type]
    assert handled.asked == [["/p/a.py"]]
