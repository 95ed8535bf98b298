"""Unit tests for relaunch.watch.events: backend choice per folder, and real events."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relaunch import oslayer
from relaunch.watch import events
from relaunch.watch.events import REMOTE_FILESYSTEMS, Watcher, needs_polling

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
        self.lock = threading.Lock()
        self.wanted: set[str] = set()
        self.seen = threading.Event()

    def __call__(self, paths: list[str]) -> None:
        with self.lock:
            self.paths.extend(paths)
            if self.wanted & set(paths):
                self.seen.set()

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
