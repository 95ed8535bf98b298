"""The ``relaunch`` command line. The only module that configures logging output."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__, oslayer
from .command import Command, CommandError, resolve
from .config import OPTIONS, ConfigError, Settings, load
from .run.child import interpreter_info
from .watch.rules import GitIgnore, Glob, IgnoreRules
from .watch.watchset import WatchEntry, WatchSet

__all__ = ["main"]

log = logging.getLogger("relaunch")

RUN_DESCRIPTION = """\
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

RUN_EXAMPLES = """\
examples:
  relaunch run -- python app.py --port 8000
  relaunch run -w templates -w '*.toml' -- python -X dev -m myapp
  relaunch run -- gunicorn -w 2 myapp:app
  relaunch run -w src -- make test
  relaunch run --explain templates/index.html -w 'templates/**/*.html' -- python app.py
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"relaunch: error: {message}{hint}\n")


def _add_option(parser: argparse.ArgumentParser, option: Any) -> None:
    flags = [option.flag] + ([option.short] if option.short else [])
    help_text = option.help
    if option.kind != "list" and option.default not in (None, [], False):
        help_text += f" (default: {option.default})"
    if option.kind == "list":
        parser.add_argument(
            *flags, dest=option.name, action="append", metavar=option.metavar, help=help_text
        )
    elif option.kind == "bool":
        parser.add_argument(
            *flags,
            dest=option.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text,
        )
    elif option.kind == "choice":
        parser.add_argument(*flags, dest=option.name, choices=option.choices, help=help_text)
    else:
        kind = int if option.kind == "int" else float
        parser.add_argument(
            *flags, dest=option.name, type=kind, metavar=option.metavar, help=help_text
        )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and its subcommand parsers, by name."""
    parser = _Parser(
        prog="relaunch",
        description="Reload Python programs and web servers the moment their code changes.",
    )
    parser.add_argument("--version", action="version", version=f"relaunch {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    commands.required = True
    run = commands.add_parser(
        "run",
        help="run a command and restart it when its files change",
        description=RUN_DESCRIPTION,
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option in OPTIONS:
        _add_option(run, option)
    run.add_argument(
        "--explain",
        metavar="PATH",
        action="append",
        help="say whether PATH is watched and which rule decides it, then exit",
    )
    noise = run.add_mutually_exclusive_group()
    noise.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the watch set, the watcher backend and each event",
    )
    noise.add_argument("-q", "--quiet", action="store_true", help="show only errors")
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command to run",
    )
    return parser, {"run": run}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            message = "error: " + message
        elif record.levelno >= logging.WARNING:
            message = "warning: " + message
        return f"[relaunch] {message}"


def _setup_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("relaunch")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)


def build_watchset(settings: Settings, command: Command | None, cwd: str) -> WatchSet:
    """The watch set for a run, from settings. Raises ConfigError for a bad --watch."""
    try:
        entries = [WatchEntry.parse(text, cwd=anchor) for text, anchor in settings.watch]
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    if not entries and (command is None or not command.is_python):
        entries = [WatchEntry.parse(".", cwd=cwd)]
    rules = IgnoreRules(
        user=[Glob(text, anchor) for text, anchor in settings.ignore],
        gitignore=GitIgnore.find(cwd) if settings.gitignore else None,
        bases=[cwd, *(entry.base for entry in entries)],
    )
    return WatchSet(entries=entries, rules=rules, watch_installed=settings.watch_installed)


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
    """Warm or cold restarts for this command: warm needs a Python program and fork()."""
    if command.python is None:
        return "cold"
    if choice == "auto":
        return "warm" if oslayer.IS_LINUX else "cold"
    if choice == "warm" and not oslayer.CAN_FORK:
        log.warning("warm restarts need fork(), which this platform lacks: restarting cold")
        return "cold"
    return choice


def _run(args: argparse.Namespace) -> int:
    cwd = os.getcwd()
    settings = load({option.name: getattr(args, option.name) for option in OPTIONS}, cwd=cwd)
    argv = list(args.command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    command = resolve(argv) if argv or not args.explain else None
    watchset = build_watchset(settings, command, cwd)
    if args.explain:
        return _explain(args.explain, watchset, command)
    assert command is not None
    restart = resolve_restart(settings.restart, command)

    from .run.supervisor import Supervisor

    supervisor = Supervisor(
        command,
        watchset,
        grace=settings.grace,
        on_exit=settings.on_exit,
        settle_ms=settings.settle,
        settle_max_ms=settings.settle_max,
        poll=settings.poll,
        poll_interval=settings.poll_interval,
        restart=restart,
        no_preload=[name for name, _anchor in settings.no_preload],
    )
    if command.is_python:
        mode = f"Python program, watching its imports, {restart} restarts"
    else:
        mode = "command"
    log.info("running %s (%s); Enter reloads, Ctrl-C stops", " ".join(argv), mode)
    return supervisor.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser, subcommands = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Say which subcommand's --help to read, not the top level's.
        subcommands[args.subcommand].error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(getattr(args, "verbose", False), getattr(args, "quiet", False))
    try:
        return _run(args)
    except (ConfigError, CommandError) as exc:
        print(f"relaunch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
