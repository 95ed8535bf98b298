"""Many reloads in a row: relaunch's own descriptors, threads and memory stay flat, and
`relaunch serve` fails no request while clients keep calling it.

The count comes from RELAUNCH_SOAK_RELOADS (default 1000; CI passes 100).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from ..e2e.harness import Relaunch, wait_until
from .support import (
    PY,
    ProcFigures,
    Start,
    make_app,
    proc_figures,
    reload_line,
    reloads,
    replace,
)

RELOADS = int(os.environ.get("RELAUNCH_SOAK_RELOADS", "1000"))
BASELINE_AT = 10
CLIENTS = 4

# Allowed growth between the 10th reload and the last.
MAX_FDS = 5
MAX_THREADS = 3
MAX_RSS_KB = 20 * 1024

WSGI_APP = """\
import msg

def app(environ, start_response):
    body = f"value={msg.VALUE}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def _children(pid: int) -> int:
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                count += len(f.read().split())
        except OSError:
            continue
    return count


def soak(r: Relaunch, msg: Path, served: Callable[[int], None], label: str) -> str:
    """Reload RELOADS times (``served(value)`` returns once the program shows ``value``);
    check relaunch's figures stayed flat; return the summary line."""
    pid = r.proc.pid
    baseline: ProcFigures | None = None
    baseline_children = 0
    started = time.monotonic()
    for number in range(1, RELOADS + 1):
        err_mark = r.err.mark()
        replace(msg, f"VALUE = {number + 1}\n")
        served(number + 1)
        r.expect(reload_line(number), stream="err", start=err_mark)
        if number == BASELINE_AT:
            baseline = proc_figures(pid)
            baseline_children = _children(pid)
    took = time.monotonic() - started
    assert baseline is not None
    at_end = proc_figures(pid)

    def flat() -> bool:
        now = proc_figures(pid)
        return (
            now.fds <= baseline.fds + MAX_FDS
            and now.threads <= baseline.threads + MAX_THREADS
            and now.rss_kb <= baseline.rss_kb + MAX_RSS_KB
            and _children(pid) <= baseline_children
        )

    # Right after a reload, the old run's pipe reader may not have finished yet, and
    # (serve) the old process may still be finishing its requests.
    settled_ok = True
    try:
        wait_until(flat, timeout=10, what="relaunch's figures to settle")
    except AssertionError:
        settled_ok = False
    settled = proc_figures(pid)
    children = _children(pid)
    assert reloads(r) == RELOADS, r.output()[-3000:]
    assert settled_ok, f"grew from {baseline} to {settled} over {RELOADS} reloads"
    assert children <= baseline_children, f"children: {baseline_children} -> {children}"
    return (
        f"soak ({label}): {RELOADS} reloads in {took:.1f} s ({1000 * took / RELOADS:.0f} ms "
        f"each); supervisor after reload #{BASELINE_AT}: {baseline}, {baseline_children} "
        f"children; right after the last: {at_end}; settled: {settled}, {children} children"
    )


@pytest.mark.slow
@pytest.mark.timeout(120 + 2 * RELOADS)
def test_many_reloads_do_not_leak(tmp_path: Path, relaunch: Start) -> None:
    assert RELOADS > BASELINE_AT, "RELAUNCH_SOAK_RELOADS must be more than 10"
    msg = make_app(tmp_path) / "msg.py"
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect(r"value=1$")

    def served(value: int) -> None:
        r.expect(rf"value={value}$")  # each value is new: the whole log may be searched

    print("\n" + soak(r, msg, served, "relaunch run"))


@pytest.mark.slow
@pytest.mark.timeout(120 + 3 * RELOADS)
def test_serve_soak_under_load_fails_no_request(tmp_path: Path, relaunch: Start) -> None:
    assert RELOADS > BASELINE_AT, "RELAUNCH_SOAK_RELOADS must be more than 10"
    msg = make_app(tmp_path, app=WSGI_APP) / "msg.py"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    r = relaunch(["serve", "app:app", "--port", str(port), "--no-browser-reload"])
    url = f"http://127.0.0.1:{port}/"
    latest = [0]
    requests = [0]
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    body = response.read().decode()
                value = int(body.removeprefix("value="))
                with lock:
                    requests[0] += 1
                    latest[0] = max(latest[0], value)
            except (OSError, ValueError) as exc:
                with lock:
                    failures.append(repr(exc))

    wait_until(lambda: _answers(url), what="the app to serve")
    clients = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()

    def served(value: int) -> None:
        wait_until(lambda: latest[0] >= value, what=f"value={value} to be served")

    try:
        summary = soak(r, msg, served, "relaunch serve")
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    print(f"\n{summary}; {requests[0]} requests by {CLIENTS} clients, {len(failures)} failed")
    assert failures == [], failures[:5]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False
