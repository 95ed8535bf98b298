"""``relaunch run``: run a command, restart it when what it depends on changes."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import oslayer
from ..command import Command, resolve
from ..config import OPTIONS, ConfigError, Settings, load
from ..run.interpreter import interpreter_info
from ..run.release_swap import ReleaseSwap
from ..run.releases import ReleaseLinks, logical_cwd
from ..watch.watchset import WatchSet
from .common import add_noise_options, add_settings_options, watchset_from_settings

if TYPE_CHECKING:
    from ..run.keeper import SocketKeeper
    from ..run.supervisor import Supervisor

__all__ = ["HELP", "NAME", "build_watchset", "configure", "main", "make_supervisor"]

log = logging.getLogger("relaunch")

NAME = "run"
HELP = "run a command and restart it when its files change"

DESCRIPTION = """\
Run COMMAND and restart it whenever a file it depends on changes.

For a Python program (python script.py, python -m pkg, or a console script such as
gunicorn or flask) relaunch watches exactly the files the program imports, as it
imports them, plus every file named in a crash's traceback, plus --watch entries.
For any other command it watches the --watch entries (default: this folder).

While it runs: press Enter (or type rs) or send SIGHUP to reload by hand;
Ctrl-C once stops gracefully, twice kills.

Every option can also be set in pyproject.toml under [tool.relaunch] (same names,
e.g. watch = ["templates"], on-exit = "restart") or in RELAUNCH_* environment
variables (e.g. RELAUNCH_GRACE=2; lists separated by the OS path separator).
"""

EXAMPLES = """\
examples:
  relaunch run -- python app.py --port 8000
  relaunch run -w templates -w '*.toml' -- python -X dev -m myapp
  relaunch run -- gunicorn -w 2 myapp:app
  relaunch run -w src -- make test
  relaunch run --explain templates/index.html -w 'templates/**/*.html' -- python app.py
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_settings_options(parser)
    parser.add_argument(
        "--explain",
        metavar="PATH",
        action="append",
        help="say whether PATH is watched and which rule decides it, then exit",
    )
    add_noise_options(parser)
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command to run",
    )


def build_watchset(settings: Settings, command: Command | None, cwd: str) -> WatchSet:
    """The watch set for a run: a Python program's imports are watched as they come, so
    without --watch only another command watches the current folder."""
    return watchset_from_settings(
        settings, cwd, default_here=command is None or not command.is_python
    )


_MODULE_SUFFIXES = (".py", ".pyw", ".so", ".pyd")


def _explain(paths: Sequence[str], watchset: WatchSet, command: Command | None) -> int:
    if command is not None and command.python is not None:
        watchset.set_excluded_roots(interpreter_info(command.python.interpreter).roots)
    python = command is not None and command.is_python
    for text in paths:
        path = os.path.abspath(text)
        decision = watchset.decide(path, is_dir=os.path.isdir(path))
        if not decision.watched and python and path.endswith(_MODULE_SUFFIXES):
            # Modules are watched when imported: say what would happen then.
            decision = watchset.decide(path, candidate="imported by the program")
            if decision.watched:
                print(
                    f"{text}: watched once the program imports it "
                    "(Python modules are watched as they are imported)"
                )
                continue
        verdict = "watched" if decision.watched else "not watched"
        print(f"{text}: {verdict}: {decision.reason}")
    return 0


def resolve_restart(choice: str, command: Command) -> str:
    """Checkpoint, warm or cold restarts for this command: the first two need a Python
    program and fork()."""
    if command.python is None:
        return "cold"
    if choice == "auto":
        return "checkpoint" if oslayer.IS_LINUX else "cold"
    if choice in ("warm", "checkpoint") and not oslayer.CAN_FORK:
        log.warning("warm restarts need fork(), which this platform lacks: restarting cold")
        return "cold"
    return choice


def follow_releases(values: dict[str, Any], command: Command) -> dict[str, Any]:
    """Supervisor arguments to follow a deploy's symlink swaps (``cd /srv/app/current``
    with ``current -> releases/42``); none when the working folder has no link above it.

    ``values`` are the command line's option values: after a swap they are read again
    from the new release (its pyproject.toml, relative ``--watch`` paths)."""
    releases = ReleaseLinks(logical_cwd())
    if not releases:
        return {}

    def fresh_watchset() -> WatchSet | None:
        cwd = os.getcwd()
        try:
            return build_watchset(load(values, cwd=cwd), command, cwd)
        except ConfigError as exc:
            log.error("in the new release: %s; keeping the previous watch list", exc)
            return None

    log.debug("following symlinked releases: %s", ", ".join(sorted(releases.targets)))
    return {"releases": ReleaseSwap(releases, fresh_watchset)}


def make_keeper(command: Command) -> SocketKeeper | None:
    """The keeper of the listening sockets a Python program hands over (runserver's,
    through the Django integration); None where open sockets cannot be passed."""
    if not command.is_python or oslayer.fd_passing_socket_type() is None:
        return None
    from ..run.keeper import SocketKeeper

    try:
        return SocketKeeper()
    except OSError as exc:
        log.debug("cannot keep listening sockets across restarts: %s", exc)
        return None


def make_supervisor(
    command: Command,
    watchset: WatchSet,
    settings: Settings,
    *,
    restart: str | None = None,
    **extra: Any,
) -> Supervisor:
    """A supervisor configured from ``settings``, with the environment the integrations
    ask for; ``restart``: the restart mode already resolved (see :func:`resolve_restart`),
    if the caller did; ``extra`` is what a subcommand adds (a driver, a front end,
    descriptors to pass on)."""
    from ..integrations import child_environment
    from ..run.options import Options
    from ..run.strategy import restart_strategy
    from ..run.supervisor import Supervisor

    options = Options(
        grace=settings.grace,
        on_exit=settings.on_exit,
        settle_ms=settings.settle,
        settle_max_ms=settings.settle_max,
        poll=settings.poll,
        poll_interval=settings.poll_interval,
    )
    strategy = restart_strategy(
        restart or resolve_restart(settings.restart, command),
        no_preload=[name for name, _anchor in settings.no_preload],
    )
    return Supervisor(
        command,
        watchset,
        options=options,
        strategy=strategy,
        extra_env=child_environment(command),
        **extra,
    )


def main(args: argparse.Namespace) -> int:
    cwd = os.getcwd()
    values = {option.name: getattr(args, option.name) for option in OPTIONS}
    settings = load(values, cwd=cwd)
    argv = list(args.command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    command = resolve(argv) if argv or not args.explain else None
    watchset = build_watchset(settings, command, cwd)
    if args.explain:
        return _explain(args.explain, watchset, command)
    assert command is not None

    from ..integrations import driver_for

    driver = driver_for(
        command, preflight=settings.preflight, preflight_timeout=settings.preflight_timeout
    )
    releases = follow_releases(values, command)
    restart = resolve_restart(settings.restart, command)  # once: it may warn
    supervisor = make_supervisor(
        command,
        watchset,
        settings,
        restart=restart,
        driver=driver,
        keeper=make_keeper(command),
        **releases,
    )
    if command.is_python:
        mode = f"Python program, watching its imports, {restart} restarts"
    else:
        mode = "command"
    log.info("running %s (%s); Enter reloads, Ctrl-C stops", " ".join(argv), mode)
    return supervisor.run()
