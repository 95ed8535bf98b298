"""Many reloads in a row: relaunch's own descriptors, threads and memory stay flat.

The count comes from RELAUNCH_SOAK_RELOADS (default 1000; CI passes 100).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ..e2e.harness import wait_until
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

# Allowed growth between the 10th reload and the last.
MAX_FDS = 5
MAX_THREADS = 3
MAX_RSS_KB = 20 * 1024


def _children(pid: int) -> int:
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                count += len(f.read().split())
        except OSError:
            continue
    return count


@pytest.mark.slow
@pytest.mark.timeout(120 + 2 * RELOADS)
def test_many_reloads_do_not_leak(tmp_path: Path, relaunch: Start) -> None:
    assert RELOADS > BASELINE_AT, "RELAUNCH_SOAK_RELOADS must be more than 10"
    msg = make_app(tmp_path) / "msg.py"
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect(r"value=1$")
    pid = r.proc.pid
    baseline: ProcFigures | None = None
    baseline_children = 0
    started = time.monotonic()
    for number in range(1, RELOADS + 1):
        out_mark, err_mark = r.out.mark(), r.err.mark()
        replace(msg, f"VALUE = {number + 1}\n")
        r.expect(rf"value={number + 1}$", start=out_mark)
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
        )

    # Right after a reload, the old run's pipe reader may not have finished yet.
    settled_ok = True
    try:
        wait_until(flat, timeout=10, what="relaunch's figures to settle")
    except AssertionError:
        settled_ok = False
    settled = proc_figures(pid)
    children = _children(pid)
    print(
        f"\nsoak: {RELOADS} reloads in {took:.1f} s ({1000 * took / RELOADS:.0f} ms each); "
        f"supervisor after reload #{BASELINE_AT}: {baseline}, {baseline_children} children; "
        f"right after the last: {at_end}; settled: {settled}, {children} children"
    )
    assert reloads(r) == RELOADS, r.output()[-3000:]
    assert settled_ok, f"grew from {baseline} to {settled} over {RELOADS} reloads"
    assert children <= baseline_children, f"children: {baseline_children} -> {children}"
