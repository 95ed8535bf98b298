"""``relaunch watch``: acting for a server someone else started, after preflight;
a symlinked release swap followed by a gunicorn started outside relaunch."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Relaunch, wait_until, write
from .prodharness import APP, find_server, free_port, report, running_load, version_file
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
    server = subprocess.Popen(
        [GUNICORN, "-w", "4", "-b", f"127.0.0.1:{port}", "-p", str(pidfile), "app:app"],
        cwd=current,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_up(port) == "r1"
        wait_until(pidfile.exists, what="gunicorn's pid file")
        yield current, port, pidfile
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except OSError:
            pass
        server.wait()


def _swap(current: Path, target: Path) -> None:
    """What a deploy does: a new link renamed over the old one (atomic)."""
    tmp = current.with_name("current.new")
    tmp.symlink_to(target)
    os.replace(tmp, current)


# Known flaky on a loaded machine (1 clean-clone CI run in 4): after the fix of a
# refused release, gunicorn's workers kept serving the previous release for 60 s.
# Issue 5 stays open until that is understood; run it with `pytest -m slow`.
@pytest.mark.slow
def test_symlink_swap_is_followed_with_no_failed_request(
    relaunch: Callable[..., Relaunch], gunicorn_in_release: tuple[Path, int, Path]
) -> None:
    current, port, pidfile = gunicorn_in_release
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
        proc.expect(r"reload #1: .*sent SIGHUP", stream="err", start=mark)
        load.wait_served("r2", count=32)
        coexist.append(load.coexistence("r1", "r2"))
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
        proc.expect(r"reload #2: .*sent SIGHUP", stream="err", start=mark)
        load.wait_served("r3", count=32)
        coexist.append(load.coexistence("r2", "r3"))
    assert load.failures == [], load.failures[:5]
    assert {o.version for o in load.snapshot()} == {"r1", "r2", "r3"}
    report("gunicorn symlink swaps via relaunch watch", load, 2, coexist)
