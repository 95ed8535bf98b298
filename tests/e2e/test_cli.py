"""The command line as a user meets it: errors, --explain, the terminal, Ctrl-C."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Relaunch, wait_until, write

PY = sys.executable
Start = Callable[..., Relaunch]


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RELAUNCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [PY, "-m", "relaunch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "no command given"),
        (["run", "--", "no-such-command-here"], "command not found: no-such-command-here"),
        (
            ["run", "--bogus", "--", "true"],
            "unrecognized arguments: --bogus (see 'relaunch run --help')",
        ),
        (
            ["run", "--watch", "missing-dir", "--", "true"],
            "--watch 'missing-dir': no such file or folder",
        ),
        (["run", "--on-exit", "sometimes", "--", "true"], "invalid choice: 'sometimes'"),
        (["run", "--grace", "soon", "--", "true"], "invalid float value: 'soon'"),
        # Every number finite and in its range (these crashed, hung or killed at once).
        (["run", "--grace", "inf", "--", "true"], "--grace: inf is out of range (0 to 3600"),
        (["run", "--grace", "1e300", "--", "true"], "--grace: 1e+300 is out of range"),
        (["run", "--grace", "nan", "--", "true"], "--grace: nan is out of range"),
        (["run", "--settle", "99999999999", "--", "true"], "--settle: 99999999999 is out"),
        (["run", "--poll-interval", "inf", "--", "true"], "--poll-interval: inf is out"),
        (["run", "--preflight-timeout", "-5", "--", "true"], "--preflight-timeout: -5.0 is"),
        (["watch", "--settle-max", "1e9", "--exec", "true"], "invalid int value"),
        (["watch", "--poll-interval", "0", "--exec", "true"], "--poll-interval: 0.0 is out"),
        (["serve", "app:app", "--workers", "0"], "--workers: 0 is out of range"),
        (["watch", "--pid", "99999999999999"], "--pid 99999999999999 is not a process id"),
        (["serve", "app:app", "--port", "70000"], "--port: 70000 is out of range (0 to 65535)"),
        # A glob that is none, refused before the program starts.
        (["run", "-i", "**/[z-a]", "--", "true"], "--ignore: '**/[z-a]' is not a valid glob"),
        (["run", "-w", "[9-0]*.py", "--", "true"], "--watch: '[9-0]*.py' is not a valid glob"),
        (
            ["watch", "--python", "/nonexistent", "--preflight", "app:app", "--exec", "true"],
            "--python /nonexistent: no such interpreter",
        ),
        (["run", "--", PY, "-Z", "app.py"], "unknown Python option: -Z"),
        ([], "the following arguments are required"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"pyproject.toml": "[tool.relaunch\n"}, "is not valid TOML"),
        ({"pyproject.toml": "[tool.relaunch]\nwatchh = ['x']\n"}, "unknown key 'watchh'"),
        ({"pyproject.toml": "[tool.relaunch]\ngrace = 'long'\n"}, "expected a number"),
        ({"pyproject.toml": "tool = 3\n"}, "'tool' must be a table, got 3"),
        ({"pyproject.toml": "[tool.relaunch]\ngrace = inf\n"}, "grace: inf is out of range"),
        ({"pyproject.toml": b"[tool.relaunch]\nwatch = ['\xff']\n"}, "not valid TOML: not UTF-8"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    tmp_path: Path, setup: dict[str, str | bytes], message: str
) -> None:
    for name, text in setup.items():
        if isinstance(text, bytes):
            (tmp_path / name).write_bytes(text)
        else:
            (tmp_path / name).write_text(text)
    for command in (["run", "--", "true"], ["watch", "--exec", "true"]):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unreadable_pyproject_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").mkdir()  # exists, cannot be read as a file
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[tool.relaunch]\npoll = 'maybe'\n")
    result = run_cli("run", "--", "true", cwd=tmp_path / "sub")
    assert result.returncode == 2 and "expected true or false" in result.stderr


def test_bad_environment_variable(tmp_path: Path) -> None:
    result = run_cli("run", "--", "true", cwd=tmp_path, env={"RELAUNCH_POLL": "sometimes"})
    assert result.returncode == 2 and "RELAUNCH_POLL: expected true or false" in result.stderr
    too_big = "100000000000000000000"
    for name, value in (("RELAUNCH_SETTLE_MAX", too_big), ("RELAUNCH_GRACE", "nan")):
        result = run_cli("run", "--", "true", cwd=tmp_path, env={name: value})
        assert result.returncode == 2 and f"{name}: " in result.stderr
        assert "out of range" in result.stderr and "Traceback" not in result.stderr


def test_unknown_environment_variable_is_one_warning_and_the_program_runs(
    tmp_path: Path,
) -> None:
    result = run_cli(
        "run", "--on-exit", "exit", "--", PY, "-c", "print('ran')",
        cwd=tmp_path, env={"RELAUNCH_FOO": "1", "RELAUNCH_WATHC": "x"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran\n"
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 2, result.stderr
    assert "ignoring unknown environment variable RELAUNCH_FOO" in warnings[0]
    assert "RELAUNCH_WATHC (did you mean RELAUNCH_WATCH?)" in warnings[1]


def test_verbose_and_quiet_have_variables(tmp_path: Path) -> None:
    command = ["run", "--on-exit", "exit", "--", PY, "-c", "print('ran')"]
    quiet = run_cli(*command, cwd=tmp_path, env={"RELAUNCH_QUIET": "1"})
    assert quiet.returncode == 0 and quiet.stdout == "ran\n" and quiet.stderr == ""
    verbose = run_cli(*command, cwd=tmp_path, env={"RELAUNCH_VERBOSE": "1"})
    assert verbose.returncode == 0 and "watching 0 file(s)" in verbose.stderr
    # The command line wins over the environment.
    loud = run_cli("run", "-v", *command[1:], cwd=tmp_path, env={"RELAUNCH_QUIET": "1"})
    assert "watching 0 file(s)" in loud.stderr
    both = run_cli(*command, cwd=tmp_path, env={"RELAUNCH_QUIET": "1", "RELAUNCH_VERBOSE": "1"})
    assert both.returncode == 2 and "cannot both be set" in both.stderr


def test_explain_names_the_deciding_rule(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "index.html").write_text("")
    (tmp_path / "server.log").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "app.py").write_text("")
    (tmp_path / "skip.html").write_text("")
    result = run_cli(
        "run", "-w", "templates/**", "-w", "*.html", "-i", "skip.*",
        "--explain", "templates/index.html", "--explain", "server.log",
        "--explain", "notes.txt", "--explain", "app.py", "--explain", "skip.html",
        "--", PY, "app.py",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "templates/index.html: watched: --watch 'templates/**'"
    assert lines[1] == "server.log: not watched: ignored by built-in ignore '*.log'"
    assert lines[2].startswith("notes.txt: not watched: not imported by the program")
    assert lines[3].startswith("app.py: watched once the program imports it")
    assert lines[4] == "skip.html: not watched: ignored by --ignore 'skip.*'"


def test_explain_reports_installed_packages(tmp_path: Path) -> None:
    import pathspec

    installed = pathspec.__file__
    result = run_cli("run", "--explain", installed, "--", PY, "app.py", cwd=tmp_path)
    assert "in the standard library or an installed package" in result.stdout
    assert "--watch-installed watches these" in result.stdout
    result = run_cli(
        "run", "--watch-installed", "--explain", installed, "--", PY, "app.py", cwd=tmp_path
    )
    assert "watched once the program imports it" in result.stdout


def test_enter_in_the_terminal_reloads(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import os, sys, time\nprint('run', os.getpid(), sys.stdin.isatty(), flush=True)\n"
        "time.sleep(3600)\n"
    )
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAUNCH_")}
    proc = subprocess.Popen(
        [PY, "-m", "relaunch", "run", "--", PY, "app.py"],
        cwd=tmp_path, env=env, stdin=terminal, stdout=terminal, stderr=terminal,
        start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    seen = b""

    def read_until(needle: bytes, timeout: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while needle not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            try:
                seen += os.read(controller, 4096)
            except OSError:
                break
        assert needle in seen, seen.decode(errors="replace")

    try:
        read_until(b"run ")
        os.write(controller, b"\n")
        read_until(b"reload #1: manual reload (Enter)")
        os.write(controller, b"rs\n")
        read_until(b"reload #2: manual reload (Enter)")
        # While relaunch reads the terminal, the program's stdin is not the terminal.
        read_until(b"False")
        assert b"True" not in seen
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(controller)


def test_ctrl_c_twice_kills_at_once(tmp_path: Path, relaunch: Start) -> None:
    (tmp_path / "app.py").write_text(
        "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('pid', os.getpid(), flush=True)\ntime.sleep(3600)\n"
    )
    r = relaunch(["run", "--grace", "60", "--", PY, "app.py"])
    pid = int(r.expect(r"pid (\d+)").group(1))
    r.signal(signal.SIGINT)
    r.expect("stopping", stream="err")
    r.signal(signal.SIGINT)
    assert r.wait(timeout=10) == 130
    from .harness import pid_alive

    wait_until(lambda: not pid_alive(pid), what="the program to be killed")


def test_quiet_shows_only_errors(tmp_path: Path, relaunch: Start) -> None:
    (tmp_path / "app.py").write_text("import msg\nprint('v', msg.V, flush=True)\n")
    (tmp_path / "msg.py").write_text("V = 1\n")
    r = relaunch(["run", "-q", "--", PY, "app.py"])
    r.expect("v 1")
    write(tmp_path / "msg.py", "V = (\n")
    r.expect("program exited with code 1", stream="err")
    assert not any("reload #" in line or "running" in line for line in r.err.lines)


def test_version_and_help(tmp_path: Path) -> None:
    assert run_cli("--version", cwd=tmp_path).stdout.startswith("relaunch ")
    help_text = run_cli("run", "--help", cwd=tmp_path).stdout
    for flag in ("--watch", "--ignore", "--poll", "--grace", "--on-exit", "--explain", "--settle"):
        assert flag in help_text


def test_every_option_is_documented_in_the_readme() -> None:
    from relaunch.config import OPTIONS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for option in OPTIONS:
        assert f"`{option.flag}" in readme or f"`--no-{option.key}" in readme, option.flag


def test_watch_reads_tool_relaunch_and_the_environment(tmp_path: Path, relaunch: Start) -> None:
    """relaunch watch shares relaunch run's watching options, from the same sources."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.relaunch]\nwatch = ["templates"]\nignore = ["*.tmp"]\nsettle = 20\n'
        "grace = 2  # relaunch run's: accepted, not used by relaunch watch\n"
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "index.html").write_text("1")
    (tmp_path / "templates" / "draft.tmp").write_text("1")
    (tmp_path / "other.txt").write_text("1")
    out = tmp_path / "out.txt"
    r = relaunch(
        ["watch", "-v", "--exec", f'printf "%s" "$RELAUNCH_CHANGED" > "{out}"'],
        env={"RELAUNCH_SETTLE_MAX": "500"},
    )
    # Only templates/index.html: without the pyproject.toml, the whole folder.
    r.expect(r"watching 1 file\(s\); on change: run", stream="err")
    write(tmp_path / "other.txt", "2")
    write(tmp_path / "templates" / "draft.tmp", "2")
    write(tmp_path / "templates" / "index.html", "2")
    r.expect(r"reload #1: templates/index.html changed; ran", stream="err")
    assert out.read_text() == str(tmp_path / "templates" / "index.html")


def test_watch_configuration_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("watch", "--exec", "true", cwd=tmp_path, env={"RELAUNCH_POLL": "maybe"})
    assert result.returncode == 2 and "RELAUNCH_POLL: expected true or false" in result.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.relaunch]\nwatch = ['missing']\n")
    result = run_cli("watch", "--exec", "true", cwd=tmp_path)
    assert result.returncode == 2 and "--watch 'missing': no such file" in result.stderr
    assert "Traceback" not in result.stderr
    help_text = run_cli("watch", "--help", cwd=tmp_path).stdout
    for text in ("--pidfile", "--no-preflight", "--settle", "[tool.relaunch]", "RELAUNCH_"):
        assert text in help_text
