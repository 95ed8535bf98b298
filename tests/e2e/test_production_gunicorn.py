"""gunicorn under ``relaunch run``: graceful reloads (HUP; USR2 with --preload) under
load, preflight keeping broken code out, and zero failed requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Relaunch, write
from .prodharness import (
    APP,
    Releases,
    broken_release_is_refused,
    broken_save_is_refused_then_fixed,
    find_server,
    free_port,
    reload_under_load,
    report,
    running_load,
    version_file,
)
from .prodharness import wait_responding as wait_up

GUNICORN = find_server("gunicorn")
pytestmark = pytest.mark.skipif(
    GUNICORN is None, reason="gunicorn is not installed (bash .ci/install-servers.sh)"
)
WORKERS = 4
CLIENTS = 8


def _start(relaunch: Callable[..., Relaunch], tmp_path: Path, port: int, *extra: str) -> Relaunch:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "version.py").write_text(version_file("v0"))
    assert GUNICORN is not None
    proc = relaunch(
        ["run", "--", GUNICORN, "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", *extra, "app:app"],
        cwd=tmp_path,
        # gunicorn >= 23 puts a control socket there: one per test, so tests run in parallel.
        env={"XDG_RUNTIME_DIR": str(tmp_path)},
    )
    assert wait_up(port) == "v0"
    return proc


@pytest.mark.parametrize("preload", [False, True], ids=["hup", "preload-usr2"])
def test_twenty_graceful_reloads_under_load_fail_no_request(
    relaunch: Callable[..., Relaunch], tmp_path: Path, preload: bool
) -> None:
    port = free_port()
    proc = _start(relaunch, tmp_path, port, *(["--preload"] if preload else []))
    how = "USR2" if preload else "HUP"
    with running_load(port, CLIENTS) as load:
        coexist = reload_under_load(
            proc, load, tmp_path / "version.py", 20, rf"reload #\d+: .*graceful .*{how}", CLIENTS
        )
    assert load.failures == [], load.failures[:5]
    assert len(load.snapshot()) > 20 * CLIENTS
    report(f"gunicorn {'--preload (USR2)' if preload else '(HUP)'}", load, 20, coexist)


@pytest.mark.parametrize("preload", [False, True], ids=["hup", "preload-usr2"])
def test_syntax_error_is_reported_never_served_and_the_fix_is_picked_up(
    relaunch: Callable[..., Relaunch], tmp_path: Path, preload: bool
) -> None:
    port = free_port()
    proc = _start(relaunch, tmp_path, port, *(["--preload"] if preload else []))
    with running_load(port, CLIENTS) as load:
        # Without --preload each worker imports the app when it boots, from whatever is
        # on disk then: let all of them boot before breaking the code.
        load.wait_pids(WORKERS)
        broken_save_is_refused_then_fixed(
            proc, load, tmp_path / "version.py", r"reload #\d+: .*graceful", CLIENTS
        )
    assert load.failures == [], load.failures[:5]
    # The broken version never reached a worker: every answer was v0 or v1.
    assert {o.version for o in load.snapshot()} == {"v0", "v1"}


def test_manual_reload_without_change_is_graceful(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    """SIGHUP to relaunch goes through the driver too: a HUP, not a restart."""
    import signal

    port = free_port()
    proc = _start(relaunch, tmp_path, port)
    mark = proc.err.mark()
    proc.signal(signal.SIGHUP)
    proc.expect(
        r"reload #1: manual reload \(SIGHUP\); graceful reload \(HUP\)", stream="err", start=mark
    )
    assert wait_up(port) == "v0"


def test_symlink_swap_is_followed_under_run(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    """Started from `current` (a link to releases/1), relaunch sees the deploy swap the
    link, preflights the new release and HUPs: every worker serves it; a broken release
    is refused while the previous one keeps serving."""
    releases = Releases(tmp_path, ["r1", "r2", None])
    current = releases.current
    port = free_port()
    assert GUNICORN is not None
    proc = relaunch(
        ["run", "--", GUNICORN, "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "app:app"],
        cwd=current,
        env={"XDG_RUNTIME_DIR": str(tmp_path), "PWD": str(current)},
    )
    assert wait_up(port) == "r1"
    with running_load(port, CLIENTS) as load:
        load.wait_pids(WORKERS)
        mark = proc.err.mark()
        releases.swap(2)
        proc.expect(r"current now points to .*releases/2", stream="err", start=mark)
        proc.expect(r"reload #1: .*graceful", stream="err", start=mark, timeout=90)
        since = time.monotonic()
        load.wait_served("r2", count=2 * CLIENTS)
        assert load.served_after(since) == {"r2"}
        # Every new worker has imported r2 before the broken release arrives.
        load.wait_pids(2 * WORKERS)
        broken_release_is_refused(proc, load, releases, 3, "r2", CLIENTS)
        # An edit in the release now running is watched, and reloads.
        mark = proc.err.mark()
        releases.swap(2)
        write(releases.release(2) / "version.py", version_file("r2b"))
        proc.expect(r"reload #2: .*graceful", stream="err", start=mark, timeout=90)
        load.wait_served("r2b", count=2 * CLIENTS)
    assert load.failures == [], load.failures[:5]
