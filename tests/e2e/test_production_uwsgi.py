"""uWSGI under ``relaunch run``: chain reloads through the master FIFO (lazy-apps) and
graceful reloads, under load, with preflight keeping broken code out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Relaunch, write
from .prodharness import APP, find_server, free_port, report, running_load, version_file
from .prodharness import wait_responding as wait_up

UWSGI = find_server("uwsgi")
pytestmark = [
    pytest.mark.skipif(
        UWSGI is None, reason="uWSGI is not installed (bash .ci/install-servers.sh)"
    ),
    # Known flaky: a single reset connection was seen in about 1 run in 3 on a loaded
    # 2-core machine, in both tests, and the load test takes 90-200 s. Until the cause
    # is found (issue 5 stays open), these run with `pytest -m slow`, not in CI.
    pytest.mark.slow,
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
    ]
    if lazy:
        args.append("--lazy-apps")
    proc = relaunch(["run", "-w", "app.py", "-w", "version.py", "--", *args], cwd=tmp_path)
    assert wait_up(port) == "v0"
    return proc


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "lazy",
    [
        # ~200 s: uWSGI moves one worker per second of its master loop.
        pytest.param(True, id="chain-lazy-apps"),
        pytest.param(False, id="graceful"),
    ],
)
def test_twenty_reloads_under_load_fail_no_request(
    relaunch: Callable[..., Relaunch], tmp_path: Path, lazy: bool
) -> None:
    port = free_port()
    proc = _start(relaunch, tmp_path, port, lazy)
    coexist: list[float] = []
    with running_load(port, CLIENTS) as load:
        load.wait_pids(WORKERS)
        for i in range(1, 21):
            mark = proc.err.mark()
            write(tmp_path / "version.py", version_file(f"v{i}"))
            kind = "chain reload" if lazy else "graceful reload"
            proc.expect(rf"reload #\d+: .*{kind}", stream="err", start=mark, timeout=90)
            since = time.monotonic()
            load.wait_served(f"v{i}", count=2 * CLIENTS)
            assert load.served_after(since) == {f"v{i}"}
            coexist.append(load.coexistence(f"v{i - 1}", f"v{i}"))
    assert load.failures == [], load.failures[:5]
    report(f"uWSGI {'chain reload (lazy-apps)' if lazy else 'graceful reload'}", load, 20, coexist)


@pytest.mark.timeout(200)
def test_syntax_error_is_reported_never_served_and_the_fix_is_picked_up(
    relaunch: Callable[..., Relaunch], tmp_path: Path
) -> None:
    port = free_port()
    proc = _start(relaunch, tmp_path, port, lazy=True)
    with running_load(port, CLIENTS) as load:
        load.wait_pids(WORKERS)
        mark = proc.err.mark()
        write(tmp_path / "version.py", 'V = "broken\n')
        proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark)
        proc.expect(r"still serving the previous version", stream="err", start=mark)
        since = time.monotonic()
        load.wait_served("v0", count=4 * CLIENTS)
        assert load.served_after(since) == {"v0"}
        mark = proc.err.mark()
        write(tmp_path / "version.py", version_file("v1"))
        proc.expect(r"reload #\d+: .*chain reload", stream="err", start=mark, timeout=90)
        load.wait_served("v1", count=2 * CLIENTS)
    assert load.failures == [], load.failures[:5]
    assert {o.version for o in load.snapshot()} == {"v0", "v1"}
