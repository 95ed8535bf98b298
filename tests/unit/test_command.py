"""Unit tests for relaunch.command: parsing Python's command line and resolving commands."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from relaunch.command import (
    Command,
    CommandError,
    PythonInvocation,
    looks_like_python,
    parse_python_args,
    resolve,
)

PY = "python3"


def inv(
    flags: tuple[str, ...], mode: str, target: str, args: tuple[str, ...] = ()
) -> PythonInvocation:
    return PythonInvocation(PY, flags, mode, target, args)


# --- parse_python_args ------------------------------------------------------------------

PARSE_CASES: list[tuple[list[str], PythonInvocation]] = [
    # plain script, with and without program arguments
    (["app.py"], inv((), "script", "app.py")),
    (["app.py", "-u", "--x"], inv((), "script", "app.py", ("-u", "--x"))),
    # flags that take no argument, alone and clustered
    (["-u", "app.py"], inv(("-u",), "script", "app.py")),
    (["-B", "app.py"], inv(("-B",), "script", "app.py")),
    (["-O", "app.py"], inv(("-O",), "script", "app.py")),
    (["-OO", "app.py"], inv(("-OO",), "script", "app.py")),
    (["-E", "-s", "-I", "-P", "app.py"], inv(("-E", "-s", "-I", "-P"), "script", "app.py")),
    (["-uB", "app.py", "a"], inv(("-uB",), "script", "app.py", ("a",))),
    (["-u", "-B", "-q", "app.py"], inv(("-u", "-B", "-q"), "script", "app.py")),
    # -W / -X: attached and separate values
    (["-Wd", "app.py"], inv(("-W", "d"), "script", "app.py")),
    (["-W", "error", "app.py"], inv(("-W", "error"), "script", "app.py")),
    (["-Xdev", "app.py"], inv(("-X", "dev"), "script", "app.py")),
    (["-X", "dev", "app.py"], inv(("-X", "dev"), "script", "app.py")),
    (
        ["-X", "importtime", "-Werror", "app.py"],
        inv(("-X", "importtime", "-W", "error"), "script", "app.py"),
    ),
    # a flag cluster ending in an option that takes a value
    (["-uWd", "app.py"], inv(("-u", "-W", "d"), "script", "app.py")),
    (["-uW", "ignore", "app.py"], inv(("-u", "-W", "ignore"), "script", "app.py")),
    # -c CODE
    (["-c", "print(1)"], inv((), "code", "print(1)")),
    (["-c", "print(1)", "a", "-u"], inv((), "code", "print(1)", ("a", "-u"))),
    (["-cprint(1)", "a"], inv((), "code", "print(1)", ("a",))),
    (["-u", "-c", "pass", "x"], inv(("-u",), "code", "pass", ("x",))),
    (["-uc", "pass"], inv(("-u",), "code", "pass")),
    # -m MODULE
    (["-m", "http.server", "8000"], inv((), "module", "http.server", ("8000",))),
    (["-mhttp.server"], inv((), "module", "http.server")),
    (["-Bm", "pkg", "--flag"], inv(("-B",), "module", "pkg", ("--flag",))),
    (["-X", "dev", "-m", "pkg"], inv(("-X", "dev"), "module", "pkg")),
    # arguments after -m / -c belong to the program, even ones that look like options
    (["-m", "pkg", "-c", "x"], inv((), "module", "pkg", ("-c", "x"))),
    # stdin
    (["-"], inv((), "stdin", "-")),
    (["-u", "-", "a", "b"], inv(("-u",), "stdin", "-", ("a", "b"))),
    # long option with an argument
    (
        ["--check-hash-based-pycs", "always", "app.py"],
        inv(("--check-hash-based-pycs", "always"), "script", "app.py"),
    ),
    (
        ["--check-hash-based-pycs=never", "app.py"],
        inv(("--check-hash-based-pycs=never",), "script", "app.py"),
    ),
    # -- ends the interpreter's options
    (["--", "app.py", "x"], inv((), "script", "app.py", ("x",))),
    (["-u", "--", "-weird.py"], inv(("-u",), "script", "-weird.py")),
]


@pytest.mark.parametrize(
    ("args", "expected"), PARSE_CASES, ids=[" ".join(c[0]) for c in PARSE_CASES]
)
def test_parse_python_args(args: list[str], expected: PythonInvocation) -> None:
    assert parse_python_args(PY, args) == expected


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-u"],
        ["-uB", "-W", "error"],
        ["--"],
        ["-V"],
        ["-h"],
        ["-?"],
        ["-uV"],
        ["--version"],
        ["--help"],
        ["--help-all"],
        ["-u", "--version", "app.py"],
        ["-V", "app.py"],
    ],
)
def test_parse_python_args_no_program(args: list[str]) -> None:
    assert parse_python_args(PY, args) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-Z", "app.py"], "unknown Python option: -Z"),
        (["-uZ", "app.py"], "unknown Python option: -Z"),
        (["--frobnicate", "app.py"], "unknown Python option: --frobnicate"),
        (["-W"], "-W needs an argument"),
        (["-u", "-X"], "-X needs an argument"),
        (["-c"], "-c needs an argument"),
        (["-m"], "-m needs an argument"),
        (["--check-hash-based-pycs"], "--check-hash-based-pycs needs an argument"),
    ],
)
def test_parse_python_args_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("?", r"\?")):
        parse_python_args(PY, args)


def test_parse_keeps_interpreter_as_given() -> None:
    result = parse_python_args("/opt/py/bin/python3.12", ["app.py"])
    assert result is not None
    assert result.interpreter == "/opt/py/bin/python3.12"


# --- looks_like_python ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("python", True),
        ("python3", True),
        ("/usr/bin/python3.12", True),
        ("python3.13t", True),
        ("pypy3", True),
        ("python.exe", True),
        ("ipython", False),
        ("python3-config", False),
        ("pythonista", False),
        ("/usr/bin/python3/bash", False),
        ("sh", False),
    ],
)
def test_looks_like_python(path: str, expected: bool) -> None:
    assert looks_like_python(path) is expected


# --- resolve ----------------------------------------------------------------------------


def make_exe(path: Path, text: str, *, executable: bool = True) -> Path:
    path.write_text(text)
    mode = path.stat().st_mode
    if executable:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    else:
        path.chmod(mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    return path


def test_resolve_empty() -> None:
    with pytest.raises(CommandError, match="no command given"):
        resolve([])


def test_resolve_missing_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandError, match="command not found: no-such-cmd-xyz"):
        resolve(["no-such-cmd-xyz"])


def test_resolve_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(CommandError, match="command not found"):
        resolve([missing])


def test_resolve_directory(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not an executable file"):
        resolve([str(tmp_path)])


def test_resolve_not_executable(tmp_path: Path) -> None:
    script = make_exe(tmp_path / "tool", f"#!{sys.executable}\n", executable=False)
    with pytest.raises(CommandError, match="not an executable file"):
        resolve([str(script)])


def test_resolve_python_interpreter() -> None:
    command = resolve([sys.executable, "-u", "app.py", "x"])
    assert command.executable == os.path.abspath(sys.executable)
    assert command.argv == (sys.executable, "-u", "app.py", "x")
    assert command.is_python
    assert command.python == PythonInvocation(sys.executable, ("-u",), "script", "app.py", ("x",))


def test_resolve_python_interpreter_repl_is_not_watched() -> None:
    command = resolve([sys.executable])
    assert command.python is None
    assert not command.is_python


def test_resolve_python_interpreter_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(tmp_path))
    command = resolve(["python3", "-m", "pkg"])
    assert command.executable == str(tmp_path / "python3")
    assert command.python == PythonInvocation("python3", (), "module", "pkg", ())


def test_resolve_console_script_direct_shebang(tmp_path: Path) -> None:
    script = make_exe(tmp_path / "mytool", f"#!{sys.executable}\nprint('hi')\n")
    command = resolve([str(script), "--opt", "v"])
    assert command == Command(
        (str(script), "--opt", "v"),
        str(script),
        PythonInvocation(sys.executable, (), "script", str(script), ("--opt", "v")),
    )


def test_resolve_console_script_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = make_exe(tmp_path / "mytool", f"#!{sys.executable}\nprint('hi')\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    command = resolve(["mytool"])
    assert command.executable == str(script)
    assert command.python is not None
    assert command.python.target == str(script)
    assert command.python.interpreter == sys.executable


@pytest.mark.parametrize("shebang", ["#!/usr/bin/env python3", "#!/usr/bin/env -S python3 -u"])
def test_resolve_console_script_env_shebang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shebang: str
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bindir))
    script = make_exe(tmp_path / "tool", f"{shebang}\nprint('hi')\n")
    command = resolve([str(script), "a"])
    assert command.python == PythonInvocation(
        str(bindir / "python3"), (), "script", str(script), ("a",)
    )


def test_resolve_env_shebang_python_not_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    script = make_exe(tmp_path / "tool", "#!/usr/bin/env python3\n")
    assert resolve([str(script)]).python is None


def test_resolve_env_shebang_not_python(tmp_path: Path) -> None:
    script = make_exe(tmp_path / "tool", "#!/usr/bin/env node\n")
    assert resolve([str(script)]).python is None


@pytest.mark.parametrize(
    "launcher",
    [
        "'''exec' {py} \"$0\" \"$@\"",
        '\'\'\'exec\' "{py}" "$0" "$@"',
    ],
)
def test_resolve_pip_sh_launcher(tmp_path: Path, launcher: str) -> None:
    long_python = "/very/long/path/to/some/venv/bin/python"
    text = f"#!/bin/sh\n{launcher.format(py=long_python)}\n' '''\nprint('hi')\n"
    script = make_exe(tmp_path / "tool", text)
    command = resolve([str(script), "x"])
    assert command.python == PythonInvocation(long_python, (), "script", str(script), ("x",))


def test_resolve_pip_sh_launcher_with_spaces_in_quoted_path(tmp_path: Path) -> None:
    python = "/path with spaces/bin/python3"
    text = f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n"
    script = make_exe(tmp_path / "tool", text)
    command = resolve([str(script)])
    assert command.python is not None
    assert command.python.interpreter == python


def test_resolve_shell_script_is_not_python(tmp_path: Path) -> None:
    script = make_exe(tmp_path / "run.sh", "#!/bin/sh\necho hello\n")
    command = resolve([str(script), "a"])
    assert command == Command((str(script), "a"), str(script), None)
    assert not command.is_python


def test_resolve_binary_without_shebang(tmp_path: Path) -> None:
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF\x00\x01\x02")
    binary.chmod(0o755)
    assert resolve([str(binary)]).python is None


def test_resolve_relative_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_exe(tmp_path / "tool", f"#!{sys.executable}\n")
    monkeypatch.chdir(tmp_path)
    command = resolve(["./tool"])
    assert command.executable == str(tmp_path / "tool")
    assert command.argv == ("./tool",)
