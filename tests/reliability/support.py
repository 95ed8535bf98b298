"""Helpers shared by the reliability tests: small programs, log parsing, process figures.

Built on tests/e2e/harness.py: every wait is for a line, a file or a process state,
bounded by a timeout.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..e2e.harness import Relaunch, wait_until

PY = sys.executable

Start = Callable[..., Relaunch]

#: A program that imports ``msg`` and says which value it saw, then waits.
APP = """\
import os, sys, time
import msg
print(f"start pid={os.getpid()} value={msg.VALUE}", flush=True)
time.sleep(3600)
"""


def make_app(root: Path, *, app: str = APP, value: int = 1) -> Path:
    (root / "app.py").write_text(app)
    (root / "msg.py").write_text(f"VALUE = {value}\n")
    return root


def replace(path: Path, text: str) -> None:
    """Change a file in one step: write ``.NAME.tmp`` (a built-in ignore), rename it over.

    For the changes that prove a point about something else (the "next reload must be
    #N" checks, the soak): an in-place write is two events (truncate, write) that a
    loaded machine can split across relaunch's quiet period; that has its own test.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def reload_line(number: int | str, names: str = r"msg\.py") -> str:
    """The exact log line of reload ``number`` (or a regex for it) caused by a change of
    ``names`` (a regex)."""
    # A reload forked from a checkpoint says what it kept.
    kept = r"(; kept [\d,]+ modules(, ran [\d,]+)?)?"
    return rf"^\[relaunch\] reload #{number}: {names} changed{kept}; new process up in \d+ ms$"


def wait_watching(r: Relaunch, at_least: int, timeout: float = 20.0) -> None:
    """Wait until -v says relaunch watches ``at_least`` files: from then on, a touched
    file is compared with what the program loaded, not taken as new."""
    pattern = re.compile(r"watching (\d+) file\(s\)")

    def enough() -> bool:
        return any(int(n) >= at_least for n in pattern.findall(r.err.text()))

    try:
        wait_until(enough, timeout=timeout, what=f"relaunch to watch {at_least} file(s)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{r.output()}") from None


def reloads(r: Relaunch) -> int:
    return r.err.count(r"\] reload #\d+:")


def no_traceback_of_relaunch(r: Relaunch) -> None:
    """relaunch's own threads and loop never crashed (the program's tracebacks are fine)."""
    text = r.err.text()
    assert "Exception in thread" not in text, r.output()
    assert not re.search(r'File ".*/relaunch/(watch|run/supervisor|run/child)', text), r.output()


# -- figures of a running process (Linux /proc) -------------------------------------------


@dataclass(frozen=True)
class ProcFigures:
    fds: int
    threads: int
    rss_kb: int

    def __str__(self) -> str:
        return f"fds={self.fds} threads={self.threads} rss={self.rss_kb / 1024:.1f} MB"


def proc_figures(pid: int) -> ProcFigures:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return ProcFigures(fds, threads, rss_kb)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # After the command name: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
