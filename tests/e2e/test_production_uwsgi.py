"""uWSGI under ``relaunch run``: chain reloads through the master FIFO (lazy-apps) and
graceful reloads, under load, with preflight keeping broken code out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relaunch.integrations.uwsgi import UwsgiDriver, parse_uwsgi_args

from .harness import Relaunch
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

UWSGI = find_server("uwsgi")
pytestmark = [
    pytest.mark.skipif(
        UWSGI is None, reason="uWSGI is not installed (bash .ci/install-servers.sh)"
    ),
]
WORKERS = 4
CLIENTS = 8


def _start(relaunch: Callable[..., Relaunch], tmp_path: Path, port: int, lazy: bool) -> Relaunch:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "version.py").write_text(version_file("v0"))
    assert UWSGI is not None
    args = [
        UWSGI,
        "--master",
        "--die-on-term",
        "--master-fifo",
        str(tmp_path / "uwsgi.fifo"),
        "--http-socket",
        f"127.0.0.1:{port}",
        "--processes",
        str(WORKERS),
        "--module",
        "app:app",
        "--disable-logging",
        "--listen",
        "64",
        # Single-threaded uWSGI 2.0 workers can drop a connection they have just
        # accepted when a reload stops them (relaunch warns): the configuration that
        # fails no request has two threads or more.
        "--threads",
        "2",
    ]
    if lazy:
        args.append("--lazy-apps")
    proc = relaunch(["run", "-w", "app.py", "-w", "version.py", "--", *args], cwd=tmp_path)
    assert wait_up(port) == "v0"
    return proc


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("lazy", "reloads"),
    [
        # About 2 s a reload: uWSGI's master sleeps 2 s ("worker respawning too fast")
        # when a worker slot is respawned twice within a second, as back-to-back
        # reloads do.
        pytest.param(True, 12, id="chain-lazy-apps"),
        pytest.param(False, 20, id="graceful"),
    ],
)
def test_reloads_under_load_fail_no_request(
    relaunch: Callable[..., Relaunch], tmp_path: Path, lazy: bool, reloads: int
) -> None:
    port = free_port()
    proc = _start(relaunch, tmp_path, port, lazy)
    kind = "chain reload" if lazy else "graceful reload"
    with running_load(port, CLIENTS) as load:
        load.wait_pids(WORKERS)
        coexist = reload_under_load(
            proc, load, tmp_path / "version.py", reloads, rf"reload #\d+: .*{kind}", CLIENTS
        )
    assert load.failures == [], load.failures[:5]
    name = "chain reload (lazy-apps)" if lazy else "graceful reload"
    report(f"uWSGI {name}", load, reloads, coexist)


@pytest.mark.timeout(120)
def test_syntax_error_is_reported_never_served_and_the_fix_is_picked_up(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    port = free_port()
    proc = _start(relaunch, tmp_path, port, lazy=True)
    with running_load(port, CLIENTS) as load:
        load.wait_pids(WORKERS)
        broken_save_is_refused_then_fixed(
            proc, load, tmp_path / "version.py", r"reload #\d+: .*chain reload", CLIENTS
        )
    assert load.failures == [], load.failures[:5]
    assert {o.version for o in load.snapshot()} == {"v0", "v1"}


def test_single_threaded_workers_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relaunch.integrations.uwsgi")
    UwsgiDriver("uwsgi", parse_uwsgi_args(["--master", "--module", "app:app"]))
    assert "--threads 2" in caplog.text
    caplog.clear()
    UwsgiDriver("uwsgi", parse_uwsgi_args(["--master", "--threads=4", "--module", "app:app"]))
    assert caplog.text == ""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lazy", [True, False], ids=["chain-lazy-apps", "graceful"])
def test_symlink_swap_is_followed(
    relaunch: Callable[..., Relaunch], tmp_path: Path, lazy: bool
) -> None:
    """relaunch and uWSGI started from `current` (a link to releases/1), uWSGI told to
    `--chdir` there: a swap is preflighted and reloaded into; a broken release is
    refused while the previous one keeps serving."""
    releases = Releases(tmp_path, ["r1", "r2", None])
    current = releases.current

    port = free_port()
    assert UWSGI is not None
    args = [UWSGI, "--master", "--die-on-term", "--master-fifo", str(tmp_path / "uwsgi.fifo")]
    args += ["--http-socket", f"127.0.0.1:{port}", "--processes", str(WORKERS)]
    args += ["--threads", "2", "--module", "app:app", "--chdir", str(current)]
    args += ["--disable-logging", *(["--lazy-apps"] if lazy else [])]
    proc = relaunch(["run", "--", *args], cwd=current, env={"PWD": str(current)})
    assert wait_up(port) == "r1"
    with running_load(port, CLIENTS) as load:
        load.wait_pids(WORKERS)
        mark = proc.err.mark()
        releases.swap(2)
        proc.expect(r"current now points to .*releases/2", stream="err", start=mark)
        proc.expect(r"reload #1: ", stream="err", start=mark, timeout=60)
        since = time.monotonic()
        load.wait_served("r2", count=4 * CLIENTS)
        assert load.served_after(since) == {"r2"}
        broken_release_is_refused(proc, load, releases, 3, "r2", CLIENTS)
    assert load.failures == [], load.failures[:5]
