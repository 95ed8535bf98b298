"""In-process mode and the framework integrations: the pure parts, with fakes."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from relaunch.autoreload import wrapper_argv
from relaunch.command import Command, PythonInvocation
from relaunch.inprocess import Monitor, module_files, reexec_argv
from relaunch.integrations import child_environment
from relaunch.integrations.flask import IMPORT_HOOKS_ENV, WERKZEUG_HOOK
from relaunch.run.backoff import Backoff
from relaunch.watch.settle import Settler
from relaunch.watch.watchset import WatchSet

PY = "/usr/bin/python3"


def _module(name: str, file: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = file  # type: ignore[assignment]
    return module


def test_module_files_are_absolute_unique_and_skip_fileless_modules(tmp_path: Path) -> None:
    a = str(tmp_path / "a.py")
    modules = [
        _module("a", a),
        _module("a_again", a),
        _module("builtin", None),
        "not a module",
        _module("compiled", str(tmp_path / "b.pyc")),
        _module("cached", str(tmp_path / "__pycache__" / "c.cpython-311.pyc")),
    ]
    assert module_files(modules) == [
        a,
        str(tmp_path / "b.py"),
        str(tmp_path / "__pycache__" / "c.cpython-311.pyc"),
    ]


def test_reexec_argv_keeps_interpreter_flags_exactly() -> None:
    orig = ["python3", "-u", "-X", "dev", "-W", "error", "-m", "pkg.app", "--port", "8000"]
    assert reexec_argv(orig, PY) == [PY, *orig[1:]]
    assert reexec_argv(["python", "-c", "print(1)", "x"], PY) == [PY, "-c", "print(1)", "x"]


@pytest.mark.parametrize("orig", [[], ["python", "-"], ["python", "-u", "-"]])
def test_reexec_argv_refuses_what_cannot_be_repeated(orig: list[str]) -> None:
    with pytest.raises(ValueError):
        reexec_argv(orig, PY)


class FakeWatcher:
    def __init__(self) -> None:
        self.dirs: set[str] = set()

    def update(self, dirs: set[str], files: set[str]) -> None:
        self.dirs = set(dirs)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _monitor(reloads: list[list[str]]) -> tuple[Monitor, FakeWatcher, Clock]:
    watcher = FakeWatcher()
    clock = Clock()
    monitor = Monitor(
        WatchSet(),
        reloads.append,
        settler=Settler(quiet=0.01, max_wait=1.0),
        watcher=watcher,  # type: ignore[arg-type]
        clock=clock,
        modules=lambda: [],
    )
    return monitor, watcher, clock


def test_monitor_reloads_once_for_a_real_change_and_not_for_a_no_op_save(tmp_path: Path) -> None:
    path = tmp_path / "mod.py"
    path.write_text("A = 1\n")
    reloads: list[list[str]] = []
    monitor, watcher, clock = _monitor(reloads)
    monitor.add([str(path)], "imported by the program")
    monitor.step()
    assert watcher.dirs == {str(tmp_path)}

    # A no-op save: the event arrives, the content is the same, nothing happens.
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    monitor._on_paths([str(path)])
    monitor.step()
    clock.now += 0.02
    monitor.step()
    assert reloads == []

    # Two events for one edit, settled into one reload.
    path.write_text("A = 2\n")
    monitor._on_paths([str(path)])
    monitor._on_paths([str(path), str(tmp_path / "unrelated.txt")])
    monitor.step()
    assert reloads == []  # not settled yet
    clock.now += 0.02
    monitor.step()
    assert reloads == [[str(path)]]
    path.write_text("A = 3\n")
    monitor._on_paths([str(path)])
    clock.now += 0.02
    monitor.step()
    monitor.step()
    assert len(reloads) == 1  # it re-executes once; nothing after


def test_monitor_sees_an_edit_made_before_its_folder_was_watched(tmp_path: Path) -> None:
    path = tmp_path / "late.py"
    path.write_text("A = 1\n")
    reloads: list[list[str]] = []
    monitor, _watcher, clock = _monitor(reloads)
    monitor.add([str(path)], "imported by the program")
    monitor._handle(monitor.events.get_nowait())  # recorded, not yet watched
    path.write_text("A = 22\n")
    monitor.step()  # the refresh compares once more
    clock.now += 0.02
    monitor.step()
    assert reloads == [[str(path)]]


def test_monitor_manual_reload() -> None:
    reloads: list[list[str]] = []
    monitor, _watcher, _clock = _monitor(reloads)
    monitor.request_reload()
    monitor.step()
    assert reloads == [[]]


def test_monitor_backs_off_a_reload_asked_for_right_after_it_started() -> None:
    reloads: list[list[str]] = []
    monitor, _watcher, clock = _monitor(reloads)
    monitor.backoff = Backoff(short_run=1.0, first=0.1, longest=5.0)
    monitor.backoff.current = 0.2  # the execution before this one waited 0.2 s
    monitor.request_reload()
    monitor.step()
    assert reloads == []  # held: 0.4 s from now
    monitor.request_reload()  # asked again meanwhile: still one reload
    clock.now += 0.39
    monitor.step()
    assert reloads == []
    clock.now += 0.02
    monitor.step()
    assert reloads == [[]]


def test_monitor_reloads_at_once_when_asked_after_a_long_run() -> None:
    reloads: list[list[str]] = []
    monitor, _watcher, clock = _monitor(reloads)
    monitor.backoff = Backoff()
    clock.now += 1.0
    monitor.request_reload()
    monitor.step()
    assert reloads == [[]]


MAIN = ["-m", "relaunch.autoreload_main"]  # runs the program as tornado's wrapper does


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["app.py", "--port", "1"], ["run", "--", PY, "-u", *MAIN, "app.py", "--port", "1"]),
        (["-m", "pkg.tests", "-v"], ["run", "--", PY, "-u", *MAIN, "-m", "pkg.tests", "-v"]),
        (["-mpkg", "-v"], ["run", "--", PY, "-u", *MAIN, "-m", "pkg", "-v"]),
        (["app", "-m", "x"], ["run", "--", PY, "-u", *MAIN, "app", "-m", "x"]),
        (
            ["--until-success", "t.py"],
            ["run", "--on-exit", "exit", "--", PY, "-u", *MAIN, "t.py"],
        ),
    ],
)
def test_wrapper_argv_mirrors_tornados_command_line(args: list[str], expected: list[str]) -> None:
    assert wrapper_argv(args, executable=PY, flags=["-u"]) == (expected, False)


def test_wrapper_argv_needs_a_program() -> None:
    message, wrong = wrapper_argv([], executable=PY, flags=[])
    assert wrong and "Either -m or a path" in message[0]


def _python(mode: str, target: str, *args: str) -> Command:
    argv = (PY, target, *args)
    return Command(argv, PY, PythonInvocation(PY, (), mode, target, args))


def _framework_env(command: Command) -> dict[str, str]:
    # Every Python program gets the Werkzeug hook (tested in test_flask_apps.py).
    env = child_environment(command)
    if command.python is not None:
        assert env.pop(IMPORT_HOOKS_ENV) == f"werkzeug.serving={WERKZEUG_HOOK}"
    return env


def test_child_environment_dispatches_per_framework() -> None:
    assert _framework_env(_python("script", "manage.py", "runserver", "8000")) == {
        "RUN_MAIN": "true"
    }
    assert _framework_env(_python("script", "manage.py", "runserver", "--noreload")) == {}
    assert _framework_env(_python("script", "manage.py", "migrate")) == {}
    assert _framework_env(_python("script", "/venv/bin/flask", "run")) == {
        "FLASK_RUN_RELOAD": "false"
    }
    assert _framework_env(_python("module", "flask", "run")) == {"FLASK_RUN_RELOAD": "false"}
    assert _framework_env(_python("script", "app.py")) == {}
    assert _framework_env(Command(("make",), "/usr/bin/make")) == {}


def test_django_supervisor_command_keeps_flags_and_maps_verbosity() -> None:
    pytest.importorskip("django")
    from relaunch.integrations.django.reloader import supervisor_argv

    orig = ["python", "-X", "dev", "manage.py", "runserver", "8000"]
    assert supervisor_argv(orig, PY) == [PY, "-m", "relaunch", "run", "--", PY, *orig[1:]]
    assert supervisor_argv([*orig, "-v", "2"], PY)[4] == "-v"
    assert supervisor_argv([*orig, "--verbosity=0"], PY)[4] == "-q"
    assert supervisor_argv([*orig, "--verbosity", "1"], PY)[4] == "--"


def test_public_watch_stays_a_function_after_the_watch_package_is_imported() -> None:
    import relaunch
    import relaunch.watch.events

    assert callable(relaunch.watch)
    assert isinstance(sys.modules["relaunch.watch"], types.ModuleType)


@pytest.mark.parametrize("interval", [float("inf"), float("nan"), 0.0, -1.0, 1e300])
def test_start_refuses_a_polling_interval_it_cannot_use(interval: float) -> None:
    """A non-finite or absurd interval would kill the watcher thread: no reloads, silently."""
    import relaunch.inprocess as inprocess

    with pytest.raises(ValueError, match=r"check_interval: .* is out of range"):
        inprocess.start(check_interval=interval)
    assert inprocess.monitor() is None


def test_autoreload_environment_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What one wrapped run leaves is what the next starts with: set, changed and removed
    variables, undecodable bytes included; relaunch's own plumbing stays the new run's."""
    from relaunch.autoreload_main import load_environment, save_environment

    path = str(tmp_path / "environ")
    assert load_environment(path) is False
    monkeypatch.setenv("KEPT", "a=b")  # '=' in a value
    monkeypatch.setenv("ODD", os.fsdecode(b"\xff\xfe"))
    monkeypatch.setenv("_RELAUNCH_RUN", "old-token")
    monkeypatch.delenv("ADDED_LATER", raising=False)
    save_environment(path)
    monkeypatch.setenv("KEPT", "changed")
    monkeypatch.setenv("ADDED_LATER", "x")
    monkeypatch.delenv("ODD")
    monkeypatch.setenv("_RELAUNCH_RUN", "new-token")
    assert load_environment(path) is True
    assert os.environ["KEPT"] == "a=b"
    assert os.fsencode(os.environ["ODD"]) == b"\xff\xfe"
    assert "ADDED_LATER" not in os.environ
    assert os.environ["_RELAUNCH_RUN"] == "new-token"
