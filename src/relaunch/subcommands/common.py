"""Pieces every subcommand shares: the option table's flags, -v/-q, the watch set."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from ..config import NUMBERS, OPTIONS, SERVE_OPTIONS, ConfigError, Settings
from ..watch.rules import GitIgnore, Glob, IgnoreRules
from ..watch.watchset import DEFAULT_TREE_LIMIT, WatchEntry, WatchSet

__all__ = ["add_noise_options", "add_option", "add_settings_options", "watchset_from_settings"]


def add_option(parser: argparse.ArgumentParser, option: Any) -> None:
    flags = [option.flag] + ([option.short] if option.short else [])
    help_text = option.help
    if option.kind != "list" and option.default not in (None, [], False):
        bounds = NUMBERS.get(option.name)
        within = f"; {bounds.describe()}" if bounds else ""
        help_text += f" (default: {option.default}{within})"
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


def add_settings_options(parser: argparse.ArgumentParser, *, serve: bool = False) -> None:
    """One flag per entry of relaunch.config.OPTIONS (``relaunch serve``'s own only with
    ``serve``; without, they read as not given)."""
    for option in OPTIONS:
        if option.name in SERVE_OPTIONS and not serve:
            parser.set_defaults(**{option.name: None})
            continue
        add_option(parser, option)


def add_noise_options(parser: argparse.ArgumentParser) -> None:
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the watch set, the watcher backend and each event",
    )
    noise.add_argument("-q", "--quiet", action="store_true", help="show only errors")


def watchset_from_settings(settings: Settings, cwd: str, *, default_here: bool) -> WatchSet:
    """The watch set the settings describe (``--watch`` entries anchored where they were
    given); with no entry, ``default_here`` watches the current folder. Raises
    ConfigError for a ``--watch`` path that does not exist and for a glob that is not one."""
    try:
        entries = [WatchEntry.parse(text, cwd=anchor) for text, anchor in settings.watch]
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(f"--watch: {exc}") from None
    if not entries and default_here:
        if os.path.dirname(cwd) == cwd:
            raise ConfigError(
                f"no --watch given, and the current folder is {cwd}, the root of the file "
                "system: watching it would read every file on the machine; give -w with "
                "what to watch, or run relaunch from the project's folder"
            )
        here = WatchEntry.parse(".", cwd=cwd)
        entries = [dataclasses.replace(here, limit=DEFAULT_TREE_LIMIT)]
    try:
        user = [Glob(text, anchor) for text, anchor in settings.ignore]
    except ValueError as exc:
        raise ConfigError(f"--ignore: {exc}") from None
    rules = IgnoreRules(
        user=user,
        gitignore=GitIgnore.find(cwd) if settings.gitignore else None,
        bases=[cwd, *(entry.base for entry in entries)],
    )
    # After the default is chosen: a --touch-reload file is no --watch entry.
    try:
        touch = [WatchEntry.touch(text, cwd=anchor) for text, anchor in settings.touch_reload]
    except IsADirectoryError as exc:
        raise ConfigError(str(exc)) from None
    entries += touch
    return WatchSet(entries=entries, rules=rules, watch_installed=settings.watch_installed)
