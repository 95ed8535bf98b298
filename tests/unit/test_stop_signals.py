"""A stop sends the program one SIGTERM, as ``kill`` or a service manager would.

Found by the exactness tests (tests/e2e/test_exact.py): a program whose SIGTERM handler
raises ``SystemExit`` sometimes lost its ``atexit`` handlers, or hung until the grace
period's SIGKILL, because a second SIGTERM raised again in the middle of its exit.
Whether the kernel merges the two signals depends on scheduling (about 1 reload in 30
here), so the end-to-end symptom cannot be a reliable test; which signals are sent can:
the real calls are made, and recorded on the way.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from relaunch import oslayer

pytestmark = pytest.mark.skipif(oslayer.IS_WINDOWS, reason="POSIX signals")


@pytest.fixture
def leader() -> Iterator[subprocess.Popen[bytes]]:
    """A real process leading its own group, as relaunch starts the program."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait(timeout=10)


@pytest.mark.timeout(30)
def test_terminate_group_sends_the_leader_one_sigterm(
    leader: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, int, int]] = []
    real_kill, real_killpg = os.kill, os.killpg

    def kill(pid: int, sig: int) -> None:
        sent.append(("kill", pid, sig))
        real_kill(pid, sig)

    def killpg(pgid: int, sig: int) -> None:
        sent.append(("killpg", pgid, sig))
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "killpg", killpg)
    oslayer.terminate_group(leader.pid)
    monkeypatch.undo()
    assert leader.wait(timeout=10) == -signal.SIGTERM
    # Each call reaches the leader: kill() by its pid, killpg() as a member of its group.
    to_leader = [s for s in sent if s[1] == leader.pid and s[2] == signal.SIGTERM]
    assert len(to_leader) == 1, sent
