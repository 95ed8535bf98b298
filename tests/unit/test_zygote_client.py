"""The supervisor's side of the zygote protocol, against a zygote that answers at once.

The partner is a real process speaking the protocol of ``_inside/zygote_server.py``
(not the real zygote: its timing cannot be forced), so a race in the client shows
every time rather than once in a while under load.
"""

from __future__ import annotations

import os
import queue
import sys
import textwrap
from pathlib import Path
from typing import Any

from relaunch.command import Command, PythonInvocation
from relaunch.run.child import Child
from relaunch.run.zygote import ZygoteClient

# Forks a child that exits with code 3 at once, reaps it, and only then answers:
# "forked" and "exit" in one write, as a real zygote may send them for a program that
# exits straight away (the reader thread then handles both before fork() wakes up).
FAST_ZYGOTE = """\
import json, os, socket
sock = socket.socket(fileno=int(os.environ["_RELAUNCH_ZYGOTE_FD"]))
sock.sendall(b'{"ev": "loaded", "modules": 0, "files": []}\\n')
buffer = b""
while True:
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 8)
    if not data:
        break
    for fd in fds:
        os.close(fd)
    buffer += data
    while b"\\n" in buffer:
        line, buffer = buffer.split(b"\\n", 1)
        if json.loads(line).get("op") != "fork":
            continue
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        _pid, status = os.waitpid(pid, 0)
        sock.sendall(
            (json.dumps({"ev": "forked", "pid": pid}) + "\\n"
             + json.dumps({"ev": "exit", "pid": pid, "status": status}) + "\\n").encode()
        )
"""


def test_exit_reported_right_behind_the_fork_reaches_the_child(tmp_path: Path) -> None:
    zygote = tmp_path / "fast_zygote"
    zygote.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAST_ZYGOTE))
    zygote.chmod(0o755)
    python = PythonInvocation(sys.executable, (), "script", "app.py", ())
    events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    client = ZygoteClient(
        python, executable=str(zygote), on_event=events.put, stdin_to_child=False, extra_env={}
    )
    try:
        assert events.get(timeout=20)[2]["ev"] == "loaded"
        command = Command(argv=(sys.executable, "app.py"), executable=sys.executable, python=python)
        for generation in range(1, 6):
            child = Child(command, generation=generation, on_event=events.put, stdin_to_child=False)
            ends = os.pipe()
            try:
                pid = client.fork(child, ends)
            finally:
                for fd in ends:
                    os.close(fd)
            assert pid > 0
            assert child.exited.wait(timeout=20), f"fork {generation}: its exit was lost"
            assert child.returncode == 3
    finally:
        client.close()
