"""Which process a pid file names, checked before relaunch signals it.

A pid names a process only while that process lives: after it exits, the number goes
to the next process started, so a stale pid file can name an unrelated program. At
start relaunch records the identity of the process (its pid and its start time);
before each signal it reads the pid file again and :func:`judge_pidfile` decides:

- the recorded process (same pid, same start time): signal it;
- any other process (a new pid after a restart, or the same pid with another start
  time): only if the pid file was written after that process started, as a server
  writes its own pid file (a stale file predates the process that now has its pid);
  it is then recorded as the server;
- never when the pid file or its folder can be written by everyone (anyone could
  point relaunch at any process), nor when the file belongs to another user than the
  process (root excepted).

Where the start time cannot be known (not Linux) only the permission checks apply.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from .. import oslayer

__all__ = [
    "PIDFILE_SLACK",
    "Identity",
    "NotSignalled",
    "PidTarget",
    "PidfileFacts",
    "Verdict",
    "judge_pid",
    "judge_pidfile",
    "look_at_pidfile",
]

# Process start times are computed from the boot time, which the kernel gives in whole
# seconds and moves when the wall clock is set: a file written just after its process
# started may look a little older than it.
PIDFILE_SLACK = 1.0


@dataclass(frozen=True)
class Identity:
    """One process: its pid and when it started (clock ticks since boot; None where the
    OS cannot tell). ``command`` is for messages only: a process may rewrite it."""

    pid: int
    start: int | None = None
    command: str | None = None

    def describe(self) -> str:
        if not self.command:
            return f"process {self.pid}"
        command = self.command if len(self.command) <= 80 else self.command[:77] + "..."
        return f"process {self.pid} ({command})"

    @classmethod
    def of(cls, pid: int) -> Identity:
        return cls(pid, oslayer.process_start_ticks(pid), oslayer.process_command(pid))


@dataclass(frozen=True)
class PidfileFacts:
    """One look at a pid file and at the process it names (see :func:`look_at_pidfile`).
    None: not known on this platform."""

    path: str
    pid: int
    written: float  # the file's modification time
    file_uid: int | None
    world_writable: bool  # the file itself
    open_folder: str | None  # a folder on the way anyone may write to (not sticky)
    alive: bool
    start: int | None  # the process's start, clock ticks since boot
    started: float | None  # the same as a Unix time
    uid: int | None  # the process's user
    command: str | None = None

    @property
    def identity(self) -> Identity:
        return Identity(self.pid, self.start, self.command)


@dataclass(frozen=True)
class Verdict:
    """Signal ``target``, or (``target`` None) do not, because of ``message``.
    ``unsafe``: refused for the file's permissions, which no restart will fix."""

    target: Identity | None
    message: str = ""
    unsafe: bool = False

    @property
    def ok(self) -> bool:
        return self.target is not None


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def judge_pidfile(
    facts: PidfileFacts, known: Identity | None, *, slack: float = PIDFILE_SLACK
) -> Verdict:
    """Whether to signal the process a pid file names, given the process recorded as
    the server (``known``, None before the first good look). Pure."""
    path = facts.path
    if facts.world_writable:
        return Verdict(None, f"pid file {path} is writable by everyone: not trusting it", True)
    if facts.open_folder is not None:
        return Verdict(
            None,
            f"pid file {path} is in {facts.open_folder}, which everyone may write to "
            "(and is not sticky): anyone could replace the file; not trusting it",
            True,
        )
    if not facts.alive:
        return Verdict(None, f"pid file {path} names process {facts.pid}, which is not running")
    owners = (0, facts.uid)
    if facts.file_uid is not None and facts.uid is not None and facts.file_uid not in owners:
        return Verdict(
            None,
            f"pid file {path} belongs to user {facts.file_uid} but names process "
            f"{facts.pid} of user {facts.uid}: not signalling it",
        )
    if known is not None and known.pid == facts.pid and known.start in (None, facts.start):
        return Verdict(known)
    same = known is not None and known.pid == facts.pid
    # Another process than the one recorded: believable only if the pid file was
    # written after that process started, as a server writes its own pid file.
    if facts.started is not None and facts.written < facts.started - slack:
        if same:
            why = (
                f"process {facts.pid} is not the server relaunch saw at start: its pid "
                "was reused by a process started"
            )
        else:
            why = f"pid file {path} is stale: it names process {facts.pid}, started"
        return Verdict(
            None,
            f"{why} at {_when(facts.started)}, after the pid file was written "
            f"({_when(facts.written)}); not signalling it",
        )
    if known is None:
        return Verdict(facts.identity)
    if same:
        note = f"process {facts.pid} was restarted"
    else:
        note = f"the pid file now names process {facts.pid} (was {known.pid})"
    return Verdict(facts.identity, note)


def judge_pid(current: Identity | None, known: Identity) -> Verdict:
    """Whether ``--pid PID`` still names the process recorded at start. Pure."""
    if current is None:
        return Verdict(None, f"process {known.pid} is not running")
    if known.start is not None and current.start is not None and current.start != known.start:
        return Verdict(
            None,
            f"process {known.pid} is not the one relaunch saw at start: it exited and "
            "its pid was reused; not signalling it",
        )
    return Verdict(known)


def _open_folder(path: str) -> str | None:
    """A folder holding ``path`` (as given, or resolved) that anyone may write to and
    that is not sticky, so anyone could replace the file in it; else None."""
    for folder in dict.fromkeys(
        [os.path.dirname(os.path.abspath(path)), os.path.dirname(os.path.realpath(path))]
    ):
        try:
            mode = os.stat(folder).st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            return folder
    return None


def _read_once(path: str) -> PidfileFacts:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ValueError(f"cannot read pid file {path}: {exc.strerror}") from None
    try:
        # The times, owner and mode of the very file read, not of a later one.
        info = os.fstat(fd)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"pid file {path} holds no pid: {text[:40]!r}")
    pid = int(text)
    return PidfileFacts(
        path=path,
        pid=pid,
        written=info.st_mtime,
        file_uid=info.st_uid,
        world_writable=bool(info.st_mode & stat.S_IWOTH),
        open_folder=_open_folder(path),
        alive=oslayer.process_alive(pid),
        start=oslayer.process_start_ticks(pid),
        started=oslayer.process_start_time(pid),
        uid=oslayer.process_owner(pid),
        command=oslayer.process_command(pid),
    )


def look_at_pidfile(path: str, *, wait: float = 1.0) -> PidfileFacts:
    """Read a pid file and look at the process it names. A server may be rewriting
    the file (gunicorn removes and re-creates it on each HUP): a missing or empty file
    is read again for up to ``wait`` seconds. Raises ValueError."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return _read_once(path)
        except ValueError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


class PidTarget:
    """The server process behind ``--pidfile`` or ``--pid``: recorded once, checked
    before every signal (see the module's docstring)."""

    def __init__(self, *, pidfile: str | None = None, pid: int | None = None) -> None:
        assert (pidfile is None) != (pid is None)
        self.pidfile = pidfile
        self.known: Identity | None = None if pid is None else Identity.of(pid)

    def check(self, *, wait: float = 1.0) -> Verdict:
        """Who to signal now; records a newly trusted server. Raises ValueError when the
        pid file cannot be read (within ``wait`` seconds, see :func:`look_at_pidfile`)."""
        if self.pidfile is None:
            assert self.known is not None
            alive = oslayer.process_alive(self.known.pid)
            return judge_pid(Identity.of(self.known.pid) if alive else None, self.known)
        verdict = judge_pidfile(look_at_pidfile(self.pidfile, wait=wait), self.known)
        if verdict.target is not None:
            self.known = verdict.target
        return verdict


class NotSignalled(ValueError):
    """The pid file or pid did not pass the checks: nothing was sent."""
