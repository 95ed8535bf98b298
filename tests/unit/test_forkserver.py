"""The fork server's spare (relaunch/_inside/forkserver.py), with real processes: a
fork request is served by a child forked ahead, which runs as a fork made then would;
another op discards the spare (the zygote's preloading changes what it holds)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from relaunch import oslayer

pytestmark = pytest.mark.skipif(not oslayer.CAN_FORK, reason="needs fork()")

FORKSERVER = Path(__file__).parents[2] / "src" / "relaunch" / "_inside" / "forkserver.py"

# The server: STATE is what it holds; an op "set" changes it (as the zygote's preloading
# does). A forked child writes its pid, its parent and STATE to the report pipe, then
# stays until its control pipe closes; one asked to ("write": true) first writes the
# first half of HELD, as a run writes to what it shares with the server. Started with
# "like", the server first forks a process that does the same and stays (the run the
# checkpoint's first spare takes after); with "busy", one that never stops computing.
SERVER = """\
import importlib.util, json, os, socket, sys

spec = importlib.util.spec_from_file_location("forkserver", sys.argv[1])
forkserver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(forkserver)
STATE = {"value": "first"}
HELD = bytearray(range(256)) * (16 << 12)  # 16 MiB written: the spare may copy them

def write_half():
    for i in range(0, len(HELD) // 2, 4096):
        HELD[i] = HELD[i]

def on_op(message):
    STATE["value"] = message["value"]

mode = sys.argv[3]
like = None
if mode in ("like", "busy"):
    gone_r, gone_w = os.pipe()
    like = os.fork()
    if like == 0:
        os.close(gone_w)
        if mode == "busy":
            os.set_blocking(gone_r, False)
            while True:
                try:
                    if not os.read(gone_r, 1):
                        os._exit(0)
                except BlockingIOError:
                    pass
        write_half()
        os.read(gone_r, 1)  # until the server is gone
        os._exit(0)
    os.close(gone_r)
sock = socket.socket(fileno=int(sys.argv[2]))
if like is not None:
    sock.sendall(json.dumps({"ev": "like", "pid": like}).encode() + b"\\n")
server = forkserver.ForkServer(sock, on_op, own_pages=mode != "share", like=like)
forked = server.serve()
if forked is None:
    sys.exit(0)
message, report_w, control_r = forked
if message.get("write"):
    write_half()
os.write(report_w, json.dumps([os.getpid(), os.getppid(), STATE["value"]]).encode())
os.close(report_w)
os.read(control_r, 1)
os._exit(0)
"""


class Server:
    def __init__(self, mode: str = "share") -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(FORKSERVER), str(theirs.fileno()), mode],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self.sock.settimeout(10)
        self.buffer = b""
        self.kept: list[int] = []  # control pipes of the children kept running
        self.like: set[int] = set()  # the run its first spare takes after, if any
        if mode in ("like", "busy"):
            said = self.read()
            assert said["ev"] == "like" and isinstance(said["pid"], int), said
            self.like = {said["pid"]}

    def children(self) -> set[int]:
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with open(path) as f:
            return {int(p) for p in f.read().split()}

    def wait_for_spare(self, *, besides: Collection[int] = ()) -> set[int]:
        """The server's children once one (not in ``besides``) is there: the spare."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = self.children() - set(besides) - self.like
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError("no spare was forked")

    def read(self) -> dict[str, object]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "the fork server went away"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, object] = json.loads(line)
        return message

    def fork(self, *, write: bool = False, stay: bool = False) -> tuple[int, list[object]]:
        """A fork; with ``write``, the child writes half of HELD; with ``write`` or
        ``stay``, it stays (until :meth:`let_go`)."""
        report_r, report_w = os.pipe()
        control_r, control_w = os.pipe()
        message = json.dumps({"op": "fork", "hot": [], "write": write}) + "\n"
        socket.send_fds(self.sock, [message.encode()], [report_w, control_r])
        os.close(report_w)
        os.close(control_r)
        answer = self.read()
        while answer["ev"] == "exit":  # a child forked before has exited
            answer = self.read()
        assert answer["ev"] == "forked", answer
        with os.fdopen(report_r, "rb") as report:
            said: list[object] = json.loads(report.read())
        if write or stay:
            self.kept.append(control_w)
        else:
            os.close(control_w)
        pid = answer["pid"]
        assert isinstance(pid, int)
        return pid, said

    def let_go(self) -> None:
        """Let the children kept running exit."""
        for fd in self.kept:
            os.close(fd)
        self.kept.clear()

    def close(self) -> None:
        self.let_go()
        self.sock.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = Server(getattr(request, "param", "share"))
    try:
        yield s
    finally:
        s.let_go()
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.wait(timeout=10)
        s.sock.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_fork_is_served_by_the_spare_forked_ahead(server: Server) -> None:
    spare = server.wait_for_spare()
    pid, said = server.fork()
    assert pid in spare  # it existed before the request
    assert said == [pid, server.proc.pid, "first"]
    # Another spare follows, then serves the next request; without one, a plain fork.
    spare = server.wait_for_spare(besides={pid})
    second, said = server.fork()
    assert second in spare
    assert second != pid and said == [second, server.proc.pid, "first"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_another_op_discards_the_spare_so_a_fork_holds_the_new_state(server: Server) -> None:
    old = server.wait_for_spare()
    server.sock.sendall(b'{"op": "set", "value": "second"}\n')
    pid, said = server.fork()  # at once: a plain fork, or a spare made after the op
    assert said == [pid, server.proc.pid, "second"]
    assert pid not in old
    deadline = time.monotonic() + 10
    while server.children() & old and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.children() & old  # the old spare is gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_spare_leaves_with_the_server(server: Server) -> None:
    spare = server.wait_for_spare()
    server.close()
    assert server.proc.returncode == 0
    for pid in spare:
        assert not oslayer.process_alive(pid)


# A process holding 32 MiB it wrote forks; the child copies the pages it shares.
OWN_PAGES = """\
import importlib.util, os, sys

spec = importlib.util.spec_from_file_location("forkserver", sys.argv[1])
forkserver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(forkserver)
data = bytearray(range(256)) * (32 << 12)
expected = hash(bytes(data))

def private_dirty():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) << 10

pid = os.fork()
if pid == 0:
    before = private_dirty()
    copied = forkserver.own_pages()
    grew = private_dirty() - before
    same = hash(bytes(data)) == expected
    print(copied >> 20, grew >> 20, same, "ctypes" in sys.modules, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only: elsewhere 0")
def test_a_spare_takes_its_own_copy_of_the_pages_it_shares_unchanged() -> None:
    """own_pages() copies what the fork shares with its parent (its private memory grows
    by the 32 MiB the parent had written), changes none of it, and leaves ctypes, which
    it loads for the call, out of sys.modules."""
    done = subprocess.run(
        [sys.executable, "-c", OWN_PAGES, str(FORKSERVER)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    copied, grew, same, ctypes_loaded = done.stdout.split()
    assert int(copied) >= 32 and int(grew) >= 32, done.stdout
    assert same == "True" and ctypes_loaded == "False"


def private_dirty(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) << 10
    return 0


def wait_private_dirty(pid: int, at_least: int) -> int:
    """The process's private dirty bytes, once at least ``at_least`` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while private_dirty(pid) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # had it gone on copying, what more it copied shows now
    return private_dirty(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("server", ["own"], indirect=True)
def test_the_spare_of_a_server_in_use_owns_what_the_last_fork_wrote(server: Server) -> None:
    """With own_pages (a checkpoint's server), the spare made after a fork copies the
    pages that fork wrote (8 MiB of the server's 16), not the rest (the first spare,
    before any fork, copies nothing), and serves the next fork as a fork made then would."""
    (first,) = server.wait_for_spare()
    assert private_dirty(first) < 4 << 20
    pid, _said = server.fork(write=True)
    (spare,) = server.wait_for_spare(besides={pid})
    owned = wait_private_dirty(spare, 7 << 20)
    assert 7 << 20 <= owned < 12 << 20
    second, said = server.fork()
    assert second == spare and said == [second, server.proc.pid, "first"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("server", ["like"], indirect=True)
def test_the_first_spare_owns_what_the_run_it_takes_after_wrote(server: Server) -> None:
    """Given the process that goes on from where the server was made (a checkpoint's
    run), the first spare copies the pages that process wrote: 8 MiB of 16."""
    (first,) = server.wait_for_spare()
    owned = wait_private_dirty(first, 7 << 20)
    assert 7 << 20 <= owned < 12 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("server", ["busy"], indirect=True)
def test_a_spare_waiting_for_a_busy_run_takes_its_fork_at_once(server: Server) -> None:
    """While the run it takes after still computes, the spare waits to copy; a fork
    request then is the spare's, which has copied nothing."""
    (first,) = server.wait_for_spare()
    time.sleep(0.3)  # well into its wait
    pid, said = server.fork(stay=True)
    assert pid == first and said == [first, server.proc.pid, "first"]
    assert private_dirty(first) < 4 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("server", ["own"], indirect=True)
def test_a_spare_whose_last_fork_is_gone_owns_every_page_it_shares(server: Server) -> None:
    """The last fork's pages cannot be read once it has exited: the spare then copies
    every page it shares with the server (all 16 MiB of HELD)."""
    server.wait_for_spare()
    pid, _said = server.fork()  # exits at once
    deadline = time.monotonic() + 10
    while oslayer.process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    (spare,) = server.wait_for_spare(besides={pid})
    assert wait_private_dirty(spare, 16 << 20) >= 16 << 20
