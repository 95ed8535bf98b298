"""Understand the command the user asked relaunch to run.

Pure logic, apart from :func:`resolve`, which looks the executable up on PATH and
reads its shebang. The result says whether the command is a Python program (so it
can be run through the bootstrap that reports imports) and, if so, how: which
interpreter, which interpreter flags, and which of script / ``-m`` / ``-c`` / stdin.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

__all__ = [
    "Command",
    "CommandError",
    "PythonInvocation",
    "parse_python_args",
    "resolve",
]

# Interpreter options that take an argument, attached (-Wd) or separate (-W d).
_OPTS_WITH_ARG = frozenset("WXcm")
# Single-letter flags that take none. -h/-V print and exit; they are passed through.
_FLAGS = frozenset("bBdEhiIOPqsSuvVx?R")
_LONG_WITH_ARG = frozenset({"--check-hash-based-pycs"})
_LONG_FLAGS = frozenset({"--help", "--version", "--help-env", "--help-xoptions", "--help-all"})

_PYTHON_NAME = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?([dmut]*)(\.exe)?$", re.IGNORECASE)


class CommandError(Exception):
    """The command cannot be run: not found, not executable, or malformed."""


@dataclass(frozen=True)
class PythonInvocation:
    """How a Python program is started.

    ``mode`` is ``"script"``, ``"module"``, ``"code"`` or ``"stdin"``; ``target`` is the
    script path, module name or code string; ``args`` are the program's own arguments
    (what follows the target in ``sys.argv``).
    """

    interpreter: str
    flags: tuple[str, ...]
    mode: str
    target: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    """A resolved command: ``argv`` exactly as given, ``python`` when it is a Python program."""

    argv: tuple[str, ...]
    executable: str
    python: PythonInvocation | None = field(default=None)

    @property
    def is_python(self) -> bool:
        return self.python is not None


def looks_like_python(path: str) -> bool:
    """True when the file name is that of a Python interpreter (python3, python3.12, pypy3)."""
    return bool(_PYTHON_NAME.match(os.path.basename(path)))


def parse_python_args(interpreter: str, args: list[str]) -> PythonInvocation | None:
    """Split ``python ARGS`` into interpreter flags and the program to run.

    Returns None when the arguments start no program (``python`` alone opens a REPL;
    ``python -V`` prints a version): such commands are run as they are, unwatched.
    """
    flags: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-":
            return PythonInvocation(interpreter, tuple(flags), "stdin", "-", tuple(args[i + 1 :]))
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            if name in _LONG_WITH_ARG:
                if eq:
                    flags.append(arg)
                    i += 1
                else:
                    if i + 1 >= len(args):
                        raise CommandError(f"{name} needs an argument")
                    flags.extend(args[i : i + 2])
                    i += 2
                continue
            if name in _LONG_FLAGS:
                return None
            raise CommandError(f"unknown Python option: {arg}")
        if not arg.startswith("-") or arg == "-":
            break
        # A cluster of single-letter options, like -uB or -Wd or -Xdev.
        j = 1
        while j < len(arg):
            letter = arg[j]
            if letter in _OPTS_WITH_ARG:
                value = arg[j + 1 :]
                consumed = 1
                if not value:
                    if i + 1 >= len(args):
                        raise CommandError(f"Python option -{letter} needs an argument")
                    value = args[i + 1]
                    consumed = 2
                if letter in "cm":
                    if arg[1:j]:
                        flags.append("-" + arg[1:j])
                    mode = "code" if letter == "c" else "module"
                    rest = tuple(args[i + consumed :])
                    return PythonInvocation(interpreter, tuple(flags), mode, value, rest)
                if arg[1:j]:
                    flags.append("-" + arg[1:j])
                flags.extend([f"-{letter}", value])
                i += consumed
                break
            if letter not in _FLAGS:
                raise CommandError(f"unknown Python option: -{letter}")
            if letter in "hV?":
                return None
            j += 1
        else:
            flags.append(arg)
            i += 1
    if i >= len(args):
        return None
    return PythonInvocation(interpreter, tuple(flags), "script", args[i], tuple(args[i + 1 :]))


def _read_shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    try:
        return first[2:].decode("utf-8").strip().split()
    except UnicodeDecodeError:
        return None


def _python_from_shebang(script: str) -> str | None:
    """The interpreter named by a console script's shebang, if it is Python."""
    words = _read_shebang(script)
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        names = [w for w in words[1:] if not w.startswith("-")]
        if not names or not looks_like_python(names[0]):
            return None
        return shutil.which(names[0])
    if looks_like_python(words[0]):
        return words[0]
    if words[0] == "/bin/sh":
        # pip writes this launcher when the interpreter path is too long for a shebang:
        #   #!/bin/sh
        #   '''exec' /long/path/python "$0" "$@"
        try:
            with open(script, encoding="utf-8") as f:
                f.readline()
                second = f.readline()
        except (OSError, UnicodeDecodeError):
            return None
        m = re.match(r"^'''exec' (?:\"([^\"]+)\"|(\S+)) \"\$0\" \"\$@\"", second)
        if m:
            return m.group(1) or m.group(2)
    return None


def resolve(argv: list[str]) -> Command:
    """Find the executable and classify the command. Raises CommandError for a user mistake."""
    if not argv:
        raise CommandError("no command given (usage: relaunch run [OPTIONS] -- COMMAND [ARGS...])")
    name = argv[0]
    found = shutil.which(name) if os.sep not in name else name
    if not found or not os.path.exists(found):
        raise CommandError(f"command not found: {name}")
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise CommandError(f"not an executable file: {name}")
    executable = os.path.abspath(found)
    if looks_like_python(executable):
        return Command(tuple(argv), executable, parse_python_args(name, list(argv[1:])))
    interpreter = _python_from_shebang(executable)
    if interpreter:
        invocation = PythonInvocation(interpreter, (), "script", executable, tuple(argv[1:]))
        return Command(tuple(argv), executable, invocation)
    return Command(tuple(argv), executable, None)
