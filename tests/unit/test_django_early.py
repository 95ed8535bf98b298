"""runserver's early checks (relaunch.integrations.django.early): which process runs
them, and when the messages computed early are given to runserver's own check run."""

from __future__ import annotations

from typing import Any

import pytest

from relaunch.integrations.django import early


@pytest.mark.parametrize(
    ("argv", "runserver", "checks"),
    [
        (["manage.py", "runserver"], True, True),
        (["manage.py", "runserver", "0.0.0.0:8000", "--noreload"], True, True),
        (["/venv/lib/django/__main__.py", "runserver"], True, True),  # python -m django
        # No checks to run early; the migrations are still imported (runserver's
        # migration check runs with --skip-checks too).
        (["manage.py", "runserver", "--skip-checks"], True, False),
        (["manage.py", "migrate"], False, False),
        (["manage.py", "runserver_plus"], False, False),
        (["runserver"], False, False),  # argv[0] is the program, not a command
    ],
)
def test_only_a_runserver_that_checks_runs_them_early(
    argv: list[str], runserver: bool, checks: bool
) -> None:
    assert early.is_runserver_process(argv) is runserver
    assert early.runs_checks(argv) is checks


class Check:
    """A registered check: counts its runs, returns one message per run."""

    tags = ("models",)

    def __init__(self) -> None:
        self.runs: list[tuple[Any, Any]] = []

    def __call__(self, app_configs: Any = None, databases: Any = None, **kwargs: Any) -> Any:
        self.runs.append((app_configs, databases))
        return [f"message {len(self.runs)}"]


def stand_in(inputs: list[int]) -> tuple[Check, early.Reused]:
    check = Check()
    reused = early.Reused(check, lambda: tuple(inputs))
    reused.compute()
    return check, reused


def test_the_early_messages_serve_the_next_run_once() -> None:
    check, reused = stand_in([1, 2])
    assert reused() == ["message 1"]
    assert len(check.runs) == 1
    assert reused() == ["message 2"]  # a second run (manage.py check in-process) runs it
    assert reused.tags == ("models",)


def test_a_changed_input_runs_the_check_again() -> None:
    inputs = [1, 2]
    check, reused = stand_in(inputs)
    inputs.append(3)  # say the URLconf registered another ModelAdmin
    assert reused() == ["message 2"]
    assert len(check.runs) == 2


def test_other_arguments_run_the_check() -> None:
    check, reused = stand_in([1])
    assert reused(app_configs=["shop"]) == ["message 2"]
    assert check.runs[-1] == (["shop"], None)
    assert reused() == ["message 3"]  # the early messages were for the first run only


def test_a_check_that_fails_early_fails_at_its_own_time() -> None:
    calls = []

    def failing(app_configs: Any = None, databases: Any = None) -> Any:
        calls.append(1)
        raise RuntimeError("broken check")

    reused = early.Reused(failing, lambda: ())
    reused.compute()  # says nothing
    with pytest.raises(RuntimeError, match="broken check"):
        reused()
    assert len(calls) == 2
