"""``relaunch watch``: acting for a server someone else started, after preflight;
a symlinked release swap followed by a gunicorn started outside relaunch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relaunch.oslayer import IS_LINUX

from .harness import Proc, Relaunch, pid_alive, stop, wait_until, write
from .prodharness import APP, Load, find_server, free_port, report, running_load, version_file
from .prodharness import wait_responding as wait_up

GUNICORN = find_server("gunicorn")


def test_preflight_failure_blocks_the_action_and_the_fix_goes_through(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "web.py").write_text(
        "import helper\n\ndef app(environ, start_response):\n    return []\n"
    )
    marker = tmp_path / "reload.marker"
    marker.write_text("")
    os.utime(marker, (1, 1))
    proc = relaunch(["watch", "--touch", "reload.marker", "--preflight", "web:app"], cwd=tmp_path)
    proc.expect(
        r"watching \d+ file\(s\); on change: touch .* after a preflight of web:app", stream="err"
    )
    write(tmp_path / "helper.py", "X = (\n")
    proc.expect(r"preflight failed: SyntaxError", stream="err")
    proc.expect(r"helper.py changed; preflight failed: not reloading", stream="err")
    assert marker.stat().st_mtime == 1
    write(tmp_path / "helper.py", "X = 2\n")
    proc.expect(r"reload #1: helper.py changed; touched .*reload.marker", stream="err")
    assert marker.stat().st_mtime > 1


def test_exec_gets_the_changed_paths_as_environment_only(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    weird = tmp_path / "a b $(touch pwned) 'q'.txt"
    weird.write_text("1")
    out = tmp_path / "out.txt"
    proc = relaunch(
        ["watch", "-w", str(weird), "--exec", f'printf "%s" "$RELAUNCH_CHANGED_1" > "{out}"'],
        cwd=tmp_path,
    )
    proc.expect(r"watching 1 file\(s\)", stream="err")
    write(weird, "2")
    proc.expect(r"reload #1: .*; ran", stream="err")
    assert out.read_text() == str(weird)
    assert not (tmp_path / "pwned").exists()


# A stand-in server: notes each SIGHUP in a file, prints its pid once it listens for them.
SERVER = """
import os, signal, sys, time
def on_hup(signum, frame):
    with open(sys.argv[1], "a") as f:
        f.write("HUP\\n")
signal.signal(signal.SIGHUP, on_hup)
print(os.getpid(), flush=True)
while True:
    time.sleep(3600)
"""


def _noted(notes: Path) -> int:
    """How many SIGHUPs the stand-in server has noted."""
    return notes.read_text().count("HUP\n") if notes.exists() else 0


@pytest.mark.skipif(not IS_LINUX, reason="process start times come from /proc")
def test_pidfile_is_checked_before_each_signal(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    """The server is signalled; a stale pid file naming another live process is refused
    (that process gets nothing); a pid file the restarted server rewrote is followed."""
    (tmp_path / "app.py").write_text("X = 1\n")
    pidfile = tmp_path / "app.pid"
    got_server, got_other = tmp_path / "server.got", tmp_path / "other.got"
    started: list[Proc] = []

    def start(notes: Path) -> int:
        started.append(Proc([sys.executable, "-c", SERVER, str(notes)], cwd=tmp_path))
        return int(started[-1].expect(r"^(\d+)$").group(1))

    try:
        server = start(got_server)
        pidfile.write_text(f"{server}\n")
        proc = relaunch(["watch", "--pidfile", "app.pid", "-w", "app.py"], cwd=tmp_path)
        proc.expect(rf"will signal process {server}", stream="err")
        proc.expect(r"watching 1 file\(s\)", stream="err")
        write(tmp_path / "app.py", "X = 2\n")
        proc.expect(rf"reload #1: app.py changed; sent SIGHUP to {server}$", stream="err")
        wait_until(lambda: _noted(got_server) == 1, what="the server's HUP")

        # The server dies; its pid file stays behind and (as after a pid reuse) names
        # another live process, one that started after the file was written.
        started[0].close()
        other = start(got_other)
        written = time.time() - 60
        pidfile.write_text(f"{other}\n")
        os.utime(pidfile, (written, written))
        mark = proc.err.mark()
        write(tmp_path / "app.py", "X = 3\n")
        proc.expect(
            rf"error: app.py changed; cannot send SIGHUP .*: pid file .* is stale: it "
            rf"names process {other}, started .* after the pid file was written .*"
            "not signalling it",
            stream="err",
            start=mark,
        )
        assert pid_alive(other) and _noted(got_other) == 0

        # Its owner rewrites the pid file (a restarted server does): now it is trusted.
        pidfile.write_text(f"{other}\n")
        mark = proc.err.mark()
        write(tmp_path / "app.py", "X = 4\n")
        proc.expect(
            rf"reload #2: app.py changed; sent SIGHUP to {other} \(the pid file now names "
            rf"process {other} \(was {server}\)\)",
            stream="err",
            start=mark,
        )
        # One HUP: the refused one was never sent.
        wait_until(lambda: _noted(got_other) == 1, what="the HUP")
    finally:
        for p in started:
            p.close()


@pytest.fixture
def gunicorn_in_release(tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    """gunicorn -w 4 started (not by relaunch) in ``current`` -> releases/1."""
    if GUNICORN is None:
        pytest.skip("gunicorn is not installed (bash .ci/install-servers.sh)")
    for n in (1, 2):
        release = tmp_path / "releases" / str(n)
        release.mkdir(parents=True)
        (release / "app.py").write_text(APP)
        (release / "version.py").write_text(version_file(f"r{n}"))
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "releases" / "1")
    port = free_port()
    pidfile = tmp_path / "gunicorn.pid"
    env = dict(os.environ, PWD=str(current), XDG_RUNTIME_DIR=str(tmp_path))
    with open(tmp_path / "gunicorn.log", "wb") as log:  # shown when the test fails
        server = subprocess.Popen(
            [GUNICORN, "-w", "4", "-b", f"127.0.0.1:{port}", "-p", str(pidfile), "app:app"],
            cwd=current,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        assert wait_up(port) == "r1"
        wait_until(pidfile.exists, what="gunicorn's pid file")
        yield current, port, pidfile
    finally:
        stop(server, timeout=30)


def _swap(current: Path, target: Path) -> None:
    """What a deploy does: a new link renamed over the old one (atomic)."""
    tmp = current.with_name("current.new")
    tmp.symlink_to(target)
    os.replace(tmp, current)


def _all_workers_serve(load: Load, version: str, workers: int = 4) -> None:
    """Wait until ``workers`` different processes have answered with ``version``: each
    new worker has then imported the application. A gunicorn worker imports it when
    it starts, from whatever the link points to then, not when HUP is sent."""
    wait_until(
        lambda: len({o.pid for o in load.snapshot() if o.version == version}) >= workers,
        timeout=60,
        what=f"{workers} workers serving {version}",
    )


def test_symlink_swap_is_followed_with_no_failed_request(
    relaunch: Callable[..., Relaunch], gunicorn_in_release: tuple[Path, int, Path]
) -> None:
    current, port, pidfile = gunicorn_in_release
    try:
        _swaps(relaunch, current, port, pidfile)
    except AssertionError as exc:
        log = (current.parent / "gunicorn.log").read_text(errors="replace")
        raise AssertionError(f"{exc}\n--- gunicorn's log\n{log[-6000:]}") from None


def _swaps(relaunch: Callable[..., Relaunch], current: Path, port: int, pidfile: Path) -> None:
    releases = current.parent / "releases"
    proc = relaunch(
        ["watch", "--pidfile", str(pidfile), "--signal", "HUP", "--preflight", "app:app"],
        cwd=current,
        env={"PWD": str(current)},
    )
    proc.expect(r"watching 2 file\(s\)", stream="err")
    coexist = []
    with running_load(port, 8) as load:
        load.wait_pids(4)
        mark = proc.err.mark()
        _swap(current, releases / "2")
        proc.expect(r"current now points to .*releases/2", stream="err", start=mark)
        # Reported once every old worker is gone and the 4 new ones run.
        proc.expect(r"reload #1: .*sent SIGHUP.*: 4 new worker", stream="err", start=mark)
        load.wait_served("r2", count=32)
        coexist.append(load.coexistence("r1", "r2"))
        # What a deploy must wait for before the next swap: a worker still starting
        # would import the next release unchecked (a broken one stops gunicorn:
        # "Worker failed to boot"). This was the flake of issue 5.
        _all_workers_serve(load, "r2")
        # A broken release is swapped in: never served, r2 keeps answering.
        broken = releases / "3"
        broken.mkdir()
        (broken / "app.py").write_text(APP)
        (broken / "version.py").write_text('V = "r3\n')
        mark = proc.err.mark()
        _swap(current, broken)
        proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark, timeout=60)
        proc.expect(r"not reloading", stream="err", start=mark)
        since = time.monotonic()
        load.wait_served("r2", count=32)
        assert load.served_after(since) == {"r2"}
        # The fix, in place in the new release.
        mark = proc.err.mark()
        write(broken / "version.py", version_file("r3"))
        proc.expect(r"reload #2: .*sent SIGHUP.*: 4 new worker", stream="err", start=mark)
        load.wait_served("r3", count=32)
        coexist.append(load.coexistence("r2", "r3"))
    assert load.failures == [], load.failures[:5]
    assert {o.version for o in load.snapshot()} == {"r1", "r2", "r3"}
    report("gunicorn symlink swaps via relaunch watch", load, 2, coexist)
