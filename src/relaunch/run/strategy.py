"""How the next child is started: the restart strategy, as the supervisor sees it.

The supervisor asks its strategy which process to fork the next child from
(:meth:`RestartStrategy.forker`; None: spawn a new interpreter) and tells it what
happens (a child started, the modules it imported, paths that changed, a release
swap, a message from a zygote). The implementations live in :mod:`relaunch.run.warm`
(``Cold``, ``Warm``) and :mod:`relaunch.run.checkpoints` (``Checkpointing``); the
subcommand chooses one with :func:`restart_strategy`, and the supervisor builds it
once it knows the program's interpreter (what a strategy is built from,
:class:`StrategyEnv`, is known only then). All methods run on the supervisor's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..command import PythonInvocation
from ..watch.watchset import WatchSet
from .checkpoints import Checkpointing
from .child import Forker
from .warm import Cold, Warm

__all__ = ["RestartStrategy", "StrategyEnv", "StrategyFactory", "restart_strategy"]


class RestartStrategy(Protocol):
    def forker(self) -> Forker | None:
        """What to fork the next child from; None: start a new interpreter."""

    def child_started(self) -> None:
        """A new child runs."""

    def child_modules(self, modules: Iterable[tuple[str, str, int]], now: float) -> None:
        """The running child imported these (name, path, mtime) modules."""

    def due(self) -> float | None:
        """When :meth:`tick` wants to run next (monotonic clock), if ever."""

    def tick(self, now: float) -> None:
        """Time passed: do what was due."""

    def paths_changed(self, paths: Iterable[str]) -> None:
        """Paths touched on disk (before any settling): they may invalidate a zygote."""

    def release_switched(self) -> None:
        """The program now runs from another folder (a deploy swapped a symlink)."""

    def zygote_event(self, zygote: Any, message: dict[str, Any]) -> None:
        """A message from a zygote (its pipe reader put it on the supervisor's queue)."""

    def watch_dirs(self) -> set[str]:
        """Folders whose changes matter to the strategy, watched beside the program's."""

    def files_changed(self, paths: Sequence[str]) -> None:
        """These watched files changed (a settled batch, about to restart the program)."""

    def started_how(self, *, ran_known: bool) -> str:
        """What the reload line adds about how the new process started ("": nothing);
        ``ran_known``: it is up once it has loaded (serve), not once it started."""

    def pids(self) -> set[int]:
        """Every helper process the strategy keeps running (never a stray to kill)."""

    def close(self) -> None:
        """relaunch is exiting: stop every helper process."""


@dataclass(frozen=True)
class StrategyEnv:
    """What the supervisor knows once it has asked the program's interpreter."""

    python: PythonInvocation | None  # None: not a Python program
    watchset: WatchSet
    executable: str | None  # the real interpreter behind a launcher
    roots: tuple[str, ...]  # installed code: never watched, preloaded
    stdin_to_child: bool
    extra_env: dict[str, str]
    pass_fds: tuple[int, ...]
    on_event: Callable[[tuple[Any, ...]], None] = field(repr=False)  # the supervisor's queue
    on_watch_dirs_changed: Callable[[], None] = field(repr=False)


StrategyFactory = Callable[[StrategyEnv], RestartStrategy]


def restart_strategy(mode: str, *, no_preload: Iterable[str] = ()) -> StrategyFactory:
    """The strategy for ``--restart`` (``cold``, ``warm`` or ``checkpoint``, already
    resolved for the platform); ``no_preload``: modules a warm start must never preload."""
    deny = tuple(no_preload)

    def build(env: StrategyEnv) -> RestartStrategy:
        if mode not in ("warm", "checkpoint") or env.python is None:
            return Cold()
        kind = Checkpointing if mode == "checkpoint" else Warm
        return kind(
            env.python,
            env.watchset,
            executable=env.executable,
            roots=env.roots,
            deny=deny,
            stdin_to_child=env.stdin_to_child,
            extra_env=env.extra_env,
            pass_fds=env.pass_fds,
            on_event=env.on_event,
            on_watch_dirs_changed=env.on_watch_dirs_changed,
        )

    return build
