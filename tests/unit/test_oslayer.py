"""Unit tests for relaunch.oslayer: inotify parsing, process trees, mounts, pipes."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch import oslayer
from relaunch.oslayer import descendants, filesystem_type, inotify_parse, unread_bytes

linux_only = pytest.mark.skipif(not oslayer.IS_LINUX, reason="Linux only")


def event(wd: int, mask: int, name: bytes = b"", *, cookie: int = 0) -> bytes:
    # The kernel NUL-terminates and pads names to an alignment boundary.
    raw = name + b"\0" * (16 - len(name) % 16) if name else b""
    return struct.pack("iIII", wd, mask, cookie, len(raw)) + raw


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (event(1, oslayer.IN_MODIFY, b"app.py"), [(1, oslayer.IN_MODIFY, "app.py")]),
        (event(3, oslayer.IN_DELETE_SELF), [(3, oslayer.IN_DELETE_SELF, "")]),
        (event(-1, oslayer.IN_Q_OVERFLOW), [(-1, oslayer.IN_Q_OVERFLOW, "")]),
        (
            event(1, oslayer.IN_CREATE | oslayer.IN_ISDIR, b"sub"),
            [(1, oslayer.IN_CREATE | oslayer.IN_ISDIR, "sub")],
        ),
        # several events in one read, names of various lengths
        (
            event(1, oslayer.IN_MOVED_FROM, b"a.py", cookie=7)
            + event(1, oslayer.IN_MOVED_TO, b"a-much-longer-name.py", cookie=7)
            + event(2, oslayer.IN_IGNORED),
            [
                (1, oslayer.IN_MOVED_FROM, "a.py"),
                (1, oslayer.IN_MOVED_TO, "a-much-longer-name.py"),
                (2, oslayer.IN_IGNORED, ""),
            ],
        ),
        # a name that exactly fills its slot (no NUL) and one of exactly 16 bytes
        (
            struct.pack("iIII", 4, 2, 0, 4) + b"abcd",
            [(4, 2, "abcd")],
        ),
        (event(1, 2, b"0123456789abcdef"), [(1, 2, "0123456789abcdef")]),
        # non-UTF-8 names decode like os.fsdecode (surrogateescape)
        (event(1, 2, b"caf\xe9.py"), [(1, 2, "caf\udce9.py")]),
        # a truncated trailing header is ignored
        (event(1, 2, b"x") + b"\x01\x00\x00", [(1, 2, "x")]),
    ],
)
def test_inotify_parse(data: bytes, expected: list[tuple[int, int, str]]) -> None:
    assert inotify_parse(data) == expected


# --- descendants ------------------------------------------------------------------------


@pytest.fixture
def process_tree() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """sh -> sleep, with the grandchild's pid."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 30 & echo $!; wait"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    try:
        yield proc, grandchild
    finally:
        for pid in (grandchild, proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(timeout=5)
        proc.stdout.close()


@linux_only
def test_descendants(process_tree: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, grandchild = process_tree
    assert descendants(proc.pid) == [grandchild]
    mine = descendants(os.getpid())
    assert proc.pid in mine
    assert grandchild in mine
    assert mine.index(proc.pid) < mine.index(grandchild)
    assert descendants(grandchild) == []


@linux_only
def test_descendants_of_a_missing_process() -> None:
    assert descendants(2**22 + 12345) == []


# --- filesystem_type --------------------------------------------------------------------


@linux_only
def test_filesystem_type_root() -> None:
    fstype = filesystem_type("/")
    assert isinstance(fstype, str)
    assert fstype


@linux_only
def test_filesystem_type_proc() -> None:
    assert filesystem_type("/proc/self") == "proc"


@linux_only
def test_filesystem_type_of_a_missing_path(tmp_path: Path) -> None:
    # The folder holding a path that does not exist yet still has a file system.
    assert isinstance(filesystem_type(f"{tmp_path}/not/there"), str)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("/mnt/plain", "/mnt/plain"),
        ("/mnt/with\\040space", "/mnt/with space"),
        ("/mnt/tab\\011x", "/mnt/tab\tx"),
        ("/mnt/back\\134slash", "/mnt/back\\slash"),
        ("/mnt/end\\", "/mnt/end\\"),
        ("/mnt/short\\04", "/mnt/short\\04"),
    ],
)
def test_unescape_mount_path(field: str, expected: str) -> None:
    assert oslayer._unescape_mount_path(field) == expected


M = "/relaunch-no-such-mnt"


def test_filesystem_type_picks_the_longest_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oslayer, "IS_LINUX", True)
    monkeypatch.setattr(
        oslayer,
        "_linux_mounts",
        lambda: [("/", "ext4"), (f"{M}/nfs", "nfs4"), (f"{M}/nfs/fuse", "fuse.sshfs")],
    )
    # (paths that do not exist, so realpath leaves them alone)
    assert filesystem_type("/relaunch-no-such-dir/x") == "ext4"
    assert filesystem_type(f"{M}/nfs") == "nfs4"
    assert filesystem_type(f"{M}/nfs/a/b") == "nfs4"
    assert filesystem_type(f"{M}/nfsx/a") == "ext4"
    assert filesystem_type(f"{M}/nfs/fuse/x") == "fuse.sshfs"


# --- unread_bytes -----------------------------------------------------------------------


@pytest.mark.skipif(oslayer.IS_WINDOWS, reason="POSIX only")
def test_unread_bytes() -> None:
    r, w = os.pipe()
    try:
        assert unread_bytes(r) == 0
        os.write(w, b"hello")
        assert unread_bytes(r) == 5
        os.write(w, b"x" * 1000)
        assert unread_bytes(r) == 1005
        os.read(r, 1000)
        assert unread_bytes(r) == 5
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.skipif(oslayer.IS_WINDOWS, reason="POSIX only")
def test_unread_bytes_bad_fd() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    # A descriptor that is certainly not open in this process.
    assert unread_bytes(max(r, w) + 100_000) == 0


def test_watch_limit_hint_is_a_sentence() -> None:
    hint = oslayer.watch_limit_hint()
    assert isinstance(hint, str) and len(hint) > 10
    if oslayer.IS_LINUX:
        assert "max_user_watches" in hint or "max_inotify_watches" in hint
        instances = oslayer.watch_limit_hint(OSError(errno.EMFILE, "Too many open files"))
        assert "max_user_instances" in instances or "max_inotify_instances" in instances


@pytest.mark.parametrize(
    ("kind", "user_limit", "namespace_limit", "expected"),
    [
        (
            "watches",
            8192,
            8192,
            "fs.inotify.max_user_watches is 8192 (shared by all of this user's programs); "
            "raise it with 'sudo sysctl fs.inotify.max_user_watches=524288'",
        ),
        (
            "watches",
            192530,
            12,
            "user.max_inotify_watches is 12 (this user namespace's limit); "
            "raise it with 'sudo sysctl user.max_inotify_watches=524288'",
        ),
        (
            "instances",
            128,
            2147483647,
            "fs.inotify.max_user_instances is 128 (shared by all of this user's programs); "
            "raise it with 'sudo sysctl fs.inotify.max_user_instances=1024'",
        ),
        (
            "watches",
            1048576,
            None,
            "fs.inotify.max_user_watches is 1048576 (shared by all of this user's programs); "
            "raise it with 'sudo sysctl fs.inotify.max_user_watches=2097152'",
        ),
        (
            "instances",
            None,
            None,
            "fs.inotify.max_user_instances is unknown (shared by all of this user's programs); "
            "raise it with 'sudo sysctl fs.inotify.max_user_instances=1024'",
        ),
    ],
)
def test_inotify_limit_hint_names_the_limit_hit(
    kind: str, user_limit: int | None, namespace_limit: int | None, expected: str
) -> None:
    hint = oslayer.inotify_limit_hint(kind, user_limit=user_limit, namespace_limit=namespace_limit)
    assert hint == expected


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")
def test_popen_group_kwargs_start_a_new_group() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os; print(os.getpgid(0))"],
        stdout=subprocess.PIPE,
        **oslayer.popen_group_kwargs(die_with_parent=False),
    )
    out, _ = proc.communicate(timeout=10)
    assert int(out) == proc.pid


# -- wait_exit: the exit of a process that may or may not be ours (yet) ---------------------


@pytest.mark.timeout(30)
def test_wait_exit_reaps_our_child_and_gives_its_code() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert oslayer.wait_exit(proc.pid) == 3
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(killed.pid, signal.SIGKILL)
    assert oslayer.wait_exit(killed.pid) == -signal.SIGKILL


@pytest.mark.timeout(30)
def test_wait_exit_of_a_process_its_parent_reaps_is_unknown() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    sys.stdin.read()\n"
            "    os._exit(5)\n"
            "print(pid, flush=True)\n"
            "os.waitpid(pid, 0)\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None and parent.stdin is not None
    grandchild = int(parent.stdout.readline())
    parent.stdin.close()  # the grandchild exits; its parent, not we, reaps it
    assert oslayer.wait_exit(grandchild) is None
    assert parent.wait(timeout=10) == 0


# A subreaper (as relaunch is) whose child, like the zygote, forks a process and exits
# without reaping it: the orphan, zombie or not, is handed over and must be reaped here.
ORPHAN_SCRIPT = """\
import os, sys
from relaunch import oslayer
assert oslayer.make_subreaper()
pid_r, pid_w = os.pipe()
go_r, go_w = os.pipe()
middle = os.fork()
if middle == 0:
    orphan = os.fork()
    if orphan == 0:
        if sys.argv[1] == "exits-first":
            os._exit(7)
        os.read(go_r, 1)
        os._exit(9)
    if sys.argv[1] == "exits-first":
        while oslayer.process_alive(orphan):  # a zombie of ours: not reaped on purpose
            pass
    os.write(pid_w, str(orphan).encode().ljust(16))
    os._exit(0)
orphan = int(os.read(pid_r, 16))
os.waitpid(middle, 0)
os.write(go_w, b"x")
print(oslayer.wait_exit(orphan), flush=True)
"""


@linux_only
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("order", "code"), [("exits-first", "7"), ("exits-after", "9")])
def test_wait_exit_reaps_an_orphan_handed_to_a_subreaper(order: str, code: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT, order],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout.strip() == code, out.stderr


@pytest.mark.skipif(not oslayer.IS_LINUX, reason="file leases are Linux's")
def test_open_for_writing_asks_the_kernel_not_the_events(tmp_path: Path) -> None:
    """A truncating open() empties the file before its IN_MODIFY is queued: whether the
    file is open for writing must come from the kernel's own state."""
    path = tmp_path / "msg.py"
    path.write_text("VALUE = 1\n")
    assert oslayer.open_for_writing(str(path)) is False
    with open(path, "w"):
        assert oslayer.open_for_writing(str(path)) is True
    with open(path):
        assert oslayer.open_for_writing(str(path)) is False  # readers do not count
    assert oslayer.open_for_writing(str(path)) is False
    assert oslayer.open_for_writing(str(tmp_path / "missing.py")) is None
