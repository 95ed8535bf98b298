"""The ``relaunch`` command line. The only module that configures logging output.

Each subcommand is a module in :mod:`relaunch.subcommands` with ``NAME``, ``HELP``,
``configure(parser)`` and ``main(args) -> exit code``; :data:`SUBCOMMANDS` lists them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .command import CommandError
from .config import ConfigError, noise_from_env
from .serve.accesslog import PrefixFormatter
from .subcommands import run, serve, watch

__all__ = ["SUBCOMMANDS", "main"]

SUBCOMMANDS = (run, serve, watch)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"relaunch: error: {message}{hint}\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and its subcommand parsers, by name."""
    parser = _Parser(
        prog="relaunch",
        description="Reload Python programs and web servers the moment their code changes.",
    )
    parser.add_argument("--version", action="version", version=f"relaunch {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    commands.required = True
    parsers: dict[str, argparse.ArgumentParser] = {}
    for module in SUBCOMMANDS:
        sub = commands.add_parser(module.NAME, help=module.HELP)
        module.configure(sub)
        parsers[module.NAME] = sub
    return parser, parsers


def _setup_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrefixFormatter(tracebacks=False))
    root = logging.getLogger("relaunch")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    parser, subcommands = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Say which subcommand's --help to read, not the top level's.
        subcommands[args.subcommand].error(f"unrecognized arguments: {' '.join(extra)}")
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    try:
        if not (verbose or quiet):
            # The command line wins: RELAUNCH_QUIET=1 with -v is verbose.
            verbose, quiet = noise_from_env()
    except ConfigError as exc:
        print(f"relaunch: error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(verbose, quiet)
    module = next(m for m in SUBCOMMANDS if args.subcommand == m.NAME)
    try:
        return int(module.main(args))
    except (ConfigError, CommandError) as exc:
        print(f"relaunch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
