"""Unit tests for relaunch.watch.events: backend choice per folder, and real events."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relaunch import oslayer
from relaunch.watch import events
from relaunch.watch.events import REMOTE_FILESYSTEMS, Watcher, needs_polling, write_change
from relaunch.watch.settle import CLOSED, MODIFIED, Change

LOGGER = "relaunch.watch.events"


@pytest.mark.parametrize(
    ("fstype", "expected"),
    [
        (None, False),
        ("", False),
        ("ext4", False),
        ("xfs", False),
        ("btrfs", False),
        ("tmpfs", False),
        ("overlay", False),
        ("nfs", True),
        ("nfs4", True),
        ("cifs", True),
        ("smb3", True),
        ("9p", True),
        ("drvfs", True),
        ("vboxsf", True),
        ("virtiofs", True),
        ("fuse", True),
        ("fuseblk", True),
        ("fuse.sshfs", True),
        ("fuse.rclone", True),
        ("fusectl", False),
        ("NFS4", False),  # kernel names are lower case
    ],
)
def test_needs_polling(fstype: str | None, expected: bool) -> None:
    assert needs_polling(fstype) is expected


def test_every_remote_filesystem_needs_polling() -> None:
    for fstype in REMOTE_FILESYSTEMS:
        assert needs_polling(fstype)


class Collector:
    """An on_paths callback that wakes a waiter when a wanted path is reported."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.first: dict[str, float] = {}  # path: when it was first reported (monotonic)
        self.lock = threading.Lock()
        self.wanted: set[str] = set()
        self.seen = threading.Event()

    def __call__(self, paths: list[str]) -> None:
        now = time.monotonic()
        with self.lock:
            self.paths.extend(paths)
            for path in paths:
                self.first.setdefault(path, now)
            if self.wanted & set(paths):
                self.seen.set()

    def reset(self) -> None:
        with self.lock:
            self.paths.clear()
            self.first.clear()
            self.wanted.clear()
            self.seen.clear()

    def expect(self, path: str) -> None:
        with self.lock:
            self.wanted.add(path)
            if path in self.paths:
                self.seen.set()


@pytest.fixture
def make_watcher() -> Iterator[Callable[..., Watcher]]:
    made: list[Watcher] = []

    def make(on_paths: Callable[[list[str]], None], **kwargs: object) -> Watcher:
        watcher = Watcher(on_paths, **kwargs)  # type: ignore[arg-type]
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.close()


def make_dirs(tmp_path: Path, *names: str) -> list[str]:
    out = []
    for name in names:
        (tmp_path / name).mkdir()
        out.append(str(tmp_path / name))
    return out


def test_remote_filesystem_is_polled(
    tmp_path: Path, make_watcher: Callable[..., Watcher], caplog: pytest.LogCaptureFixture
) -> None:
    dirs = make_dirs(tmp_path, "a", "b", "c")
    asked: list[str] = []

    def fstype(path: str) -> str:
        asked.append(path)
        return "nfs4"

    watcher = make_watcher(Collector(), fstype=fstype, poll_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        watcher.update(dirs, [])
        watcher.update(dirs, [])
    assert watcher.poll_dirs == set(dirs)
    assert watcher.event_dirs == set()
    assert watcher.native is None  # nothing needed native events
    warnings = [r for r in caplog.records if r.name == LOGGER and "nfs4" in r.getMessage()]
    assert len(warnings) == 1
    assert "polling" in warnings[0].getMessage()
    assert sorted(asked) == sorted(dirs)  # each folder's type is asked once
    assert "polling" in watcher.describe()


def test_mixed_filesystems(
    tmp_path: Path, make_watcher: Callable[..., Watcher], caplog: pytest.LogCaptureFixture
) -> None:
    local, remote = make_dirs(tmp_path, "local", "remote")
    types = {local: "ext4", remote: "fuse.sshfs"}
    watcher = make_watcher(Collector(), fstype=types.get, poll_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        watcher.update([local, remote], [])
    assert watcher.poll_dirs == {remote}
    if watcher.native_failed is None:
        assert watcher.event_dirs == {local}
    assert any("fuse.sshfs" in r.getMessage() for r in caplog.records)


def test_force_poll(
    tmp_path: Path, make_watcher: Callable[..., Watcher], caplog: pytest.LogCaptureFixture
) -> None:
    dirs = make_dirs(tmp_path, "a", "b")

    def fstype(path: str) -> str:
        raise AssertionError("not asked when polling is forced")

    watcher = make_watcher(Collector(), poll=True, fstype=fstype, poll_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        watcher.update(dirs, [])
    assert watcher.poll_dirs == set(dirs)
    assert watcher.event_dirs == set()
    assert watcher.native is None
    assert not [r for r in caplog.records if r.name == LOGGER]
    assert watcher.describe() == "2 folder(s) by polling every 60s"


def test_nothing_watched(make_watcher: Callable[..., Watcher]) -> None:
    watcher = make_watcher(Collector(), fstype=lambda p: "ext4")
    watcher.update([], [])
    assert watcher.describe() == "nothing"
    assert watcher.poll_dirs == set() and watcher.event_dirs == set()


@pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify")
def test_watch_limit_falls_back_to_polling(
    tmp_path: Path,
    make_watcher: Callable[..., Watcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dirs = make_dirs(tmp_path, "a", "b", "c")

    def refuse(fd: int, directory: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(oslayer, "inotify_add_watch", refuse)
    watcher = make_watcher(Collector(), fstype=lambda p: "ext4", poll_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        watcher.update(dirs, [])
        watcher.update(dirs, [])
    assert watcher.native is not None
    assert watcher.event_dirs == set()
    assert watcher.poll_dirs == set(dirs)
    limit = [r for r in caplog.records if "limit" in r.getMessage()]
    assert len(limit) == 1  # said once
    assert "fs.inotify.max_user_watches" in limit[0].getMessage()
    assert "3 folder(s)" in limit[0].getMessage()


@pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify")
def test_watch_limit_partial(
    tmp_path: Path,
    make_watcher: Callable[..., Watcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ok, full = make_dirs(tmp_path, "ok", "full")
    real = oslayer.inotify_add_watch

    def limited(fd: int, directory: str) -> int:
        if directory == full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, directory)

    monkeypatch.setattr(oslayer, "inotify_add_watch", limited)
    watcher = make_watcher(Collector(), fstype=lambda p: "ext4", poll_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        watcher.update([ok, full], [])
    assert watcher.event_dirs == {ok}
    assert watcher.poll_dirs == {full}
    assert any("fs.inotify.max_user_watches" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify")
def test_native_backend_cannot_start(
    tmp_path: Path,
    make_watcher: Callable[..., Watcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dirs = make_dirs(tmp_path, "a")

    def no_instances() -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(oslayer, "inotify_open", no_instances)
    watcher = make_watcher(Collector(), fstype=lambda p: "ext4", poll_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        watcher.update(dirs, [])
    assert watcher.native is None
    assert watcher.native_failed is not None
    assert watcher.poll_dirs == set(dirs)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 1
    assert "cannot start native file events" in messages[0]


def test_vanished_folder_is_not_an_error(
    tmp_path: Path, make_watcher: Callable[..., Watcher]
) -> None:
    watcher = make_watcher(Collector(), fstype=lambda p: "ext4", poll_interval=60)
    watcher.update([str(tmp_path / "never-existed")], [])  # must not raise


def _write_and_wait(tmp_path: Path, watcher: Watcher, collector: Collector) -> str:
    target = tmp_path / "app.py"
    target.write_text("x = 1\n")
    watcher.update([str(tmp_path)], [str(target)])
    collector.expect(str(target))
    target.write_text("x = 22\n")
    assert collector.seen.wait(5), f"no event for {target}; got {collector.paths}"
    return str(target)


@pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify")
def test_real_native_events(tmp_path: Path, make_watcher: Callable[..., Watcher]) -> None:
    collector = Collector()
    watcher = make_watcher(collector, fstype=lambda p: "ext4")
    target = _write_and_wait(tmp_path, watcher, collector)
    assert watcher.event_dirs == {str(tmp_path)}
    assert watcher.poll_dirs == set()
    assert "inotify events" in watcher.describe()
    # a new file in the folder is reported too
    new = tmp_path / "new.py"
    collector.seen.clear()
    collector.expect(str(new))
    new.write_text("")
    assert collector.seen.wait(5)
    assert target in collector.paths


@pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify")
def test_one_folder_watched_by_two_names_keeps_its_watch(
    tmp_path: Path, make_watcher: Callable[..., Watcher]
) -> None:
    """inotify gives one folder one watch, whatever name it was added by: a folder
    watched under two names (a symlinked release and its target) stays watched when
    one name is dropped, and its events come under each name still watched."""
    (tmp_path / "releases" / "r1").mkdir(parents=True)
    real = tmp_path / "releases" / "r1"
    link = tmp_path / "current"
    link.symlink_to(real)
    collector = Collector()
    watcher = make_watcher(collector, fstype=lambda p: "ext4")
    watcher.update([str(real), str(link)], [])
    collector.expect(str(real / "a.py"))
    collector.expect(str(link / "a.py"))
    (real / "a.py").write_text("A = 1\n")
    assert collector.seen.wait(5)
    wait = time.monotonic() + 5
    while not {str(real / "a.py"), str(link / "a.py")} <= set(collector.paths):
        assert time.monotonic() < wait, collector.paths
        time.sleep(0.01)
    watcher.update([str(link)], [])  # the real name no longer asked for
    collector.reset()
    collector.expect(str(link / "b.py"))
    (real / "b.py").write_text("B = 1\n")
    assert collector.seen.wait(5), f"the folder lost its watch; got {collector.paths}"
    assert str(real / "b.py") not in collector.paths


def test_real_polling(tmp_path: Path, make_watcher: Callable[..., Watcher]) -> None:
    collector = Collector()
    watcher = make_watcher(collector, poll=True, poll_interval=0.05)
    _write_and_wait(tmp_path, watcher, collector)
    assert watcher.poll_dirs == {str(tmp_path)}
    # a new file is seen through the folder listing
    new = tmp_path / "new.py"
    collector.seen.clear()
    collector.expect(str(new))
    new.write_text("")
    assert collector.seen.wait(5)


def test_real_polling_on_a_remote_filesystem(
    tmp_path: Path, make_watcher: Callable[..., Watcher]
) -> None:
    collector = Collector()
    watcher = make_watcher(collector, fstype=lambda p: "9p", poll_interval=0.05)
    _write_and_wait(tmp_path, watcher, collector)
    assert watcher.poll_dirs == {str(tmp_path)}


def test_overflow_marker_is_not_a_path() -> None:
    assert "\0" in events.OVERFLOW


# -- in-place writes: events wait for the close (inotify only) ------------------------


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (oslayer.IN_MODIFY, MODIFIED),
        (oslayer.IN_CLOSE_WRITE, CLOSED),
        (oslayer.IN_DELETE, CLOSED),
        (oslayer.IN_MOVED_FROM, CLOSED),
        (oslayer.IN_MOVED_TO, CLOSED),
        (oslayer.IN_CREATE, None),
        (oslayer.IN_ATTRIB, None),
        (oslayer.IN_DELETE_SELF, None),
        (oslayer.IN_MOVE_SELF, None),
        (oslayer.IN_IGNORED, None),
        (oslayer.IN_CREATE | oslayer.IN_ISDIR, None),
        (oslayer.IN_MOVED_TO | oslayer.IN_ISDIR, CLOSED),
    ],
)
def test_write_change(mask: int, expected: Change | None) -> None:
    assert write_change(mask) == expected


def test_open_is_not_watched() -> None:
    # Readers open files too (the program importing its modules): IN_OPEN would wake the
    # watcher for every import and still could not tell a writer.
    assert not oslayer._WATCH_MASK & 0x020  # IN_OPEN


needs_inotify = pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify")


def _watched(
    tmp_path: Path, make_watcher: Callable[..., Watcher], *, close_wait: float
) -> tuple[Watcher, Collector, Path, Path]:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("A = 1\n")
    b.write_text("B = 1\n")
    collector = Collector()
    watcher = make_watcher(collector, fstype=lambda p: "ext4", close_wait=close_wait)
    watcher.update([str(tmp_path)], [str(a), str(b)])
    assert watcher.event_dirs == {str(tmp_path)}
    return watcher, collector, a, b


@needs_inotify
def test_in_place_save_pausing_is_reported_after_its_close(
    tmp_path: Path, make_watcher: Callable[..., Watcher]
) -> None:
    _, collector, a, _ = _watched(tmp_path, make_watcher, close_wait=30)
    collector.expect(str(a))
    fd = os.open(a, os.O_WRONLY | os.O_TRUNC)
    try:
        time.sleep(0.2)  # the writer's pause (a large file, a slow disk), not a wait for it
        assert str(a) not in collector.paths, "the truncated, unwritten file was reported"
        os.write(fd, b"A = 2\n")
        time.sleep(0.05)
        assert str(a) not in collector.paths, "the file was reported before its close"
        closed_at = time.monotonic()
    finally:
        os.close(fd)
    assert collector.seen.wait(5), "no event after the close"
    assert collector.first[str(a)] >= closed_at


@needs_inotify
@pytest.mark.parametrize("how", ["in place", "atomic"])
def test_a_complete_save_is_not_held(
    tmp_path: Path, make_watcher: Callable[..., Watcher], how: str
) -> None:
    # close_wait=30: a save held for its close by mistake would time the wait out.
    _, collector, a, _ = _watched(tmp_path, make_watcher, close_wait=30)
    collector.expect(str(a))
    if how == "in place":
        a.write_text("A = 2\n")
    else:
        tmp = tmp_path / ".a.py.tmp"
        tmp.write_text("A = 2\n")
        os.replace(tmp, a)
    assert collector.seen.wait(5), f"no event for {a}; got {collector.paths}"


@needs_inotify
def test_a_reader_holds_nothing(tmp_path: Path, make_watcher: Callable[..., Watcher]) -> None:
    _, collector, a, _ = _watched(tmp_path, make_watcher, close_wait=30)
    collector.expect(str(a))
    with open(a) as reader:  # open for reading during and after the save
        reader.read()
        a.write_text("A = 2\n")
        assert collector.seen.wait(5), "a file open for reading held its save"


@needs_inotify
def test_an_unwatched_file_kept_open_holds_nothing(
    tmp_path: Path, make_watcher: Callable[..., Watcher]
) -> None:
    _, collector, a, _ = _watched(tmp_path, make_watcher, close_wait=30)
    log = tmp_path / "app.log"
    collector.expect(str(a))
    with open(log, "w") as f:  # a log the program keeps open, written as it runs
        f.write("started\n")
        f.flush()
        a.write_text("A = 2\n")
        assert collector.seen.wait(5), "an open log file held a save"
        f.write("still running\n")


@needs_inotify
def test_a_watched_file_kept_open_holds_at_most_close_wait(
    tmp_path: Path, make_watcher: Callable[..., Watcher]
) -> None:
    _, collector, a, b = _watched(tmp_path, make_watcher, close_wait=1.0)
    # Taken before the write: the watcher's thread may see the write's event before
    # this thread gets the time back, and the wait is counted from that event.
    written_at = time.monotonic()
    with open(a, "w") as f:  # never closed while the test looks
        f.write("A = 2\n")
        f.flush()
        collector.expect(str(b))
        b.write_text("B = 2\n")
        assert collector.seen.wait(5), "a file open for ever held events beyond close_wait"
        assert collector.first[str(b)] >= written_at + 1.0
        assert str(a) in collector.paths
        # Past close_wait it holds nothing any more, however it is written, until closed.
        collector.reset()
        collector.expect(str(b))
        f.write("A = 3\n")
        f.flush()
        written_at = time.monotonic()
        b.write_text("B = 3\n")
        assert collector.seen.wait(5)
        assert collector.first[str(b)] < written_at + 1.0, "held again while still open"
