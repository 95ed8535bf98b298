"""Every operating-system-specific call relaunch makes, behind plain functions.

The rest of the package never asks which OS it runs on; it calls these. Linux is
fully supported; macOS and other POSIX systems get everything but file-system type
detection and the parent-death signal; Windows gets cold restarts without process
groups (see the README's platform table).
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "CAN_FORK",
    "HAS_INOTIFY",
    "IS_LINUX",
    "IS_WINDOWS",
    "child_pids",
    "descendants",
    "fd_passing_socket_type",
    "filesystem_type",
    "group_alive",
    "inotify_add_watch",
    "inotify_limit_hint",
    "inotify_open",
    "inotify_parse",
    "inotify_remove_watch",
    "kill_and_reap",
    "kill_group",
    "make_subreaper",
    "open_file_limit",
    "open_for_writing",
    "own_process_group",
    "popen_group_kwargs",
    "process_alive",
    "processes_with_env",
    "reap_group_orphans",
    "receive_with_fd",
    "send_with_fd",
    "terminate_group",
    "unread_bytes",
    "wait_exit",
    "wait_readable",
    "watch_limit_hint",
]

IS_WINDOWS = sys.platform == "win32"
CAN_FORK = hasattr(os, "fork")
IS_LINUX = sys.platform.startswith("linux")

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _load_prctl() -> Any:
    if not IS_LINUX:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _linux_parent_death_setter() -> Callable[[], None] | None:
    prctl = _prctl
    if prctl is None:
        return None

    def set_pdeathsig() -> None:
        # Runs between fork and exec: kept to a single C call.
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    return set_pdeathsig


_set_pdeathsig = _linux_parent_death_setter()


def popen_group_kwargs(*, die_with_parent: bool) -> dict[str, Any]:
    """Keyword arguments for subprocess.Popen that start the child in a new process group.

    With ``die_with_parent`` the kernel kills the child if relaunch itself dies (Linux).
    Python children are guarded by the bootstrap instead, which also reaches grandchildren.
    """
    if IS_WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    setter = _set_pdeathsig if die_with_parent else None
    if setter is None:
        if sys.version_info >= (3, 11):
            return {"process_group": 0}
        return {"preexec_fn": os.setpgrp}

    def preexec() -> None:
        os.setpgrp()
        setter()

    return {"preexec_fn": preexec}


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A group member changed user; what is left is not ours to signal.
        return False
    return True


def _signal_leader_and_group(pid: int, sig: int) -> None:
    # Once the group exists, killpg() reaches the leader too: one signal, as kill or a
    # service manager sends (a second SIGTERM can interrupt a handler's exit midway).
    # A just-forked child may not have made its group yet: then the leader by its pid.
    if _pgid(pid) != pid:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    _signal_group(pid, sig)


def terminate_group(pid: int, *, leader: bool = True) -> None:
    """Ask the process ``pid`` and the group it leads to stop (SIGTERM; CTRL_BREAK on
    Windows). ``leader=False``: ``pid`` is reaped already; only what is left in its group."""
    if IS_WINDOWS:
        if leader:
            try:
                os.kill(pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            except OSError:
                pass
        return
    if leader:
        _signal_leader_and_group(pid, signal.SIGTERM)
    else:
        _signal_group(pid, signal.SIGTERM)


def kill_group(pid: int, *, leader: bool = True) -> None:
    """Kill the process ``pid``, the group it leads and the descendants that left it.
    ``leader=False`` once ``pid`` itself is known to be reaped (its number may be reused):
    only its group and the group's descendants."""
    if IS_WINDOWS:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True)
        return
    strays = [p for p in descendants(pid) if _pgid(p) != pid]
    if leader:
        _signal_leader_and_group(pid, signal.SIGKILL)
    else:
        _signal_group(pid, signal.SIGKILL)
    for stray in strays:
        try:
            os.kill(stray, signal.SIGKILL)
        except OSError:
            pass


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    if IS_WINDOWS:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if IS_LINUX:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except OSError:
            return False
    return True


def make_subreaper() -> bool:
    """Have orphaned descendants reparented to this process instead of init (Linux), so
    a grandchild that left the program's process group (setsid) can still be found."""
    if _prctl is None:
        return False
    return int(_prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def child_pids() -> set[int]:
    """This process's direct children (Linux: /proc/self/task/*/children; empty elsewhere)."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    return pids


def reap_group_orphans(pgid: int) -> None:
    """Collect the exit of members of group ``pgid`` that were orphaned to this process
    (a subreaper): until reaped, a zombie keeps its group alive. The group's leader is
    left alone (whoever started it reaps it)."""
    for pid in child_pids():
        if pid != pgid and _pgid(pid) == pgid:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def kill_and_reap(pid: int) -> None:
    """SIGKILL a stray child (and its group, if it leads one) and collect its exit."""
    if IS_WINDOWS:
        return
    if _pgid(pid) == pid:
        _signal_group(pid, signal.SIGKILL)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _exists(pid: int) -> bool:
    """True while ``pid`` exists in any form, a zombie included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def wait_exit(pid: int) -> int | None:
    """Block until process ``pid`` is gone; its exit code (as ``Popen.returncode``) when
    this process reaped it, None when another one did.

    ``pid`` need not be this process's child: a warm child is the zygote's, and only
    becomes this process's (a subreaper) if the zygote dies first. Then it must be
    reaped here, or its zombie keeps its process group alive; so a zombie that is not
    ours yet is waited for until its parent reaps it or hands it over.
    """
    if IS_WINDOWS:
        return None
    import select

    pidfd = _pidfd(pid)  # readable once the process has exited: no polling while it runs
    delay = 0.001
    try:
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                if not _exists(pid):
                    return None
            if pidfd is not None and not select.select([pidfd], [], [], 0)[0]:
                select.select([pidfd], [], [])
                delay = 0.001
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def group_alive(pgid: int) -> bool:
    """True while any process (zombies included) is left in the group."""
    if IS_WINDOWS:
        return False
    return _signal_group(pgid, 0)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _proc_parents() -> Iterator[tuple[int, int]]:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            yield int(entry), int(fields[1])


def processes_with_env(entry: str) -> list[int]:
    """Processes whose initial environment holds ``entry`` ("NAME=value"; Linux)."""
    needle = entry.encode()
    found: list[int] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux; empty elsewhere)."""
    if not IS_LINUX:
        return []
    children: dict[int, list[int]] = {}
    for child, parent in _proc_parents():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def _unescape_mount_path(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 3 < len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _linux_mounts() -> list[tuple[str, str]]:
    mounts: list[tuple[str, str]] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                if not sep:
                    continue
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mounts.append((_unescape_mount_path(fields[4]), right.split()[0]))
    except OSError:
        pass
    return mounts


def filesystem_type(path: str) -> str | None:
    """The type of the file system holding ``path`` ("ext4", "nfs4", "9p"...), if known."""
    if not IS_LINUX:
        return None
    real = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for mount_point, fstype in _linux_mounts():
        prefix = mount_point.rstrip("/") + "/"
        if (real == mount_point or real.startswith(prefix) or mount_point == "/") and (
            best is None or len(mount_point) > best[0]
        ):
            best = (len(mount_point), fstype)
    return best[1] if best else None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def inotify_limit_hint(kind: str, *, user_limit: int | None, namespace_limit: int | None) -> str:
    """Which inotify limit was hit (``kind``: "watches" or "instances"), its value, and
    how to raise it. Pure. ``user_limit`` is fs.inotify.max_user_KIND (per user, the
    machine's); ``namespace_limit`` is user.max_inotify_KIND, the user namespace's own,
    which applies too, and may be the lower one (a container)."""
    suggested = 524288 if kind == "watches" else 1024
    if namespace_limit is not None and (user_limit is None or namespace_limit < user_limit):
        name = f"user.max_inotify_{kind}"
        value: int | None = namespace_limit
        whose = "this user namespace's limit"
    else:
        name = f"fs.inotify.max_user_{kind}"
        value = user_limit
        whose = "shared by all of this user's programs"
    if value is not None and value >= suggested:
        suggested = value * 2
    shown = "unknown" if value is None else str(value)
    return f"{name} is {shown} ({whose}); raise it with 'sudo sysctl {name}={suggested}'"


def watch_limit_hint(error: OSError | None = None) -> str:
    """The limit on file watches that ``error`` (from :func:`inotify_open` or
    :func:`inotify_add_watch`; None: the watch count) says was hit, its current value,
    and how to raise it: for the log line that says so."""
    if IS_LINUX:
        code = error.errno if error is not None else None
        if code == errno.EMFILE:
            fds, fd_limit = _open_fds(), _open_file_limit()
            # EMFILE is also the process's own open-file limit: say which one it was.
            if fds is not None and fd_limit is not None and fds >= fd_limit - 1:
                return (
                    f"the open-file limit (ulimit -n) is {fd_limit}; raise it with "
                    f"'ulimit -n {fd_limit * 4}' before starting relaunch"
                )
            kind = "instances"
        elif code == errno.ENFILE:
            return "the system-wide limit on open files (fs.file-max) is reached"
        else:
            kind = "watches"
        return inotify_limit_hint(
            kind,
            user_limit=_read_int(f"/proc/sys/fs/inotify/max_user_{kind}"),
            namespace_limit=_read_int(f"/proc/sys/user/max_inotify_{kind}"),
        )
    if sys.platform == "darwin":
        return "raise the limit with 'sudo sysctl kern.maxfiles=...' and 'ulimit -n'"
    return "raise the operating system's limit on watched files"


# --- inotify (Linux) ------------------------------------------------------------------
# relaunch reads inotify directly on Linux: a thread blocked in poll() costs no CPU while
# idle and sees an event the moment it happens. (watchfiles' loop wakes every step: at
# the 5 ms step a 30 ms reload needs, that measured 0.6% of a core while idle.)

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_ONLYDIR = 0x01000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

# IN_MODIFY not yet followed by IN_CLOSE_WRITE is a file still being written: the
# watcher waits for its close. IN_OPEN is left out: readers open files too (the program
# importing its modules), and it cannot tell them from writers.
_WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)


def _load_inotify() -> Any:
    if not IS_LINUX:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


_inotify_libc = _load_inotify()
HAS_INOTIFY = _inotify_libc is not None


def _oserror() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def open_for_writing(path: str) -> bool | None:
    """Whether any process has ``path`` open for writing now; None where that cannot be
    told (not Linux, not the file's owner, a file system without leases).

    Asked of the kernel itself, so unlike an inotify event it cannot lag behind the
    write: a truncating open() changes the file before its IN_MODIFY is queued, and a
    writer descheduled in between shows an empty file that no event says is being
    written. A read lease is refused while the file is open for writing anywhere; one
    granted is given back at once. A writer opening the file meanwhile waits those
    microseconds, and the lease-break signal is SIGURG, which is ignored by default."""
    if not IS_LINUX:
        return None
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            return True if exc.errno in (errno.EAGAIN, errno.EBUSY) else None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def inotify_open() -> int:
    """A new non-blocking inotify descriptor. OSError(EMFILE) when the instance limit is hit."""
    fd = int(_inotify_libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK))
    if fd < 0:
        raise _oserror()
    return fd


def inotify_add_watch(fd: int, directory: str) -> int:
    """Watch one directory (not recursively). OSError(ENOSPC) when the watch limit is hit."""
    wd = int(_inotify_libc.inotify_add_watch(fd, os.fsencode(directory), _WATCH_MASK))
    if wd < 0:
        raise _oserror()
    return wd


def inotify_remove_watch(fd: int, wd: int) -> None:
    _inotify_libc.inotify_rm_watch(fd, wd)


def inotify_parse(data: bytes) -> list[tuple[int, int, str]]:
    """Split a read() of an inotify descriptor into (watch descriptor, mask, name) events."""
    events = []
    offset = 0
    header = struct.Struct("iIII")
    while offset + header.size <= len(data):
        wd, mask, _cookie, length = header.unpack_from(data, offset)
        offset += header.size
        raw = data[offset : offset + length]
        offset += length
        events.append((wd, mask, os.fsdecode(raw.split(b"\0", 1)[0])))
    return events


def unread_bytes(fd: int) -> int:
    """How many bytes wait in a pipe (POSIX FIONREAD); 0 where it cannot be asked."""
    if IS_WINDOWS:
        return 0
    import fcntl
    import termios

    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder)


def wait_readable(fd: int) -> None:
    """Block until a pipe has data or is closed (returns at once where it cannot wait)."""
    if IS_WINDOWS:
        return
    import select

    select.select([fd], [], [])


# --- Process identity (``relaunch watch --pidfile``) -------------------------------------
# A pid alone does not name a process for long: once it exits, the kernel hands the
# number to the next process. The start time tells two holders of one pid apart.

__all__ += [
    "has_epoll_instance",
    "live_children",
    "process_command",
    "process_owner",
    "process_start_ticks",
    "process_start_time",
]


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields 3 and on of /proc/PID/stat (after the command name, which may hold
    spaces and parentheses); None where there is no such process or no /proc."""
    if not IS_LINUX:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22): exact
    and fixed for the process's life, so two processes that held the same pid differ
    here. None where it cannot be known (no such process, not Linux)."""
    fields = _proc_stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, as a Unix time, to compare with file times. Up to a second
    early (the kernel gives the boot time in whole seconds) and it moves when the wall
    clock is set: compare with some slack. None where it cannot be known."""
    ticks = process_start_ticks(pid)
    boot = _boot_time() if ticks is not None else None
    if ticks is None or boot is None:
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_owner(pid: int) -> int | None:
    """The user id ``pid`` runs as (the owner of /proc/PID); None where unknown."""
    if not IS_LINUX:
        return None
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def process_command(pid: int) -> str | None:
    """``pid``'s command line; None where unknown. A process may rewrite it: compare it
    only where the process names itself on purpose (mod_wsgi's daemon processes)."""
    if not IS_LINUX:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    words = [os.fsdecode(w) for w in raw.split(b"\0") if w]
    return " ".join(words) if words else None


def live_children(pid: int) -> set[int]:
    """The live (not zombie) direct children of any process ``pid`` (Linux: /proc;
    empty elsewhere)."""
    found: set[int] = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        fields = _proc_stat_fields(int(name))
        if fields is None or fields[0] == "Z":
            continue
        if int(fields[1]) == pid:
            found.add(int(name))
    return found


def has_epoll_instance(pid: int) -> bool | None:
    """Whether ``pid`` holds an epoll instance (a server that entered its event loop);
    None where that cannot be seen (not Linux, not allowed, no such process)."""
    folder = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(folder)
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"{folder}/{fd}") == "anon_inode:[eventpoll]":
                return True
        except OSError:
            continue
    return False


def fd_passing_socket_type() -> int | None:
    """The kind of Unix socket to hand open sockets to another process over (SCM_RIGHTS,
    with message boundaries kept), or None where there is none: Windows has no
    SCM_RIGHTS, macOS no SOCK_SEQPACKET (it would need length framing over a stream)."""
    if IS_WINDOWS or not hasattr(socket, "send_fds"):
        return None
    kind = getattr(socket, "SOCK_SEQPACKET", None)
    if kind is None or not IS_LINUX:
        return None
    return int(kind)


def send_with_fd(
    sock: socket.socket, data: bytes, fd: int | None = None, *, block: bool = True
) -> None:
    """Send one message, with the open file ``fd`` attached (the receiver gets its own
    copy of it; the caller still owns and must close ``fd``). Raises BlockingIOError
    when ``block`` is false and the receiver's queue is full. ``sock`` must be in
    blocking mode (no timeout: Python would wait for it before every call)."""
    flags = 0 if block else socket.MSG_DONTWAIT
    if fd is None:
        sock.send(data, flags)  # an empty SCM_RIGHTS message is refused (EINVAL)
    else:
        socket.send_fds(sock, [data], [fd], flags)


def receive_with_fd(sock: socket.socket, size: int, *, block: bool) -> tuple[bytes, list[int]]:
    """Receive one message and the files attached to it (the caller owns them).
    Raises BlockingIOError when ``block`` is false and nothing is there yet. ``sock``
    must be in blocking mode (see :func:`send_with_fd`)."""
    flags = 0 if block else socket.MSG_DONTWAIT
    # Not socket.recv_fds: before Python 3.12.? it drops ``flags``.
    fds = array.array("i")
    data, ancillary, _flags, _address = sock.recvmsg(size, socket.CMSG_LEN(4 * fds.itemsize), flags)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def own_process_group() -> int:
    """This process's group id (the supervisor knows a child by its group)."""
    return os.getpgrp() if not IS_WINDOWS else os.getpid()


def open_file_limit() -> int | None:
    """This process's soft limit on open descriptors; None where there is none to read."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


__all__ += ["peer_pid", "private_unix_listener"]


def private_unix_listener(name: str, kind: int, backlog: int) -> tuple[str, str, socket.socket]:
    """A listening Unix socket ``name`` of ``kind`` in a new private folder (mode 0700:
    only this user can reach it); returns (the folder, the socket's path, the socket).
    The caller removes the folder when done. Raises OSError, leaving nothing behind, if
    it cannot."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="relaunch-")
    path = os.path.join(folder, name)
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, path, sock


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a Unix socket, as the kernel knows
    it (Linux SO_PEERCRED); None where it cannot be asked."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    import struct

    try:
        data = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _uid, _gid = struct.unpack("3i", data)
    return int(pid) if pid > 0 else None


__all__ += ["parent_pid"]


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (Linux /proc); None where it cannot be read."""
    fields = _proc_stat_fields(pid)
    if fields is None or len(fields) < 2 or not fields[1].isdigit():
        return None
    return int(fields[1])
