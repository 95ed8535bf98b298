from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from relaunch.command import Command, PythonInvocation
from relaunch.integrations.gunicorn import GunicornInfo, gunicorn_argv
from relaunch.integrations.uwsgi import parse_uwsgi_args
from relaunch.preflight import AppSpec
from relaunch.production.actions import Action, exec_environment, parse_signal, read_pidfile
from relaunch.production.monitor import symlinks_above
from relaunch.production.procs import Rollover
from relaunch.run.drivers import Driver, NotReloaded, driver_for


def _python(target: str, mode: str = "script", *args: str) -> Command:
    return Command(("x",), "/usr/bin/python3", PythonInvocation("python3", (), mode, target, args))


def test_gunicorn_is_recognised_as_a_console_script_or_module() -> None:
    assert gunicorn_argv(_python("/venv/bin/gunicorn", "script", "-w", "2", "app:app")) == [
        "/venv/bin/gunicorn",
        "-w",
        "2",
        "app:app",
    ]
    assert gunicorn_argv(_python("gunicorn", "module", "app:app")) == ["gunicorn", "app:app"]
    assert gunicorn_argv(_python("/srv/app.py")) is None
    assert gunicorn_argv(Command(("gunicorn",), "/bin/gunicorn", None)) is None


def test_driver_for_picks_the_integration() -> None:
    assert driver_for(_python("/venv/bin/gunicorn", "script", "app:app")).name == "gunicorn"
    assert type(driver_for(_python("/srv/app.py"))) is Driver
    uwsgi = Command(("uwsgi", "--master", "-w", "app"), "/venv/bin/uwsgi", None)
    assert driver_for(uwsgi).name == "uwsgi"


def test_not_reloaded_is_a_string() -> None:
    answer = NotReloaded("preflight failed: x")
    assert isinstance(answer, str) and answer == "preflight failed: x"


def test_gunicorn_info_from_probe() -> None:
    info = GunicornInfo.from_probe({"app_uri": "a:b", "preload": True, "workers": 4})
    assert info.preload and info.workers == 4 and info.graceful_timeout == 30.0
    assert GunicornInfo.from_probe({}).workers == 1


def test_uwsgi_options() -> None:
    options = parse_uwsgi_args(
        [
            "--master",
            "--lazy-apps",
            "--master-fifo=/tmp/f",
            "-p",
            "4",
            "--module",
            "app:app",
            "--http-socket",
            ":8000",
            "--pp",
            "src",
            "--chdir",
            "/srv",
            "--die-on-term",
        ]
    )
    assert options.master and options.lazy_apps and options.processes == 4
    assert options.master_fifo == "/tmp/f" and options.pythonpath == ("src",)
    assert options.app_spec("/x") == AppSpec("module", "app", "app")
    options = parse_uwsgi_args(["--wsgi-file", "site.wsgi", "--callable", "app", "--lazy-apps=0"])
    assert not options.lazy_apps and not options.master
    assert options.app_spec("/x") == AppSpec("script", "/x/site.wsgi", "app")
    assert parse_uwsgi_args(["app.ini"]).unknown == ("app.ini",)


def test_rollover_measures_the_overlap() -> None:
    rollover = Rollover(frozenset({1, 2}), want=2, started=0.0)
    assert not rollover.feed({1, 2}, 0.0)
    assert not rollover.feed({1, 2, 3}, 0.1)  # first new worker
    assert not rollover.feed({2, 3, 4}, 0.2)
    assert rollover.feed({3, 4}, 0.35)  # last old worker gone
    assert rollover.coexisted == pytest.approx(0.25)
    assert rollover.new == {3, 4}


def test_signals_and_pidfiles(tmp_path: Path) -> None:
    assert parse_signal("hup") == signal.SIGHUP == parse_signal("SIGHUP") == parse_signal("1")
    with pytest.raises(ValueError):
        parse_signal("NOPE")
    pidfile = tmp_path / "pid"
    pidfile.write_text("123\n")
    assert read_pidfile(str(pidfile)) == 123
    pidfile.write_text("x")
    with pytest.raises(ValueError):
        read_pidfile(str(pidfile))


def test_exec_environment_carries_paths_as_data() -> None:
    weird = '/srv/a b/$(touch pwned)/"q".py'
    env = exec_environment({"PATH": "/bin", "RELAUNCH_CHANGED_9": "stale"}, [weird, "/x.py"])
    assert env["RELAUNCH_CHANGED_1"] == weird and env["RELAUNCH_CHANGED_2"] == "/x.py"
    assert env["RELAUNCH_CHANGED_COUNT"] == "2" and "RELAUNCH_CHANGED_9" not in env
    assert env["RELAUNCH_CHANGED"] == os.pathsep.join([weird, "/x.py"])


def test_exec_action_never_interpolates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    action = Action("exec", command=f'printf %s "$RELAUNCH_CHANGED_1" > {out}')
    weird = str(tmp_path / "a b $(touch pwned) 'q'.py")
    action.perform([weird])
    assert out.read_text() == weird
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_touch_action(tmp_path: Path) -> None:
    target = tmp_path / "app.wsgi"
    target.write_text("")
    os.utime(target, (1, 1))
    Action("touch", path=str(target)).perform([])
    assert target.stat().st_mtime > 1


def test_symlinks_above(tmp_path: Path) -> None:
    (tmp_path / "releases" / "1").mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "1")
    file = tmp_path / "current" / "app.py"
    file.write_text("")
    assert symlinks_above([str(file)]) == {str(tmp_path / "current")}
    assert symlinks_above([str(tmp_path / "releases" / "1" / "app.py")]) == set()
