"""The restart strategy the subcommand chooses (relaunch.run.strategy): built once the
interpreter is known; warm only for a Python program."""

from __future__ import annotations

import sys

from relaunch.command import PythonInvocation
from relaunch.run.strategy import RestartStrategy, StrategyEnv, restart_strategy
from relaunch.run.warm import Cold, Warm
from relaunch.watch.watchset import WatchSet


def env(python: PythonInvocation | None) -> StrategyEnv:
    return StrategyEnv(
        python,
        WatchSet(),
        executable=sys.executable,
        roots=(),
        stdin_to_child=False,
        extra_env={},
        pass_fds=(),
        on_event=lambda _event: None,
        on_watch_dirs_changed=lambda: None,
    )


PROGRAM = PythonInvocation(sys.executable, (), "script", "app.py", ())


def test_cold_always_and_warm_only_for_a_python_program() -> None:
    assert isinstance(restart_strategy("cold")(env(PROGRAM)), Cold)
    assert not isinstance(restart_strategy("cold")(env(PROGRAM)), Warm)
    assert type(restart_strategy("warm")(env(None))) is Cold
    warm = restart_strategy("warm", no_preload=["numpy"])(env(PROGRAM))
    assert isinstance(warm, Warm) and warm.deny == {"numpy"}


def test_no_strategy_keeps_a_helper_process_before_it_starts_one() -> None:
    strategies: list[RestartStrategy] = [Cold(), restart_strategy("warm")(env(PROGRAM))]
    for strategy in strategies:
        assert strategy.pids() == set()
        assert strategy.forker() is None
        strategy.close()
