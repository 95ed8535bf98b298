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
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from ..config import WATCH_OPTIONS, ConfigError, load, options_named
from ..pathtext import shown
from ..preflight import AppSpec, describe_failure, parse_app_spec, run_preflight
from ..production.actions import Action, parse_signal
from ..production.pidfile import PidTarget
from ..run.releases import logical_cwd
from .common import add_noise_options, add_option, watchset_from_settings

__all__ = ["HELP", "NAME", "build_action", "configure", "main"]

log = logging.getLogger("relaunch")

NAME = "watch"
HELP = "watch files and signal, touch or run something when they change (starts nothing)"

DESCRIPTION = """\
Watch files and act when they change, for a server started by someone else
(systemd, supervisord, Apache). It starts nothing.

Exactly one action: --pidfile FILE (with --signal, default HUP), --pid PID,
--touch FILE (e.g. a mod_wsgi script file) or --exec 'CMD' (run by /bin/sh; the
changed paths are in RELAUNCH_CHANGED, separated by ':', and RELAUNCH_CHANGED_1..N,
RELAUNCH_CHANGED_COUNT, never in the command string).

Before signalling, the process is checked: the one seen at start (same pid, same
start time), or a new one only if the pid file was written after it started. A pid
file (or its folder) that everyone may write to is refused.

With --preflight APP (module:attr or a WSGI script file), each change first imports
the application in a throwaway process; if that fails, the traceback is shown and
nothing is done. The files the application imports are watched too.

What to watch and how (the options under "watching") can also be set in
pyproject.toml under [tool.relaunch] or in RELAUNCH_* environment variables, as for
relaunch run: the command line wins over the environment, which wins over
pyproject.toml; lists (watch, ignore) add up. The action options are command line
only (and RELAUNCH_PYTHON for --python).
"""

EXAMPLES = """\
examples:
  relaunch watch --pidfile /run/gunicorn.pid --signal HUP --preflight myapp.wsgi:app
  relaunch watch --touch /srv/app/app.wsgi --preflight /srv/app/app.wsgi -w /srv/app
  relaunch watch --exec 'systemctl reload myapp' --preflight myapp:app -w templates
"""

# Where relaunch run's wording does not fit a server that relaunch does not run.
_HELP = {
    "watch": "also watch this file, folder (recursively) or glob; repeatable. Without "
    "--preflight, the default is the current folder",
    "watch_installed": "also watch the standard library and installed packages the "
    "application imports (with --preflight)",
    "preflight_timeout": "seconds the preflight import may take",
    "touch_reload": "also act when this file's modification time changes, even with the "
    "same content (touch FILE); it need not exist yet (creating it counts); repeatable",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    action = parser.add_argument_group("action (exactly one)")
    action.add_argument(
        "--pidfile",
        metavar="FILE",
        help="signal the pid in FILE (read anew, and checked, each time)",
    )
    action.add_argument("--pid", type=int, metavar="PID", help="signal this process")
    action.add_argument("--touch", metavar="FILE", help="update FILE's modification time")
    action.add_argument("--exec", dest="exec_command", metavar="CMD", help="run CMD with /bin/sh")
    action.add_argument(
        "--signal", default="HUP", metavar="SIG", help="signal for --pidfile/--pid (default: HUP)"
    )
    check = parser.add_argument_group("preflight")
    check.add_argument(
        "--preflight",
        dest="preflight_app",
        metavar="APP",
        help="module:attr or WSGI script to import before acting",
    )
    check.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_const",
        const=False,
        default=None,
        help="act even when APP does not import (its files are still watched); "
        "pyproject/env: preflight = false",
    )
    check.add_argument(
        "--python", metavar="PATH", help="interpreter for the preflight (default: this one)"
    )
    check.add_argument(
        "--pythonpath",
        action="append",
        metavar="DIR",
        help="put DIR first on sys.path (repeatable)",
    )
    check.add_argument("--chdir", metavar="DIR", help="working folder of the preflight")
    shared = parser.add_argument_group(
        "watching (also [tool.relaunch] in pyproject.toml and RELAUNCH_* variables)"
    )
    for option in options_named(WATCH_OPTIONS):
        if option.name == "preflight":
            continue  # --no-preflight above: --preflight names the application here
        help_text = _HELP.get(option.name, option.help)
        # A group takes the same add_argument() calls as its parser.
        add_option(cast(argparse.ArgumentParser, shared), replace(option, help=help_text))
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
        pidfile = os.path.normpath(os.path.join(cwd, args.pidfile))
        return Action("signal", signum=signum, pidfile=pidfile, target=PidTarget(pidfile=pidfile))
    if args.pid is not None:
        if not 0 < args.pid < 2**31:  # a pid_t; a larger number overflows os.kill()
            raise ConfigError(f"--pid {args.pid} is not a process id")
        return Action("signal", signum=signum, pid=args.pid, target=PidTarget(pid=args.pid))
    if args.touch is not None:
        path = os.path.join(cwd, args.touch)
        if not os.path.exists(path):
            raise ConfigError(f"--touch {args.touch}: no such file")
        return Action("touch", path=path)
    return Action("exec", command=args.exec_command)


def _check_target(action: Action) -> None:
    """At start: record the process to signal, or say why it cannot be yet."""
    if action.target is None:
        return
    try:
        verdict = action.target.check(wait=0)
    except ValueError as exc:  # no pid file yet: the server may start later
        log.warning("%s; it is read again at each change", exc)
        return
    if verdict.unsafe:
        raise ConfigError(verdict.message)
    if verdict.target is None:
        if action.pid is not None:
            raise ConfigError(verdict.message)
        log.error("%s; checked again at each change", verdict.message)
        return
    log.info("will signal %s", verdict.target.describe())


def _spec(args: argparse.Namespace, cwd: str) -> AppSpec | None:
    if not args.preflight_app:
        return None
    try:
        return parse_app_spec(args.preflight_app, cwd=cwd)
    except ValueError as exc:
        raise ConfigError(f"--preflight: {exc}") from None


def _interpreter(args: argparse.Namespace) -> str | None:
    """The preflight's interpreter (None: this one). Raises ConfigError if it cannot run."""
    python: str
    if args.python:
        python, where = str(args.python), "--python"
    elif os.environ.get("RELAUNCH_PYTHON"):
        python, where = os.environ["RELAUNCH_PYTHON"], "RELAUNCH_PYTHON"
    else:
        return None
    if shutil.which(python) is None:
        what = "not an executable file" if os.path.exists(python) else "no such interpreter"
        raise ConfigError(f"{where} {python}: {what}")
    return python


def main(args: argparse.Namespace) -> int:
    from ..production.monitor import Monitor
    from ..run.interpreter import interpreter_info

    cwd = logical_cwd()
    settings = load({name: getattr(args, name, None) for name in WATCH_OPTIONS}, cwd=cwd)
    action = build_action(args, cwd)
    spec = _spec(args, cwd)
    workdir = os.path.join(cwd, args.chdir) if args.chdir else cwd
    # The working folder first, by its logical name: modules are then found (and their
    # files watched) through a release symlink, not through the release it points to now.
    paths: Sequence[str] = [
        *(os.path.join(cwd, p) for p in (args.pythonpath or [])),
        workdir,
    ]
    python = _interpreter(args)
    # The application's imports are watched once it is known; without one, the folder.
    watchset = watchset_from_settings(settings, cwd, default_here=spec is None)
    watchset.set_excluded_roots(interpreter_info(python or sys.executable).roots)
    _check_target(action)

    def check() -> bool:
        if spec is None:
            return True
        result = run_preflight(
            spec, python=python, cwd=workdir, paths=paths, timeout=settings.preflight_timeout
        )
        if result.ok:
            for path in result.files:
                if watchset.add(path, "imported by the application (preflight)"):
                    monitor.add_files([path])
            return True
        if not settings.preflight:
            return True
        log.error("%s", describe_failure(result))
        return False

    reloads = 0

    def on_change(changed: list[str]) -> None:
        nonlocal reloads
        # The pid file is no change: gunicorn re-creates it on every HUP.
        changed = [p for p in changed if p != action.pidfile]
        if not changed:
            return
        names = ", ".join(shown(os.path.relpath(p, cwd)) for p in changed[:3])
        if len(changed) > 3:
            names += f" (+{len(changed) - 3} more)"
        if not check():
            log.error(
                "%s changed; preflight failed: not reloading, the server keeps "
                "the previous version",
                names,
            )
            return
        try:
            done = action.perform(changed)
        except (OSError, ValueError) as exc:
            log.error("%s changed; cannot %s: %s", names, action.describe(), exc)
            return
        reloads += 1
        log.info("reload #%d: %s changed; %s", reloads, names, done)

    monitor = Monitor(
        watchset,
        on_change,
        settle_ms=settings.settle,
        settle_max_ms=settings.settle_max,
        poll=settings.poll,
        poll_interval=settings.poll_interval,
    )
    if spec is not None:
        first = run_preflight(
            spec, python=python, cwd=workdir, paths=paths, timeout=settings.preflight_timeout
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
        f" after a preflight of {spec}" if spec and settings.preflight else "",
    )
    try:
        while not stop.wait(3600):
            pass
    finally:
        monitor.close()
    return 0
