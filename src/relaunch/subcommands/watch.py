"""``relaunch watch``: act on changes for a server someone else runs (systemd,
supervisord, Apache): signal it, touch a file or run a command, after a preflight.

It starts nothing. Each settled batch of real changes runs the preflight (when
``--preflight APP`` is given, unless ``--no-preflight``): if the new code does not
import, the traceback is shown and nothing is done, so the server keeps serving
the working version; the next change tries again.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence

from ..config import ConfigError
from ..preflight import DEFAULT_TIMEOUT, AppSpec, describe_failure, parse_app_spec, run_preflight
from ..production.actions import Action, parse_signal
from ..watch.rules import GitIgnore, Glob, IgnoreRules
from ..watch.watchset import WatchEntry, WatchSet
from .common import add_noise_options

__all__ = ["HELP", "NAME", "build_action", "configure", "logical_cwd", "main"]

log = logging.getLogger("relaunch")

NAME = "watch"
HELP = "watch files and signal, touch or run something when they change (starts nothing)"

DESCRIPTION = """\
Watch files and act when they change, for a server started by someone else.

Exactly one action: --pidfile FILE (with --signal, default HUP), --pid PID,
--touch FILE (e.g. a mod_wsgi script file) or --exec 'CMD' (run by /bin/sh; the
changed paths are in RELAUNCH_CHANGED, separated by ':', and RELAUNCH_CHANGED_1..N,
RELAUNCH_CHANGED_COUNT, never in the command string).

With --preflight APP (module:attr or a WSGI script file), each change first imports
the application in a throwaway process; if that fails, the traceback is shown and
nothing is done. The files the application imports are watched too.
"""

EXAMPLES = """\
examples:
  relaunch watch --pidfile /run/gunicorn.pid --signal HUP --preflight myapp.wsgi:app
  relaunch watch --touch /srv/app/app.wsgi --preflight /srv/app/app.wsgi -w /srv/app
  relaunch watch --exec 'systemctl reload myapp' --preflight myapp:app -w templates
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    action = parser.add_argument_group("action (exactly one)")
    action.add_argument(
        "--pidfile", metavar="FILE", help="signal the pid in FILE (read anew each time)"
    )
    action.add_argument("--pid", type=int, metavar="PID", help="signal this process")
    action.add_argument("--touch", metavar="FILE", help="update FILE's modification time")
    action.add_argument("--exec", dest="exec_command", metavar="CMD", help="run CMD with /bin/sh")
    parser.add_argument(
        "--signal", default="HUP", metavar="SIG", help="signal for --pidfile/--pid (default: HUP)"
    )
    parser.add_argument(
        "--preflight", metavar="APP", help="module:attr or WSGI script to import first"
    )
    parser.add_argument(
        "--no-preflight", action="store_true", help="skip the preflight (still watch APP's files)"
    )
    parser.add_argument(
        "--preflight-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on an import after this long (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--python", metavar="PATH", help="interpreter for the preflight (default: this one)"
    )
    parser.add_argument(
        "--pythonpath",
        action="append",
        metavar="DIR",
        help="put DIR first on sys.path (repeatable)",
    )
    parser.add_argument("--chdir", metavar="DIR", help="working folder of the preflight")
    parser.add_argument(
        "--watch",
        "-w",
        action="append",
        metavar="PATH_OR_GLOB",
        help="also watch this file, folder or glob (repeatable)",
    )
    parser.add_argument("--ignore", "-i", action="append", metavar="GLOB", help="ignore matches")
    parser.add_argument("--settle", type=int, default=10, metavar="MS", help="quiet time (10)")
    parser.add_argument("--settle-max", type=int, default=1000, metavar="MS", help="upper bound")
    parser.add_argument("--poll", action="store_true", help="poll instead of OS events")
    parser.add_argument("--poll-interval", type=float, default=0.5, metavar="SECONDS")
    add_noise_options(parser)


def build_action(args: argparse.Namespace, cwd: str) -> Action:
    """The one action the arguments ask for. Raises ConfigError."""
    chosen = [
        name
        for name in ("pidfile", "pid", "touch", "exec_command")
        if getattr(args, name) is not None
    ]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --pidfile, --pid, --touch, --exec")
    try:
        signum = int(parse_signal(args.signal))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.pidfile is not None:
        return Action("signal", signum=signum, pidfile=os.path.join(cwd, args.pidfile))
    if args.pid is not None:
        return Action("signal", signum=signum, pid=args.pid)
    if args.touch is not None:
        path = os.path.join(cwd, args.touch)
        if not os.path.exists(path):
            raise ConfigError(f"--touch {args.touch}: no such file")
        return Action("touch", path=path)
    return Action("exec", command=args.exec_command)


def _spec(args: argparse.Namespace, cwd: str) -> AppSpec | None:
    if not args.preflight:
        return None
    try:
        return parse_app_spec(args.preflight, cwd=cwd)
    except ValueError as exc:
        raise ConfigError(f"--preflight: {exc}") from None


def logical_cwd() -> str:
    """The working folder as the shell named it (``$PWD``, symlinks kept) when that is
    where we are, else the resolved one: a deploy's ``current`` link stays a link."""
    pwd = os.environ.get("PWD")
    try:
        if pwd and os.path.isabs(pwd) and os.path.samefile(pwd, "."):
            return os.path.normpath(pwd)
    except OSError:
        pass
    return os.getcwd()


def main(args: argparse.Namespace) -> int:
    from ..production.monitor import Monitor
    from ..run.child import interpreter_info

    cwd = logical_cwd()
    action = build_action(args, cwd)
    spec = _spec(args, cwd)
    workdir = os.path.join(cwd, args.chdir) if args.chdir else cwd
    # The working folder first, by its logical name: modules are then found (and their
    # files watched) through a release symlink, not through the release it points to now.
    paths: Sequence[str] = [
        *(os.path.join(cwd, p) for p in (args.pythonpath or [])),
        workdir,
    ]
    python = args.python or os.environ.get("RELAUNCH_PYTHON") or None
    try:
        entries = [WatchEntry.parse(text, cwd=cwd) for text in (args.watch or [])]
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    if not entries and spec is None:
        entries = [WatchEntry.parse(".", cwd=cwd)]
    rules = IgnoreRules(
        user=[Glob(text, cwd) for text in (args.ignore or [])],
        gitignore=GitIgnore.find(cwd),
        bases=[cwd, *(entry.base for entry in entries)],
    )
    watchset = WatchSet(entries=entries, rules=rules)
    import sys

    watchset.set_excluded_roots(interpreter_info(python or sys.executable).roots)

    def check() -> bool:
        if spec is None:
            return True
        result = run_preflight(
            spec, python=python, cwd=workdir, paths=paths, timeout=args.preflight_timeout
        )
        if result.ok:
            for path in result.files:
                if watchset.add(path, "imported by the application (preflight)"):
                    monitor.add_files([path])
            return True
        if args.no_preflight:
            return True
        log.error("%s", describe_failure(result))
        return False

    reloads = 0

    def on_change(changed: list[str]) -> None:
        nonlocal reloads
        names = ", ".join(os.path.relpath(p, cwd) for p in changed[:3])
        if len(changed) > 3:
            names += f" (+{len(changed) - 3} more)"
        if not check():
            log.error(
                "%s changed; preflight failed: not reloading, the server keeps "
                "the previous version",
                names,
            )
            return
        reloads += 1
        try:
            done = action.perform(changed)
        except (OSError, ValueError) as exc:
            log.error(
                "reload #%d: %s changed; cannot %s: %s", reloads, names, action.describe(), exc
            )
            return
        log.info("reload #%d: %s changed; %s", reloads, names, done)

    monitor = Monitor(
        watchset,
        on_change,
        settle_ms=args.settle,
        settle_max_ms=args.settle_max,
        poll=args.poll,
        poll_interval=args.poll_interval,
    )
    if spec is not None:
        first = run_preflight(
            spec, python=python, cwd=workdir, paths=paths, timeout=args.preflight_timeout
        )
        if first.ok:
            for path in first.files:
                watchset.add(path, "imported by the application (preflight)")
        else:
            log.error("%s", describe_failure(first))
            log.warning(
                "cannot import %s yet: watching only --watch entries until it imports", spec
            )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    monitor.start()
    log.info(
        "watching %d file(s); on change: %s%s",
        len(watchset.files()),
        action.describe(),
        f" after a preflight of {spec}" if spec and not args.no_preflight else "",
    )
    try:
        while not stop.wait(3600):
            pass
    finally:
        monitor.close()
    return 0
