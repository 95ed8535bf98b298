"""relaunch.integrations.mod_wsgi: mod_wsgi-express argv, the driver's choices, the
stale mark, the group's shared preflight verdict, start() outside a daemon process."""

from __future__ import annotations

import logging
import os
import sys
import types
from pathlib import Path

import pytest

from relaunch.command import Command, PythonInvocation
from relaunch.integrations import mod_wsgi
from relaunch.integrations.mod_wsgi import express as express_driver
from relaunch.integrations.mod_wsgi import mark_stale, unmark_stale
from relaunch.integrations.mod_wsgi.express import (
    EmbeddedDriver,
    ExpressOptions,
    ModWsgiDriver,
    driver_for,
    express_argv,
    module_file,
    parse_express_args,
)
from relaunch.preflight import AppSpec, PreflightResult
from relaunch.run.drivers import NotReloaded

EXPRESS = "/venv/bin/mod_wsgi-express"


def express(*args: str, target: str = EXPRESS) -> Command:
    invocation = PythonInvocation("/venv/bin/python", (), "script", target, tuple(args))
    return Command((target, *args), target, invocation)


# -- mod_wsgi-express's argv ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "entry"),
    [
        (["start-server", "app.wsgi"], "app.wsgi"),
        (["start-server", "app.wsgi", "--port", "8000"], "app.wsgi"),
        (["start-server", "--port", "8000", "app.wsgi"], "app.wsgi"),
        (["start-server", "--port=8000", "app.wsgi"], "app.wsgi"),
        # flags take no value: the script after one is the positional
        (["start-server", "--log-to-terminal", "app.wsgi"], "app.wsgi"),
        (["start-server", "--log-to-term", "app.wsgi"], "app.wsgi"),  # a prefix, as optparse
        # options with two values
        (["start-server", "--url-alias", "/static", "static", "app.wsgi"], "app.wsgi"),
        (["start-server", "--setenv", "A", "1", "app.wsgi", "--threads", "1"], "app.wsgi"),
        # --entry-point wins over the positional, as in mod_wsgi-express
        (["start-server", "other.wsgi", "--entry-point", "app.wsgi"], "app.wsgi"),
        (["start-server", "--entry-point=app.wsgi"], "app.wsgi"),
        (["start-server", "--port", "8000", "--", "--odd.wsgi"], "--odd.wsgi"),
        (["start-server", "--port", "8000"], None),
    ],
)
def test_the_entry_point_is_found_as_optparse_would(args: list[str], entry: str | None) -> None:
    assert parse_express_args(args).entry_point == entry


def test_the_options_the_driver_needs_are_read() -> None:
    options = parse_express_args(
        [
            "start-server", "--application-type", "module", "--entry-point", "site.wsgi",
            "--callable-object", "app", "--work", "srv", "--python-path", "lib",
            "--python-path=vendor", "--processes", "4", "--reload-on-changes",
        ]
    )  # fmt: skip
    assert options == ExpressOptions(
        command="start-server",
        entry_point="site.wsgi",
        application_type="module",
        callable_object="app",
        working_directory="srv",
        python_paths=("lib", "vendor"),
        processes=4,
        reload_on_changes=True,
    )
    assert options.paths("/base") == ["/base/srv", "/base/lib", "/base/vendor"]
    assert options.app_spec("/base") == AppSpec("module", "site.wsgi", "app")


def test_a_script_spec_is_made_absolute_from_the_working_folder_of_relaunch() -> None:
    options = parse_express_args(["start-server", "sub/app.wsgi"])
    assert options.app_spec("/srv") == AppSpec("script", "/srv/sub/app.wsgi", "application")
    assert options.paths("/srv") == ["/srv"]


def test_unknown_options_are_kept_and_named_when_no_entry_point_is_left() -> None:
    # An option this table does not know is taken to have a value (most do): here it
    # swallows the script, and the error says so.
    options = parse_express_args(["start-server", "--brand-new-flag", "app.wsgi"])
    assert options.unknown == ("--brand-new-flag",)
    why = options.unsupported()
    assert why is not None
    assert "--entry-point" in why and "--brand-new-flag" in why


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--disable-reloading"], "--disable-reloading"),
        (["--embedded-mode"], "--embedded-mode"),
        (["--setup-only"], "--setup-only"),
        (["--application-type", "paste"], "paste"),
        (["--application-type", "static"], "static"),
    ],
)
def test_what_a_touch_cannot_reload_is_refused_with_the_reason(
    extra: list[str], reason: str
) -> None:
    why = parse_express_args(["start-server", "app.wsgi", *extra]).unsupported()
    assert why is not None and reason in why


def test_a_plain_script_is_supported() -> None:
    assert parse_express_args(["start-server", "app.wsgi"]).unsupported() is None


def test_express_argv_recognises_only_mod_wsgi_express() -> None:
    assert express_argv(express("start-server", "app.wsgi")) == [
        EXPRESS,
        "start-server",
        "app.wsgi",
    ]
    assert express_argv(express("start-server", target="/venv/bin/gunicorn")) is None
    assert express_argv(Command(("apachectl", "start"), "/usr/sbin/apachectl")) is None


# -- driver_for --------------------------------------------------------------------------


def test_driver_for_a_supported_command(tmp_path: Path) -> None:
    driver = driver_for(express("start-server", "app.wsgi", "--port", "8000"), watch=False)
    assert isinstance(driver, ModWsgiDriver)
    assert driver.name == "mod_wsgi"
    assert driver.python == "/venv/bin/python"
    assert driver.monitor is None  # watch=False: no thread


def test_driver_for_other_commands_and_subcommands_is_none() -> None:
    assert driver_for(express("setup-server", "app.wsgi"), watch=False) is None
    assert driver_for(express("module-config"), watch=False) is None
    assert driver_for(Command(("ls",), "/bin/ls"), watch=False) is None


def test_driver_for_an_unsupported_setup_falls_back_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="relaunch"):
        paste = express("start-server", "app.wsgi", "--application-type", "paste")
        driver = driver_for(paste, watch=False)
    assert driver is None
    assert "paste" in caplog.text
    assert "restarts Apache" in caplog.text


@pytest.mark.parametrize("extra", [[], ["--disable-reloading"]])
def test_embedded_mode_gets_the_graceful_apache_restart_driver(extra: list[str]) -> None:
    driver = driver_for(express("start-server", "app.wsgi", "--embedded-mode", *extra), watch=False)
    assert isinstance(driver, EmbeddedDriver)
    assert driver.reload_how() == "graceful Apache restart (SIGUSR1)"
    # Still nothing to reload without a script, in embedded mode too.
    assert driver_for(express("start-server", "--embedded-mode"), watch=False) is None


def test_module_file_is_found_among_the_imported_files() -> None:
    files = ["/s/site/__init__.py", "/s/site/wsgi.py", "/s/app.py", "/s/pkg/__init__.py"]
    assert module_file("site.wsgi", files) == "/s/site/wsgi.py"
    assert module_file("app", files) == "/s/app.py"
    assert module_file("pkg", files) == "/s/pkg/__init__.py"
    assert module_file("missing", files) is None


# -- the driver's reload, with a real preflight (this interpreter) ----------------------


def _driver(tmp_path: Path, script: str) -> tuple[ModWsgiDriver, Path]:
    (tmp_path / "app.wsgi").write_text(script)
    options = parse_express_args(["start-server", "app.wsgi"])
    return ModWsgiDriver(options, sys.executable, cwd=str(tmp_path)), tmp_path / "app.wsgi"


GOOD = "def application(environ, start_response):\n    return [b'ok']\n"


def test_a_passing_preflight_touches_the_script(tmp_path: Path) -> None:
    driver, script = _driver(tmp_path, GOOD)
    os.utime(script, ns=(1_000_000_000, 1_000_000_000))
    done = driver.act([str(script)])
    assert isinstance(done, str) and not isinstance(done, NotReloaded)
    assert "preflight ok" in done and "touched app.wsgi" in done
    assert script.stat().st_mtime_ns > 1_000_000_000


def test_a_failing_preflight_touches_nothing(tmp_path: Path) -> None:
    driver, script = _driver(tmp_path, "def application(:\n")
    os.utime(script, ns=(1_000_000_000, 1_000_000_000))
    done = driver.act([str(script)])
    assert isinstance(done, NotReloaded)
    assert "SyntaxError" in done and "still serving the previous version" in done
    assert script.stat().st_mtime_ns == 1_000_000_000


def test_a_change_heard_twice_reloads_once(tmp_path: Path) -> None:
    driver, _script = _driver(tmp_path, GOOD)
    (tmp_path / "lib.py").write_text("X = 1\n")
    lib = str(tmp_path / "lib.py")
    first = driver.act([lib])
    assert "touched" in str(first)
    assert driver.act([lib]) is express_driver._ALREADY  # the same content: nothing to do
    (tmp_path / "lib.py").write_text("X = 2\n")
    assert "touched" in str(driver.act([lib]))


def test_without_preflight_a_broken_app_is_still_touched(tmp_path: Path) -> None:
    (tmp_path / "app.wsgi").write_text("raise RuntimeError('boom')\n")
    options = parse_express_args(["start-server", "app.wsgi"])
    driver = ModWsgiDriver(options, sys.executable, cwd=str(tmp_path), preflight=False)
    assert "touched app.wsgi" in str(driver.act([]))


# -- in the daemon process ---------------------------------------------------------------


def test_mark_stale_resets_what_mod_wsgi_compares_and_unmark_restores_it() -> None:
    script = types.SimpleNamespace(__mtime__=1_700_000_000_123_456)
    handler = types.SimpleNamespace(__mtime__=1_700_000_000_000_001)
    other = types.SimpleNamespace(__mtime__=5)  # not mod_wsgi's
    modules = {"_mod_wsgi_abc": script, "_mod_wsgi_def": handler, "app": other}
    previous = mark_stale(modules)
    assert previous == {
        "_mod_wsgi_abc": 1_700_000_000_123_456,
        "_mod_wsgi_def": 1_700_000_000_000_001,
    }
    assert script.__mtime__ == 0 and handler.__mtime__ == 0 and other.__mtime__ == 5
    unmark_stale(previous, modules)
    assert script.__mtime__ == 1_700_000_000_123_456
    assert handler.__mtime__ == 1_700_000_000_000_001


def test_mark_stale_with_nothing_to_mark() -> None:
    assert mark_stale({"_mod_wsgi_x": types.SimpleNamespace(), "app": object()}) == {}


def test_unmark_leaves_a_module_mod_wsgi_reloaded_meanwhile() -> None:
    module = types.SimpleNamespace(__mtime__=10)
    previous = mark_stale({"_mod_wsgi_a": module})
    module.__mtime__ = 99  # a new load recorded its own time
    unmark_stale(previous, {"_mod_wsgi_a": module})
    assert module.__mtime__ == 99


def test_the_script_is_the_caller_when_mod_wsgi_loaded_it(tmp_path: Path) -> None:
    path = str(tmp_path / "app.wsgi")
    assert mod_wsgi._find_script({"__name__": "__wsgi__", "__file__": path}) == path
    assert mod_wsgi._find_script({"__name__": "_mod_wsgi_1f", "__file__": path}) == path


def test_start_outside_mod_wsgi_does_nothing_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mod_wsgi, "_said_why_not", False)
    monkeypatch.setattr(mod_wsgi, "_process_group", lambda: None)
    with caplog.at_level(logging.INFO, logger="relaunch"):
        assert mod_wsgi.start() is False
        assert mod_wsgi.start(interval=1.0) is False
    assert caplog.text.count("not in a mod_wsgi daemon process") == 1
    assert mod_wsgi._reloader is None


def test_start_in_embedded_mode_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mod_wsgi, "_said_why_not", False)
    monkeypatch.setattr(mod_wsgi, "_setup_logging", lambda: None)
    monkeypatch.setitem(sys.modules, "mod_wsgi", types.SimpleNamespace(process_group=""))
    with caplog.at_level(logging.INFO, logger="relaunch"):
        assert mod_wsgi.start() is False
    assert "embedded mode" in caplog.text
    assert mod_wsgi._reloader is None


def test_the_pypi_mod_wsgi_package_is_not_a_daemon_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mod_wsgi-express's package has the same name, without process_group.
    monkeypatch.setitem(sys.modules, "mod_wsgi", types.SimpleNamespace(__path__=[]))
    assert mod_wsgi._process_group() is None
    monkeypatch.setitem(sys.modules, "mod_wsgi", types.SimpleNamespace(process_group="g"))
    assert mod_wsgi._process_group() == "g"


def test_track_before_start_keeps_the_path_relative_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mod_wsgi, "_tracked", [])
    mod_wsgi.track("site.cf")
    mod_wsgi.track("site.cf")
    here = os.path.dirname(os.path.abspath(__file__))
    assert mod_wsgi._tracked == [os.path.join(here, "site.cf")]


# -- one preflight per change for the whole daemon process group -------------------------


def _verdicts(tmp_path: Path) -> mod_wsgi._GroupVerdicts:
    verdicts = mod_wsgi._GroupVerdicts("unused")
    verdicts.path = str(tmp_path / "verdicts.json")
    return verdicts


def test_the_group_reuses_a_verdict_for_the_same_files(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path)
    calls: list[int] = []

    def check() -> PreflightResult:
        calls.append(1)
        return PreflightResult(False, "SyntaxError: boom", "Traceback ...", files=("/a.py",))

    first, by_first = verdicts.run(lambda: ["k", 1], check)
    again, by_again = verdicts.run(lambda: ["k", 1], check)
    assert calls == [1]
    assert by_first == by_again == os.getpid()
    assert (again.ok, again.summary, again.output, again.files) == (
        first.ok,
        first.summary,
        first.output,
        first.files,
    )
    verdicts.run(lambda: ["k", 2], check)  # other contents: checked again
    assert calls == [1, 1]


def test_a_verdict_file_others_could_write_is_not_trusted(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path)
    ok = PreflightResult(True, "ok")
    verdicts.run(lambda: ["k"], lambda: ok)
    os.chmod(verdicts.path, 0o666)
    calls: list[int] = []

    def check() -> PreflightResult:
        calls.append(1)
        return ok

    verdicts.run(lambda: ["k"], check)
    assert calls == [1]
