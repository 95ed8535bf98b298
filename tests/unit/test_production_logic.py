from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from relaunch import oslayer
from relaunch.command import Command, PythonInvocation
from relaunch.integrations import driver_for
from relaunch.integrations.gunicorn import GunicornInfo, gunicorn_argv
from relaunch.integrations.uwsgi import parse_uwsgi_args
from relaunch.preflight import AppSpec
from relaunch.production.actions import (
    Action,
    exec_environment,
    follow_rollover,
    parse_signal,
    read_pidfile,
)
from relaunch.production.pidfile import (
    PIDFILE_SLACK,
    Identity,
    PidfileFacts,
    PidTarget,
    judge_pid,
    judge_pidfile,
    look_at_pidfile,
)
from relaunch.production.procs import Rollover
from relaunch.pycache import drop_bytecode
from relaunch.run.drivers import Driver, NotReloaded
from relaunch.run.releases import symlinks_above


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


# --- pid-file identity checks (relaunch watch --pidfile) ----------------------------------

NOW = 1_700_000_000.0


def _facts(**changes: object) -> PidfileFacts:
    base: dict[str, object] = {
        "path": "/run/app.pid",
        "pid": 100,
        "written": NOW + 0.2,  # by the server, just after it started
        "file_uid": 1000,
        "world_writable": False,
        "open_folder": None,
        "alive": True,
        "start": 5000,
        "started": NOW,
        "uid": 1000,
        "command": "gunicorn: master",
    }
    base.update(changes)
    return PidfileFacts(**base)  # type: ignore[arg-type]


SERVER = Identity(100, 5000, "gunicorn: master")


def test_the_recorded_server_is_signalled() -> None:
    first = judge_pidfile(_facts(), None)
    assert first.ok and first.target == SERVER and first.message == ""
    # gunicorn rewrites its pid file on every HUP: a newer file, same process.
    again = judge_pidfile(_facts(written=NOW + 3600), SERVER)
    assert again.target == SERVER and again.message == ""


def test_a_reused_pid_is_refused() -> None:
    # Same pid, another start time, and the file predates that process: the server
    # died and the kernel gave its pid to something else.
    verdict = judge_pidfile(_facts(start=9000, started=NOW + 90, written=NOW + 1), SERVER)
    assert not verdict.ok and not verdict.unsafe
    assert "process 100 is not the server relaunch saw at start" in verdict.message
    assert "pid was reused" in verdict.message


def test_a_restarted_server_is_followed() -> None:
    # systemd restarted it: a new pid, and a pid file written after it started.
    verdict = judge_pidfile(
        _facts(pid=200, start=9000, started=NOW + 90, written=NOW + 90.5), SERVER
    )
    assert verdict.target == Identity(200, 9000, "gunicorn: master")
    assert verdict.message == "the pid file now names process 200 (was 100)"
    # Restarted with the very same pid (rare, possible): the rewritten file says so.
    same = judge_pidfile(_facts(start=9000, started=NOW + 90, written=NOW + 91), SERVER)
    assert same.ok and same.message == "process 100 was restarted"


def test_a_stale_pidfile_is_refused() -> None:
    # At start (nothing recorded yet) and later alike.
    for known in (None, SERVER):
        verdict = judge_pidfile(_facts(pid=300, started=NOW, written=NOW - 3600), known)
        assert not verdict.ok and not verdict.unsafe
        assert "pid file /run/app.pid is stale: it names process 300" in verdict.message
        assert "after the pid file was written" in verdict.message


def test_start_time_slack() -> None:
    # The start time is computed from a boot time in whole seconds: a file written a
    # moment "before" the process started is within the slack.
    assert judge_pidfile(_facts(written=NOW - 0.5), None).ok
    assert not judge_pidfile(_facts(written=NOW - PIDFILE_SLACK - 0.1), None).ok


def test_unsafe_or_foreign_pidfiles_are_refused() -> None:
    verdict = judge_pidfile(_facts(world_writable=True), SERVER)
    assert verdict.unsafe and "writable by everyone" in verdict.message
    verdict = judge_pidfile(_facts(open_folder="/srv/shared"), SERVER)
    assert verdict.unsafe and "/srv/shared" in verdict.message
    # Owned by another user than the process's: not trusted; root's is.
    verdict = judge_pidfile(_facts(file_uid=1001), None)
    assert not verdict.ok and not verdict.unsafe and "belongs to user 1001" in verdict.message
    assert judge_pidfile(_facts(file_uid=0), None).ok
    verdict = judge_pidfile(_facts(alive=False), SERVER)
    assert not verdict.ok and "not running" in verdict.message


def test_without_process_facts_only_the_plain_checks_apply() -> None:
    # Where the OS cannot tell start times and owners (not Linux).
    blind = _facts(start=None, started=None, uid=None, command=None, written=NOW - 3600)
    assert judge_pidfile(blind, None).target == Identity(100)
    assert judge_pidfile(blind, Identity(100)).ok
    assert judge_pidfile(replace(blind, pid=7), Identity(100)).target == Identity(7)
    assert not judge_pidfile(replace(blind, world_writable=True), None).ok


def test_pid_checks() -> None:
    assert judge_pid(Identity(100, 5000), SERVER).target == SERVER
    assert "not running" in judge_pid(None, SERVER).message
    reused = judge_pid(Identity(100, 9000), SERVER)
    assert not reused.ok and "pid was reused" in reused.message


def test_look_at_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    pidfile.chmod(0o644)
    facts = look_at_pidfile(str(pidfile), wait=0)
    assert facts.pid == os.getpid() and facts.alive and not facts.world_writable
    assert facts.written == pidfile.stat().st_mtime
    if oslayer.IS_LINUX:
        assert facts.uid == os.getuid() and facts.start is not None
        assert facts.started is not None and facts.started <= time.time()
    assert judge_pidfile(facts, None).ok
    pidfile.chmod(0o666)
    assert look_at_pidfile(str(pidfile), wait=0).world_writable
    with pytest.raises(ValueError, match="cannot read pid file"):
        look_at_pidfile(str(tmp_path / "missing.pid"), wait=0)
    pidfile.write_text("")
    with pytest.raises(ValueError, match="holds no pid"):
        look_at_pidfile(str(pidfile), wait=0)


def test_open_folder_is_noticed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "app.pid").write_text(f"{os.getpid()}\n")
    assert look_at_pidfile(str(shared / "app.pid"), wait=0).open_folder == str(shared)
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace the file
    assert look_at_pidfile(str(shared / "app.pid"), wait=0).open_folder is None


def test_pid_target_records_and_refuses(tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    target = PidTarget(pidfile=str(pidfile))
    assert target.check().ok and target.known is not None
    assert target.known.pid == os.getpid()
    if oslayer.IS_LINUX:
        # A stale file naming a live process that started after it was written.
        os.utime(pidfile, (time.time() - 10 * 365 * 86400,) * 2)
        target = PidTarget(pidfile=str(pidfile))
        verdict = target.check()
        assert not verdict.ok and "stale" in verdict.message and target.known is None


def test_process_facts_from_the_os() -> None:
    me = os.getpid()
    if oslayer.IS_LINUX:
        ticks = oslayer.process_start_ticks(me)
        assert ticks is not None and ticks == oslayer.process_start_ticks(me)
        started = oslayer.process_start_time(me)
        assert started is not None and time.time() - 3600 * 24 * 365 < started <= time.time()
        assert oslayer.process_owner(me) == os.getuid()
        assert oslayer.process_command(me)
    else:
        assert oslayer.process_start_time(me) is None
    assert oslayer.process_start_ticks(2**22 + 12345) is None


def test_follow_rollover_reports_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from relaunch.production import procs

    states = [{1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4}]  # what successive looks find
    looks = iter(range(10_000))
    monkeypatch.setattr(procs, "children", lambda pid: states[min(next(looks), 3)])
    monkeypatch.setattr(oslayer, "process_alive", lambda pid: True)
    done = follow_rollover(10, {1, 2}, timeout=5)
    assert done.startswith(": 2 new worker(s), every old one finished; old and new side by side")
    assert follow_rollover(10, set(), timeout=5) == ""  # no workers: nothing to wait for
    monkeypatch.setattr(procs, "children", lambda pid: {1, 2})
    assert follow_rollover(10, {1, 2}, timeout=5, appear=0.05) == (
        "; its 2 worker process(es) did not change"
    )
    monkeypatch.setattr(oslayer, "process_alive", lambda pid: False)
    assert follow_rollover(10, {1, 2}, timeout=5) == "; process 10 stopped during the reload"


def test_drop_bytecode(tmp_path: Path) -> None:
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    names = [
        "version.cpython-311.pyc",
        "version.cpython-312.opt-1.pyc",
        "version_two.cpython-311.pyc",
        "app.cpython-311.pyc",
    ]
    for name in names:
        (cache / name).write_bytes(b"")
    drop_bytecode([str(tmp_path / "version.py"), str(tmp_path / "notes.txt")])
    assert sorted(p.name for p in cache.iterdir()) == [
        "app.cpython-311.pyc",
        "version_two.cpython-311.pyc",
    ]
    drop_bytecode([str(tmp_path / "nowhere" / "x.py")])  # no cache folder: nothing to do
