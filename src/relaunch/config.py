"""One settings object from three sources: pyproject.toml, RELAUNCH_* variables, the CLI.

Later sources win for single values (CLI over environment over pyproject.toml over
the default); lists (``watch``, ``ignore``) add up across sources. Relative paths in
pyproject.toml are taken relative to the folder holding it; on the command line and
in the environment, relative to the current folder.

The option table, :data:`OPTIONS`, is the single definition: the CLI's flags, the
pyproject keys and the environment variable names all come from it.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,no-redef]

__all__ = [
    "NOISE_ENV",
    "NUMBERS",
    "OPTIONS",
    "OTHER_ENV",
    "SERVE_OPTIONS",
    "WATCH_OPTIONS",
    "ConfigError",
    "NumberRange",
    "Option",
    "Settings",
    "check_number",
    "find_pyproject",
    "load",
    "noise_from_env",
    "options_named",
]

log = logging.getLogger("relaunch")


class ConfigError(Exception):
    """A user mistake in configuration: reported as one line, exit code 2."""


@dataclass(frozen=True)
class Option:
    name: str  # the attribute and pyproject key (with '-' for '_')
    kind: str  # "list", "bool", "float", "int" or "choice"
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    short: str | None = None

    @property
    def key(self) -> str:
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "RELAUNCH_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.key


OPTIONS: tuple[Option, ...] = (
    Option("watch", "list", [], "also watch this file, folder (recursively) or glob; "
           "repeatable. Without a Python command, the default is the current folder",
           metavar="PATH_OR_GLOB", short="-w"),
    Option("ignore", "list", [], "ignore paths matching this glob (gitignore style); "
           "repeatable", metavar="GLOB", short="-i"),
    Option("touch_reload", "list", [], "reload when this file's modification time changes, "
           "even with the same content (touch FILE), as uWSGI's touch-reload; the file need "
           "not exist yet (creating it reloads); repeatable", metavar="FILE"),
    Option("watch_installed", "bool", False,
           "also watch the standard library and installed packages the program imports"),
    Option("gitignore", "bool", True, "honour .gitignore files for --watch folders and globs"),
    Option("poll", "bool", False, "poll for changes instead of using OS events "
           "(chosen automatically on network and VM file systems and at the OS watch limit)"),
    Option("poll_interval", "float", 0.5, "seconds between polls", metavar="SECONDS"),
    Option("settle", "int", 10, "milliseconds of quiet after the last change before "
           "reloading, so a burst of writes gives one reload", metavar="MS"),
    Option("settle_max", "int", 1000, "upper bound, in milliseconds, on waiting for quiet",
           metavar="MS"),
    Option("grace", "float", 5.0, "seconds the program gets to exit after SIGTERM "
           "before it is killed", metavar="SECONDS"),
    Option("on_exit", "choice", "wait", "what to do when the program exits with code 0: "
           "wait for a change, restart it, or exit with it", choices=("wait", "restart", "exit")),
    Option("restart", "choice", "auto", "how to restart a Python program: checkpoint (fork "
           "a copy parked just before the first edited file ran: only what the edit touches "
           "runs again), warm (fork a process that has its libraries imported), cold (a new "
           "interpreter), or auto (checkpoint on Linux, cold elsewhere)",
           choices=("auto", "checkpoint", "warm", "cold")),
    Option("no_preload", "list", [], "never preload this module or package for warm "
           "restarts; repeatable", metavar="MODULE"),
    Option("preflight", "bool", True, "before a graceful reload of a production server "
           "(gunicorn, uWSGI), import the new code in a throwaway process; a failure keeps "
           "the old workers serving"),
    Option("preflight_timeout", "float", 60.0, "seconds a preflight may take",
           metavar="SECONDS"),
    Option("access_log", "bool", True, "print one line per request (relaunch serve)"),
)  # fmt: skip

# Options only ``relaunch serve`` has on its command line (the others read and ignore
# them from pyproject.toml and the environment, which the subcommands share).
SERVE_OPTIONS: tuple[str, ...] = ("access_log",)

# The options ``relaunch watch`` shares with ``relaunch run`` (the others are about
# running a program). It reads them from the same three sources with the same
# precedence; a pyproject.toml or environment shared by both may set the others too:
# ``relaunch watch`` accepts and ignores them.
WATCH_OPTIONS: tuple[str, ...] = (
    "watch",
    "ignore",
    "touch_reload",
    "watch_installed",
    "gitignore",
    "poll",
    "poll_interval",
    "settle",
    "settle_max",
    "preflight",
    "preflight_timeout",
)


@dataclass(frozen=True)
class NumberRange:
    """Where a number option may lie (both ends included), and its unit for messages."""

    low: float
    high: float
    unit: str

    def describe(self) -> str:
        return f"{_plain(self.low)} to {_plain(self.high)} {self.unit}".rstrip()


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# Every number relaunch takes, from any source, is checked against this table, so
# nothing non-finite or absurd reaches a timer (inf, 1e300 and nan overflow or
# disable the waits they feed). The bounds are generous: they only exclude values
# that cannot be meant. ``serve`` checks its own numbers (port, workers, threads) here too.
NUMBERS: dict[str, NumberRange] = {
    "poll_interval": NumberRange(0.01, 3600, "seconds"),
    "settle": NumberRange(0, 60_000, "milliseconds"),
    "settle_max": NumberRange(0, 600_000, "milliseconds"),
    "grace": NumberRange(0, 3600, "seconds"),
    "preflight_timeout": NumberRange(0.1, 3600, "seconds"),
    "port": NumberRange(0, 65535, ""),
    "workers": NumberRange(1, 256, "processes"),
    "threads": NumberRange(1, 1024, "threads"),
}


def check_number(name: str, value: float, where: str) -> None:
    """Raise ConfigError unless ``value`` is finite and within NUMBERS[name].

    ``where`` names the source in the message: ``--grace``, ``RELAUNCH_GRACE``, a file."""
    bounds = NUMBERS[name]
    # An int compares exactly however large; math.isfinite() would overflow on it.
    finite = isinstance(value, int) or math.isfinite(value)
    if not (finite and bounds.low <= value <= bounds.high):
        shown = repr(value) if len(repr(value)) <= 24 else repr(value)[:20] + "..."
        raise ConfigError(f"{where}: {shown} is out of range ({bounds.describe()})")


# RELAUNCH_* variables that are not in the table and are not mistakes: read by one
# subcommand itself (the interpreter of ``relaunch watch``'s preflight), and -v / -q,
# which the CLI reads before any settings (they decide what is printed while loading).
NOISE_ENV: tuple[str, ...] = ("RELAUNCH_VERBOSE", "RELAUNCH_QUIET")
OTHER_ENV: tuple[str, ...] = ("RELAUNCH_PYTHON", *NOISE_ENV)
# Also never an error: RELAUNCH_CHANGED, RELAUNCH_CHANGED_COUNT, RELAUNCH_CHANGED_1...,
# which relaunch sets for the commands it runs (``relaunch watch --exec``), and such a
# command may run relaunch again.

_BY_KEY = {option.key: option for option in OPTIONS}
_BY_ENV = {option.env: option for option in OPTIONS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class Settings:
    """Everything ``relaunch run`` needs to know. Lists hold (value, anchor folder) pairs."""

    watch: list[tuple[str, str]] = field(default_factory=list)
    ignore: list[tuple[str, str]] = field(default_factory=list)
    touch_reload: list[tuple[str, str]] = field(default_factory=list)
    watch_installed: bool = False
    gitignore: bool = True
    poll: bool = False
    poll_interval: float = 0.5
    settle: int = 10
    settle_max: int = 1000
    grace: float = 5.0
    on_exit: str = "wait"
    restart: str = "auto"
    no_preload: list[tuple[str, str]] = field(default_factory=list)
    preflight: bool = True
    preflight_timeout: float = 60.0
    access_log: bool = True
    sources: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        for option in OPTIONS:
            if option.name in NUMBERS:
                value = getattr(self, option.name)
                check_number(option.name, value, self._where(option))
        if self.settle_max < self.settle:
            raise ConfigError("need settle <= settle-max (milliseconds)")

    def _where(self, option: Option) -> str:
        """The option as its source spells it: --grace, RELAUNCH_GRACE, a pyproject key."""
        source = self.sources.get(option.name)
        if source is None or source == "command line":
            return option.flag
        if source == option.env:
            return source
        return f"{source}: [tool.relaunch] {option.key}"


def _convert(option: Option, value: Any, where: str) -> Any:
    """Check and convert one value read from pyproject.toml (native) or the environment (str)."""
    from_env = isinstance(value, str) and option.kind != "choice"
    try:
        if option.kind == "list":
            if isinstance(value, str):
                items = value.split(os.pathsep) if where.startswith("RELAUNCH_") else [value]
                return [item for item in items if item]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            raise TypeError
        if option.kind == "bool":
            if isinstance(value, bool):
                return value
            if from_env and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise TypeError
        if option.kind == "int":
            if isinstance(value, (bool, float)):
                raise TypeError
            return int(value)
        if option.kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if option.kind == "choice" and value in option.choices:
            return value
        raise TypeError
    except (TypeError, ValueError):
        expected = {
            "list": "a string or a list of strings",
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "choice": "one of " + ", ".join(option.choices),
        }[option.kind]
        raise ConfigError(f"{where}: expected {expected}, got {value!r}") from None


def options_named(names: Iterable[str]) -> tuple[Option, ...]:
    """The table's entries for ``names``, in that order. KeyError for an unknown name."""
    by_name = {option.name: option for option in OPTIONS}
    return tuple(by_name[name] for name in names)


def find_pyproject(start: str) -> str | None:
    current = os.path.abspath(start)
    while True:
        candidate = os.path.join(current, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _read_pyproject(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition; tomllib lets the decode error through.
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 ({exc.reason})") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: 'tool' must be a table, got {tool!r}")
    table = tool.get("relaunch", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.relaunch] must be a table")
    return table


_warned: set[str] = set()


def _warn_unknown_env(name: str) -> None:
    """One warning per process: load() runs again after a release swap, and in-process."""
    if name in _warned:
        return
    _warned.add(name)
    # Compared without the prefix, which every candidate shares.
    known = {known[len("RELAUNCH_") :]: known for known in [*_BY_ENV, *OTHER_ENV]}
    close = difflib.get_close_matches(name[len("RELAUNCH_") :], list(known), n=1)
    hint = f"did you mean {known[close[0]]}?" if close else "see 'relaunch run --help'"
    log.warning("ignoring unknown environment variable %s (%s)", name, hint)


def noise_from_env(environ: Mapping[str, str] | None = None) -> tuple[bool, bool]:
    """(verbose, quiet) from RELAUNCH_VERBOSE and RELAUNCH_QUIET. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    values = []
    for name in NOISE_ENV:
        text = environ.get(name, "").strip().lower()
        if text not in _TRUE | _FALSE:
            raise ConfigError(f"{name}: expected true or false, got {environ[name]!r}")
        values.append(text in _TRUE)
    if all(values):
        raise ConfigError("RELAUNCH_VERBOSE and RELAUNCH_QUIET cannot both be set")
    return values[0], values[1]


def _apply(settings: Settings, option: Option, value: Any, anchor: str, source: str) -> None:
    if option.kind == "list":
        getattr(settings, option.name).extend((item, anchor) for item in value)
    else:
        setattr(settings, option.name, value)
    settings.sources[option.name] = source


def load(
    cli: Mapping[str, Any],
    *,
    cwd: str | None = None,
    environ: Mapping[str, str] | None = None,
    pyproject: str | None = None,
) -> Settings:
    """Merge defaults, pyproject.toml, the environment and CLI values (None = not given)."""
    cwd = os.path.abspath(cwd or os.getcwd())
    environ = os.environ if environ is None else environ
    settings = Settings()

    path = pyproject if pyproject is not None else find_pyproject(cwd)
    if path:
        anchor = os.path.dirname(os.path.abspath(path))
        for key, value in _read_pyproject(path).items():
            option = _BY_KEY.get(key.replace("_", "-"))
            if option is None:
                known = ", ".join(sorted(_BY_KEY))
                raise ConfigError(
                    f"{path}: unknown key '{key}' in [tool.relaunch] (known: {known})"
                )
            where = f"{path}: [tool.relaunch] {key}"
            _apply(settings, option, _convert(option, value, where), anchor, path)

    for name, value in environ.items():
        if not name.startswith("RELAUNCH_"):
            continue
        option = _BY_ENV.get(name)
        if option is None:
            if name in OTHER_ENV or name.split("_", 2)[:2] == ["RELAUNCH", "CHANGED"]:
                continue
            # A warning, not an error: a variable from a newer relaunch, or one meant
            # for a tool of the same prefix, must not stop the program from starting.
            _warn_unknown_env(name)
            continue
        _apply(settings, option, _convert(option, value, name), cwd, name)

    for option in OPTIONS:
        value = cli.get(option.name)
        if value is None or (option.kind == "list" and not value):
            continue
        _apply(settings, option, value, cwd, "command line")
    settings.check()
    return settings
