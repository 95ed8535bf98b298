"""A tiny process that outlives relaunch just long enough to clean up after it.

The supervisor starts one guardian, in a session of its own (so killing relaunch's
process group does not kill it), writes "+PGID" / "-PGID" lines to its stdin as it
starts and reaps children, and never closes the pipe on purpose. When the pipe hits
EOF the supervisor is gone (even killed with SIGKILL, when nothing of its own can run):
the guardian kills every process group still recorded, every descendant of their
leaders that left the group, and every process whose environment carries this run's
token (``_RELAUNCH_RUN``, inherited by everything the program starts: it finds a
daemon that double-forked and was handed to init), then exits. This covers
non-Python children and grandchildren alike, which the kernel's parent-death signal
(one process) cannot.
"""

from __future__ import annotations

import os
import signal
import sys

from .. import oslayer

__all__ = ["main"]


def main() -> None:
    # The terminal's Ctrl-C and hang-up reach the whole foreground group; the guardian
    # must stay until the supervisor has finished its own graceful stop.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip()
        if len(text) > 1 and text[1:].isdigit():
            pgid = int(text[1:])
            if text[:1] == b"+":
                groups.add(pgid)
            elif text[:1] == b"-":
                groups.discard(pgid)
    token = sys.argv[1] if len(sys.argv) > 1 else ""
    for pid in oslayer.processes_with_env(f"_RELAUNCH_RUN={token}") if token else ():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pgid in groups:
        strays = oslayer.descendants(pgid)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
