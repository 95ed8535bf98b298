"""Unit tests for relaunch.config: defaults, pyproject.toml, RELAUNCH_* and the CLI."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from relaunch.config import (
    NUMBERS,
    OPTIONS,
    OTHER_ENV,
    WATCH_OPTIONS,
    ConfigError,
    Settings,
    check_number,
    find_pyproject,
    load,
    noise_from_env,
    options_named,
)


def write_pyproject(folder: Path, body: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(body)
    return str(path)


def run_load(
    tmp_path: Path,
    *,
    cli: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    pyproject: str = "",
) -> Settings:
    return load(cli or {}, cwd=str(tmp_path), environ=environ or {}, pyproject=pyproject)


def test_defaults(tmp_path: Path) -> None:
    settings = run_load(tmp_path)
    assert settings == Settings()
    assert settings.watch == [] and settings.ignore == []
    assert settings.watch_installed is False
    assert settings.gitignore is True
    assert settings.poll is False
    assert settings.poll_interval == 0.5
    assert settings.settle == 10
    assert settings.settle_max == 1000
    assert settings.grace == 5.0
    assert settings.on_exit == "wait"
    assert settings.sources == {}


def test_option_table_matches_settings() -> None:
    defaults = Settings()
    for option in OPTIONS:
        assert getattr(defaults, option.name) == option.default
        assert option.env == "RELAUNCH_" + option.name.upper()
        assert option.flag == "--" + option.name.replace("_", "-")


def test_environ_is_not_read_when_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAUNCH_POLL", "1")
    assert run_load(tmp_path).poll is False


# --- pyproject.toml ---------------------------------------------------------------------

PYPROJECT = """
[project]
name = "demo"

[tool.relaunch]
watch = ["templates", "config/*.toml"]
ignore = "*.tmp"
watch-installed = true
poll_interval = 0.25
settle = 20
settle-max = 500
grace = 2
on-exit = "restart"
gitignore = false
poll = true
"""


def test_pyproject_values(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    path = write_pyproject(proj, PYPROJECT)
    settings = run_load(tmp_path / "elsewhere", pyproject=path)
    anchor = str(proj)
    assert settings.watch == [("templates", anchor), ("config/*.toml", anchor)]
    assert settings.ignore == [("*.tmp", anchor)]
    assert settings.watch_installed is True
    assert settings.poll_interval == 0.25
    assert settings.settle == 20
    assert settings.settle_max == 500
    assert settings.grace == 2.0
    assert isinstance(settings.grace, float)
    assert settings.on_exit == "restart"
    assert settings.gitignore is False
    assert settings.poll is True
    assert settings.sources["settle"] == path
    assert settings.sources["watch"] == path


def test_pyproject_found_from_cwd(tmp_path: Path) -> None:
    write_pyproject(tmp_path / "proj", "[tool.relaunch]\nsettle = 42\nwatch = ['src']\n")
    cwd = tmp_path / "proj" / "a" / "b"
    cwd.mkdir(parents=True)
    settings = load({}, cwd=str(cwd), environ={})
    assert settings.settle == 42
    assert settings.watch == [("src", str(tmp_path / "proj"))]


def test_pyproject_relative_path_anchor_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pyproject(tmp_path / "proj", "[tool.relaunch]\nwatch = ['src']\n")
    monkeypatch.chdir(tmp_path)
    settings = load({}, cwd=str(tmp_path), environ={}, pyproject="proj/pyproject.toml")
    assert settings.watch == [("src", str(tmp_path / "proj"))]


def test_pyproject_without_tool_relaunch(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, "[project]\nname = 'x'\n[tool.black]\nline-length = 1\n")
    assert run_load(tmp_path, pyproject=path) == Settings()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tool.relaunch]\nbogus = 1\n", "unknown key 'bogus' in \\[tool.relaunch\\]"),
        ("[tool.relaunch]\nsettle = 'fast'\n", "expected a whole number, got 'fast'"),
        ("[tool.relaunch]\nsettle = true\n", "expected a whole number, got True"),
        ("[tool.relaunch]\nsettle = 1.5\n", "expected a whole number, got 1.5"),
        ("[tool.relaunch]\ngrace = false\n", "expected a number, got False"),
        ("[tool.relaunch]\npoll = 1\n", "expected true or false, got 1"),
        ("[tool.relaunch]\nwatch = [1, 2]\n", "expected a string or a list of strings"),
        ("[tool.relaunch]\nwatch = {a = 1}\n", "expected a string or a list of strings"),
        ("[tool.relaunch]\non-exit = 'never'\n", "expected one of wait, restart, exit"),
        ("[tool.relaunch]\nsettle = 2000\n", "settle <= settle-max"),
        ("[tool.relaunch]\nsettle = -1\n", "settle: -1 is out of range"),
        ("[tool.relaunch]\npoll-interval = 0\n", "poll-interval: 0.0 is out of range"),
        ("[tool.relaunch]\ngrace = -1\n", "grace: -1.0 is out of range"),
        ("[tool]\nrelaunch = 3\n", "must be a table"),
        ("tool = 3\n", "'tool' must be a table, got 3"),
        ("[tool.relaunch\nsettle = 1\n", "is not valid TOML"),
        ("[tool.relaunch]\nsettle = \n", "is not valid TOML"),
    ],
)
def test_pyproject_errors(tmp_path: Path, body: str, message: str) -> None:
    path = write_pyproject(tmp_path, body)
    with pytest.raises(ConfigError, match=message):
        run_load(tmp_path, pyproject=path)


def test_pyproject_error_names_the_file_and_key(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, "[tool.relaunch]\nsettle-max = 'x'\n")
    with pytest.raises(ConfigError) as info:
        run_load(tmp_path, pyproject=path)
    assert str(info.value).startswith(f"{path}: [tool.relaunch] settle-max: ")


def test_pyproject_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        run_load(tmp_path, pyproject=str(tmp_path / "nope.toml"))


# --- environment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("false", False),
        ("True", True),
        ("FALSE", False),
        (" yes ", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("", False),
    ],
)
def test_env_bool(tmp_path: Path, value: str, expected: bool) -> None:
    settings = run_load(tmp_path, environ={"RELAUNCH_POLL": value, "RELAUNCH_GITIGNORE": value})
    assert settings.poll is expected
    assert settings.gitignore is expected
    assert settings.sources["poll"] == "RELAUNCH_POLL"


@pytest.mark.parametrize("value", ["2", "maybe", "y"])
def test_env_bool_invalid(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="RELAUNCH_POLL: expected true or false"):
        run_load(tmp_path, environ={"RELAUNCH_POLL": value})


def test_env_lists_split_on_pathsep(tmp_path: Path) -> None:
    value = os.pathsep.join(["src", "", "templates/*.html"])
    settings = run_load(tmp_path, environ={"RELAUNCH_WATCH": value, "RELAUNCH_IGNORE": "*.tmp"})
    cwd = str(tmp_path)
    assert settings.watch == [("src", cwd), ("templates/*.html", cwd)]
    assert settings.ignore == [("*.tmp", cwd)]


def test_env_empty_list(tmp_path: Path) -> None:
    assert run_load(tmp_path, environ={"RELAUNCH_WATCH": ""}).watch == []


def test_env_numbers_and_choice(tmp_path: Path) -> None:
    settings = run_load(
        tmp_path,
        environ={
            "RELAUNCH_SETTLE": "25",
            "RELAUNCH_SETTLE_MAX": "250",
            "RELAUNCH_POLL_INTERVAL": "0.1",
            "RELAUNCH_GRACE": "3",
            "RELAUNCH_ON_EXIT": "exit",
            "PATH": "/usr/bin",  # unrelated variables are ignored
        },
    )
    assert settings.settle == 25
    assert settings.settle_max == 250
    assert settings.poll_interval == 0.1
    assert settings.grace == 3.0
    assert settings.on_exit == "exit"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RELAUNCH_SETTLE": "1.5"}, "RELAUNCH_SETTLE: expected a whole number"),
        ({"RELAUNCH_SETTLE": "ten"}, "RELAUNCH_SETTLE: expected a whole number"),
        ({"RELAUNCH_GRACE": "soon"}, "RELAUNCH_GRACE: expected a number"),
        ({"RELAUNCH_ON_EXIT": "never"}, "RELAUNCH_ON_EXIT: expected one of wait, restart, exit"),
        ({"RELAUNCH_SETTLE": "50", "RELAUNCH_SETTLE_MAX": "20"}, "settle <= settle-max"),
    ],
)
def test_env_errors(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_load(tmp_path, environ=environ)


# --- precedence -------------------------------------------------------------------------


def test_precedence_and_lists_add_up(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    path = write_pyproject(
        proj,
        "[tool.relaunch]\nsettle = 20\ngrace = 1.0\npoll = false\nwatch = ['a']\nignore = ['x']\n",
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    settings = load(
        {"settle": 40, "watch": ["c"], "ignore": [], "poll": None, "grace": None},
        cwd=str(cwd),
        environ={"RELAUNCH_SETTLE": "30", "RELAUNCH_POLL": "1", "RELAUNCH_WATCH": "b"},
        pyproject=path,
    )
    # single values: CLI over environment over pyproject over default
    assert settings.settle == 40
    assert settings.sources["settle"] == "command line"
    assert settings.poll is True
    assert settings.sources["poll"] == "RELAUNCH_POLL"
    assert settings.grace == 1.0
    assert settings.sources["grace"] == path
    assert settings.settle_max == 1000
    assert "settle_max" not in settings.sources
    # lists: every source adds, each with its own anchor
    assert settings.watch == [("a", str(proj)), ("b", str(cwd)), ("c", str(cwd))]
    assert settings.ignore == [("x", str(proj))]


def test_cli_false_overrides(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, "[tool.relaunch]\ngitignore = false\nsettle = 0\n")
    settings = run_load(
        tmp_path,
        cli={"gitignore": True, "settle": 5},
        environ={"RELAUNCH_GITIGNORE": "0"},
        pyproject=path,
    )
    assert settings.gitignore is True
    assert settings.settle == 5


def test_cli_zero_is_a_value(tmp_path: Path) -> None:
    settings = run_load(tmp_path, cli={"settle": 0, "poll": False}, environ={"RELAUNCH_POLL": "1"})
    assert settings.settle == 0
    assert settings.poll is False


def test_cli_values_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settle <= settle-max"):
        run_load(tmp_path, cli={"settle": 10, "settle_max": 5})


# --- find_pyproject ---------------------------------------------------------------------


def test_find_pyproject_walks_up(tmp_path: Path) -> None:
    top = write_pyproject(tmp_path / "a", "")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_pyproject(str(deep)) == top
    assert find_pyproject(str(tmp_path / "a")) == top


def test_find_pyproject_nearest_wins(tmp_path: Path) -> None:
    write_pyproject(tmp_path / "a", "")
    inner = write_pyproject(tmp_path / "a" / "b", "")
    (tmp_path / "a" / "b" / "c").mkdir()
    assert find_pyproject(str(tmp_path / "a" / "b" / "c")) == inner


def test_find_pyproject_skips_folders_named_pyproject(tmp_path: Path) -> None:
    top = write_pyproject(tmp_path / "a", "")
    (tmp_path / "a" / "b" / "pyproject.toml").mkdir(parents=True)
    assert find_pyproject(str(tmp_path / "a" / "b")) == top


# --- relaunch watch's share of the table ------------------------------------------------


def test_watch_options_are_in_the_table() -> None:
    shared = options_named(WATCH_OPTIONS)
    assert [option.name for option in shared] == list(WATCH_OPTIONS)
    # What is about running a program stays relaunch run's.
    assert not {"grace", "on_exit", "restart", "no_preload"} & set(WATCH_OPTIONS)
    with pytest.raises(KeyError):
        options_named(["pidfile"])


def test_watch_precedence_is_run_s(tmp_path: Path) -> None:
    """relaunch watch passes only its options; the merge is the same."""
    path = write_pyproject(
        tmp_path,
        "[tool.relaunch]\nwatch = ['templates']\nsettle = 20\npreflight = false\n"
        "grace = 2\non-exit = 'restart'\n",  # relaunch run's: accepted, unused by watch
    )
    cli = {name: None for name in WATCH_OPTIONS} | {"settle_max": 300}
    settings = load(
        cli,
        cwd=str(tmp_path),
        environ={"RELAUNCH_SETTLE": "30", "RELAUNCH_WATCH": "static"},
        pyproject=path,
    )
    assert settings.settle == 30 and settings.sources["settle"] == "RELAUNCH_SETTLE"
    assert settings.settle_max == 300 and settings.sources["settle_max"] == "command line"
    assert settings.preflight is False and settings.sources["preflight"] == path
    assert settings.watch == [("templates", str(tmp_path)), ("static", str(tmp_path))]
    # --no-preflight on the command line wins over an environment that turns it on.
    settings = load(
        cli | {"preflight": False}, cwd=str(tmp_path), environ={"RELAUNCH_PREFLIGHT": "1"}
    )
    assert settings.preflight is False


def test_variables_that_are_not_options_are_not_errors(tmp_path: Path) -> None:
    environ = {
        "RELAUNCH_PYTHON": "/srv/venv/bin/python",  # relaunch watch --python
        "RELAUNCH_CHANGED": "/a.py:/b.py",  # set for relaunch watch --exec commands
        "RELAUNCH_CHANGED_COUNT": "2",
        "RELAUNCH_CHANGED_1": "/a.py",
    }
    assert run_load(tmp_path, environ=environ) == Settings()
    assert "RELAUNCH_PYTHON" in OTHER_ENV


def test_access_log_from_every_source_and_only_on_serves_command_line(tmp_path: Path) -> None:
    import argparse

    from relaunch.subcommands.common import add_settings_options

    assert run_load(tmp_path).access_log is True
    assert run_load(tmp_path, environ={"RELAUNCH_ACCESS_LOG": "0"}).access_log is False
    path = write_pyproject(tmp_path / "p", "[tool.relaunch]\naccess-log = false\n")
    assert run_load(tmp_path, pyproject=path).access_log is False
    assert run_load(tmp_path, cli={"access_log": True}, pyproject=path).access_log is True
    serve, run = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_settings_options(serve, serve=True)
    add_settings_options(run)
    assert serve.parse_args(["--no-access-log"]).access_log is False
    assert run.parse_args([]).access_log is None  # read as "not given"
    with pytest.raises(SystemExit):
        run.parse_args(["--no-access-log"])


# --- unknown variables are warnings -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("RELAUNCH_FOO", "see 'relaunch run --help'"),
        ("RELAUNCH_SETLE", "did you mean RELAUNCH_SETTLE?"),
        ("RELAUNCH_CHANGEDX", "("),  # not RELAUNCH_CHANGED_1..., which relaunch sets
        ("RELAUNCH_PYTHNO", "did you mean RELAUNCH_PYTHON?"),
        ("RELAUNCH_", "see 'relaunch run --help'"),
    ],
)
def test_unknown_variable_is_a_warning_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, hint: str
) -> None:
    """An unknown RELAUNCH_* name must not stop relaunch (or runserver) from starting."""
    caplog.set_level(logging.WARNING, logger="relaunch")
    settings = run_load(tmp_path, environ={name: "1", "RELAUNCH_GRACE": "2"})
    assert settings.grace == 2.0
    warnings = [r.getMessage() for r in caplog.records if name + " " in r.getMessage() + " "]
    assert len(warnings) == 1, caplog.records
    assert f"unknown environment variable {name} " in warnings[0] + " " and hint in warnings[0]
    run_load(tmp_path, environ={name: "1"})  # loaded again (a release swap): no new warning
    assert len([r for r in caplog.records if name + " " in r.getMessage() + " "]) == 1


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (False, False)),
        ({"RELAUNCH_VERBOSE": "1"}, (True, False)),
        ({"RELAUNCH_QUIET": "yes"}, (False, True)),
        ({"RELAUNCH_VERBOSE": "0", "RELAUNCH_QUIET": "true"}, (False, True)),
    ],
)
def test_verbose_and_quiet_variables(
    tmp_path: Path, environ: dict[str, str], expected: tuple[bool, bool]
) -> None:
    assert noise_from_env(environ) == expected
    assert run_load(tmp_path, environ=environ) == Settings()  # known: no warning, no error


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RELAUNCH_VERBOSE": "loud"}, "RELAUNCH_VERBOSE: expected true or false"),
        ({"RELAUNCH_VERBOSE": "1", "RELAUNCH_QUIET": "1"}, "cannot both be set"),
    ],
)
def test_verbose_and_quiet_mistakes(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        noise_from_env(environ)


# --- every number is finite and in its range ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("grace", float("inf")),
        ("grace", 1e300),
        ("grace", float("nan")),
        ("grace", -1.0),
        ("settle", 99999999999),
        ("settle", -1),
        ("settle_max", 10**20),
        ("poll_interval", float("inf")),
        ("poll_interval", 0.0),
        ("poll_interval", float("-inf")),
        ("preflight_timeout", -5.0),
        ("preflight_timeout", float("nan")),
    ],
)
def test_numbers_out_of_range_from_the_command_line(
    tmp_path: Path, name: str, value: float
) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError, match=f"^{flag}: .* is out of range \\(") as info:
        run_load(tmp_path, cli={name: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RELAUNCH_SETTLE_MAX", "100000000000000000000"),
        ("RELAUNCH_GRACE", "inf"),
        ("RELAUNCH_GRACE", "nan"),
        ("RELAUNCH_POLL_INTERVAL", "1e400"),
        ("RELAUNCH_PREFLIGHT_TIMEOUT", "-5"),
    ],
)
def test_numbers_out_of_range_from_the_environment(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: .* is out of range"):
        run_load(tmp_path, environ={variable: value})


@pytest.mark.parametrize(
    "line", ["grace = inf", "grace = nan", "grace = 1e300", "settle-max = 99999999999999"]
)
def test_numbers_out_of_range_from_pyproject(tmp_path: Path, line: str) -> None:
    path = write_pyproject(tmp_path, f"[tool.relaunch]\n{line}\n")
    key = line.split(" ")[0]
    with pytest.raises(ConfigError, match=f"^{path}: \\[tool.relaunch\\] {key}: .* out of range"):
        run_load(tmp_path, pyproject=path)


def test_every_number_option_has_a_range_and_its_ends_are_accepted(tmp_path: Path) -> None:
    numbers = [o for o in OPTIONS if o.kind in ("int", "float")]
    assert numbers and all(o.name in NUMBERS for o in numbers)
    for option in numbers:
        bounds = NUMBERS[option.name]
        assert bounds.low <= option.default <= bounds.high
        for value in (bounds.low, bounds.high):
            kind = int if option.kind == "int" else float
            cli = {option.name: kind(value)}
            if option.name == "settle":
                cli["settle_max"] = NUMBERS["settle_max"].high
            if option.name == "settle_max":
                cli["settle"] = 0
            assert getattr(run_load(tmp_path, cli=cli), option.name) == value
    check_number("port", 0, "--port")
    with pytest.raises(ConfigError, match="--workers: 0 is out of range"):
        check_number("workers", 0, "--workers")


def test_non_utf8_pyproject_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(b"[tool.relaunch]\nwatch = ['\xff\xfe']\n")
    with pytest.raises(ConfigError, match="is not valid TOML: not UTF-8"):
        run_load(tmp_path, pyproject=str(path))
