"""Apache + mod_wsgi (daemon mode, 4 daemon processes) reloaded by ``relaunch watch
--touch app.wsgi --preflight app.wsgi``: the script file is touched only once the new
code imports, so the daemon process group restarts into working code.

Saves here are atomic (rename over): mod_wsgi's daemons re-import lazily, at their
next request after the touch, so one of them may import at any moment, including
in the middle of a non-atomic save of the next edit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Relaunch
from .prodharness import (
    APP,
    find_server,
    free_port,
    report,
    running_load,
    version_file,
    write_atomic,
)
from .prodharness import wait_responding as wait_up

EXPRESS = find_server("mod_wsgi-express")
PROCESSES = 4
CLIENTS = 8

SCRIPT = """\
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from app import application  # noqa: E402
"""


@pytest.fixture
def apache() -> Iterator[tuple[Path, int]]:
    """mod_wsgi-express in daemon mode on a free port, in a folder the daemon user can read."""
    if EXPRESS is None:
        pytest.skip("mod_wsgi-express is not installed (bash .ci/install-servers.sh)")
    if os.geteuid() != 0:
        pytest.skip("these tests run Apache's daemons as nobody, which needs root")
    site = Path(tempfile.mkdtemp(prefix="relaunch-mod-wsgi-", dir="/tmp"))
    site.chmod(0o755)
    (site / "app.py").write_text(APP)
    (site / "version.py").write_text(version_file("v0"))
    (site / "app.wsgi").write_text(SCRIPT)
    for path in site.iterdir():
        path.chmod(0o644)
    port = free_port()
    log = open(site / "apache.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [EXPRESS, "start-server", str(site / "app.wsgi"), "--host", "127.0.0.1",
         "--port", str(port), "--user", "nobody", "--group", "nogroup",
         "--processes", str(PROCESSES), "--threads", "1",
         "--server-root", str(site / "server"), "--log-to-terminal"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_up(port) == "v0"
        yield site, port
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
        log.close()
        # Shown by pytest when the test failed: what Apache said.
        print((site / "apache.log").read_text(errors="replace")[-200000:])
        shutil.rmtree(site, ignore_errors=True)


def _watch(relaunch: Callable[..., Relaunch], site: Path) -> Relaunch:
    assert EXPRESS is not None
    python = os.path.join(os.path.dirname(EXPRESS), "python")
    proc = relaunch(
        ["watch", "--touch", "app.wsgi", "--preflight", "app.wsgi", "--python", python],
        cwd=site,
    )
    proc.expect(r"watching \d+ file\(s\); on change: touch", stream="err")
    return proc


@pytest.mark.timeout(300)
def test_twenty_reloads_under_load_fail_no_request(
    relaunch: Callable[..., Relaunch], apache: tuple[Path, int]
) -> None:
    site, port = apache
    proc = _watch(relaunch, site)
    coexist: list[float] = []
    with running_load(port, CLIENTS) as load:
        for i in range(1, 21):
            mark = proc.err.mark()
            write_atomic(site / "version.py", version_file(f"v{i}"))
            proc.expect(rf"reload #{i}: version.py changed; touched", stream="err", start=mark)
            load.wait_served(f"v{i}", count=4 * CLIENTS)
            coexist.append(load.coexistence(f"v{i - 1}", f"v{i}"))
    assert load.failures == [], load.failures[:5]
    report("Apache mod_wsgi daemon mode (touch)", load, 20, coexist)


@pytest.mark.timeout(200)
def test_syntax_error_is_reported_never_served_and_the_fix_is_picked_up(
    relaunch: Callable[..., Relaunch], apache: tuple[Path, int]
) -> None:
    site, port = apache
    proc = _watch(relaunch, site)
    with running_load(port, CLIENTS) as load:
        load.wait_served("v0", count=CLIENTS)
        mark = proc.err.mark()
        write_atomic(site / "version.py", 'V = "broken\n')
        proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark)
        proc.expect(r"not reloading", stream="err", start=mark)
        since = time.monotonic()
        load.wait_served("v0", count=4 * CLIENTS)
        assert load.served_after(since) == {"v0"}
        write_atomic(site / "version.py", version_file("v1"))
        proc.expect(r"reload #1: version.py changed; touched", stream="err", start=mark)
        load.wait_served("v1", count=4 * CLIENTS)
    assert load.failures == [], load.failures[:5]
    assert {o.version for o in load.snapshot()} == {"v0", "v1"}
