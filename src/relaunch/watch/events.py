"""Where file events come from: native OS events, or polling where events don't work.

The :class:`Watcher` watches a set of folders, each non-recursively, and calls
``on_paths`` (from its own threads; the callback must not block) with the paths
that something happened to. It decides per folder how to watch:

* native events: inotify read directly on Linux (a thread blocked in poll(), no CPU
  while idle), watchfiles (FSEvents, ReadDirectoryChangesW, kqueue) elsewhere;
* polling, chosen automatically, and said once in the log, for folders on network
  and VM file systems (NFS, SMB, 9p, drvfs, vboxsf, FUSE...), where events from other
  machines never arrive, and for folders past the OS watch limit; ``poll=True``
  forces it everywhere. Polling stats only the watch set's files and folders.

Only inotify says when a file written to is closed (IN_CLOSE_WRITE after IN_MODIFY).
With it, events are held back while a watched file is being written in place (an
in-place save that pauses between truncating and writing), at most ``close_wait``
per write: see :class:`~relaunch.watch.settle.WriteHold`. watchfiles and polling
report a change when they see it, written to the end or not; only the settle period
stands between a paused in-place save and a reload there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable, Iterable

from .. import oslayer
from ..pathtext import shown
from .settle import CLOSED, MODIFIED, Change, WriteHold

__all__ = ["OVERFLOW", "REMOTE_FILESYSTEMS", "Watcher", "needs_polling", "write_change"]

log = logging.getLogger(__name__)

#: Passed to ``on_paths`` when the OS dropped events: every file must be re-checked.
OVERFLOW = "\0overflow"

REMOTE_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "drvfs", "vboxsf",
        "virtiofs", "afs", "ceph", "glusterfs", "lustre", "davfs", "ncpfs", "prl_fs",
        "vmhgfs", "fuse", "fuseblk",
    }
)  # fmt: skip

OnPaths = Callable[[list[str]], None]


def write_change(mask: int) -> Change | None:
    """What an inotify event means for a write in progress (see :class:`WriteHold`).

    IN_MODIFY (a write, or the truncation of an open with O_TRUNC): being written.
    IN_CLOSE_WRITE: done. A delete or a rename away ends the wait too (a writer's later
    events follow the file to its new name, or the file is gone), and so does a rename
    over it (the name now holds a complete file). Opening a file is not asked for:
    readers open files too, and an open alone changes nothing."""
    if mask & oslayer.IN_MODIFY:
        return MODIFIED
    if mask & _WRITE_ENDS:
        return CLOSED
    return None


_WRITE_ENDS = (
    oslayer.IN_CLOSE_WRITE | oslayer.IN_DELETE | oslayer.IN_MOVED_FROM | oslayer.IN_MOVED_TO
)


def needs_polling(fstype: str | None) -> bool:
    """True for file systems on which native events miss changes made elsewhere."""
    if not fstype:
        return False
    return fstype in REMOTE_FILESYSTEMS or fstype.startswith("fuse.")


class _InotifyBackend:
    """Linux: one inotify descriptor, watches added and removed as the set changes.

    Events go through a :class:`WriteHold`, which holds them while a watched file is
    being written; the thread's poll() then times out when the wait runs out."""

    def __init__(self, on_paths: OnPaths, *, close_wait: float) -> None:
        self.on_paths = on_paths
        self.fd = oslayer.inotify_open()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)  # written to under the lock: must never block
        # inotify has one watch per folder, whatever name adds it: a folder watched under
        # two names (a symlinked release, a bind mount) shares its watch descriptor.
        self.by_wd: dict[int, list[str]] = {}  # descriptor: the names it is watched by
        self.by_dir: dict[str, int] = {}
        self.hold = WriteHold(max_wait=close_wait)
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="relaunch-inotify", daemon=True)
        self.thread.start()

    def update(self, dirs: set[str], files: frozenset[str]) -> set[str]:
        """Watch exactly ``dirs``; wait for writes of ``files`` to end. Returns the folders
        that could not be watched (limit hit)."""
        refused: set[str] = set()
        with self.lock:
            writing = self.hold.writing
            self.hold.watch(files)
            if self.hold.writing != writing:
                self._wake()  # a write no longer waited for: release what it held
            for directory in list(self.by_dir):
                if directory not in dirs:
                    wd = self.by_dir.pop(directory)
                    names = self.by_wd.get(wd, [])
                    if directory in names:
                        names.remove(directory)
                    if not names:  # its last name: only now is the folder unwatched
                        self.by_wd.pop(wd, None)
                        oslayer.inotify_remove_watch(self.fd, wd)
            for directory in dirs - self.by_dir.keys():
                try:
                    wd = oslayer.inotify_add_watch(self.fd, directory)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        refused.add(directory)
                    elif exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                        raise
                    continue
                self.by_dir[directory] = wd
                self.by_wd.setdefault(wd, []).append(directory)
        return refused

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        timeout: int | None = None
        while not self.closed:
            ready = {fd for fd, _ in poller.poll(timeout)}
            if self.closed:
                return
            if self.wake_r in ready:
                os.read(self.wake_r, 64)
            now = time.monotonic()
            # Read and parse under the lock: being_written() reads the queue too, and
            # events must reach the hold in the kernel's order.
            with self.lock:
                if self.fd in ready:
                    self._absorb(self._read_events(), now)
                paths = self.hold.take(now)
                due = self.hold.due()
            # Idle, or holding for a write: block until the next event or the wait's end.
            timeout = None if due is None else max(0, math.ceil((due - now) * 1000))
            if paths:
                self.on_paths(paths)

    def _read_events(self) -> bytes:
        try:
            return os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return b""

    def _absorb(self, data: bytes, now: float) -> None:
        """Feed raw inotify events to the hold. Lock held."""
        for wd, mask, name in oslayer.inotify_parse(data):
            if mask & oslayer.IN_Q_OVERFLOW:
                self.hold.forget()
                self.hold.add(OVERFLOW, now)
                continue
            names = self.by_wd.get(wd)
            if not names:
                continue
            if mask & oslayer.IN_IGNORED:
                # The folder itself went away: forget the watch, report the folder.
                self.by_wd.pop(wd, None)
                for directory in names:
                    self.by_dir.pop(directory, None)
            for directory in list(names):
                path = os.path.join(directory, name) if name else directory
                self.hold.add(path, now, write_change(mask))

    def being_written(self) -> frozenset[str]:
        """The watched files being written now. The events the kernel has queued are
        read first, so a write begun before this call counts however late this
        backend's thread is; the thread then delivers them as usual."""
        with self.lock:
            now = time.monotonic()
            while data := self._read_events():
                self._absorb(data, now)
            writing = self.hold.writing
        self._wake()
        return writing

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the thread wakes anyway
            os.write(self.wake_w, b"x")

    def close(self) -> None:
        self.closed = True
        self._wake()
        self.thread.join(timeout=2)
        for fd in (self.fd, self.wake_r, self.wake_w):
            os.close(fd)


class _WatchfilesBackend:
    """Other platforms: watchfiles' native watcher, rebuilt when the folder set changes."""

    STEP_MS = 5

    def __init__(self, on_paths: OnPaths) -> None:
        self.on_paths = on_paths
        self.dirs: set[str] = set()
        self.stop: threading.Event | None = None

    def update(self, dirs: set[str], files: frozenset[str]) -> set[str]:
        if dirs == self.dirs:
            return set()
        from watchfiles._rust_notify import RustNotify

        self.dirs = set(dirs)
        old = self.stop
        self.stop = None
        if dirs:
            try:
                notify = RustNotify(sorted(dirs), False, False, 0, False, True)
            except OSError as exc:
                if "limit" in str(exc).lower() or exc.errno == errno.ENOSPC:
                    return set(dirs)
                raise
            stop = self.stop = threading.Event()
            threading.Thread(
                target=self._run, args=(notify, stop), name="relaunch-watchfiles", daemon=True
            ).start()
        if old is not None:
            old.set()  # the new watcher is already running: no gap in which events are lost
        return set()

    def _run(self, notify: object, stop: threading.Event) -> None:
        while not stop.is_set():
            result = notify.watch(1000, self.STEP_MS, 0, stop)  # type: ignore[attr-defined]
            if isinstance(result, set) and result:
                self.on_paths([path for _change, path in result])
        notify.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.stop is not None:
            self.stop.set()


class _Poller:
    """Stats the watch set's files and lists its folders every ``interval`` seconds."""

    def __init__(self, on_paths: OnPaths, interval: float) -> None:
        self.on_paths = on_paths
        self.interval = interval
        self.dirs: set[str] = set()
        self.files: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._stats: dict[str, tuple[int, int, int] | None] = {}
        self._listings: dict[str, frozenset[str] | None] = {}

    def update(self, dirs: set[str], files: set[str]) -> None:
        with self.lock:
            self.dirs = set(dirs)
            self.files = {f for f in files if os.path.dirname(f) in self.dirs}
            for path in self.files - self._stats.keys():
                self._stats[path] = _stat(path)
            for directory in self.dirs - self._listings.keys():
                self._listings[directory] = _listing(directory)
        if self.dirs and self.thread is None:
            self.thread = threading.Thread(target=self._run, name="relaunch-poll", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            changed: list[str] = []
            with self.lock:
                for path in self.files:
                    now = _stat(path)
                    if now != self._stats.get(path):
                        self._stats[path] = now
                        changed.append(path)
                for directory in self.dirs:
                    now_names = _listing(directory)
                    before = self._listings.get(directory)
                    if now_names != before:
                        self._listings[directory] = now_names
                        diff = (now_names or frozenset()) ^ (before or frozenset())
                        changed.extend(os.path.join(directory, n) for n in diff)
                        if now_names is None or before is None:
                            changed.append(directory)
            if changed:
                self.on_paths(changed)

    def close(self) -> None:
        self.stop.set()


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _listing(directory: str) -> frozenset[str] | None:
    try:
        return frozenset(os.listdir(directory))
    except OSError:
        return None


class Watcher:
    """Watches folders non-recursively with the best backend for each; see the module doc."""

    def __init__(
        self,
        on_paths: OnPaths,
        *,
        poll: bool = False,
        poll_interval: float = 0.5,
        close_wait: float = 1.0,
        fstype: Callable[[str], str | None] = oslayer.filesystem_type,
    ) -> None:
        """``close_wait``: how long, at most, events wait for a watched file being written
        in place to be closed (inotify only; see the module doc)."""
        self.on_paths = on_paths
        self.close_wait = close_wait
        self.force_poll = poll
        self.fstype = fstype
        self.poller = _Poller(on_paths, poll_interval)
        self.native: _InotifyBackend | _WatchfilesBackend | None = None
        self.native_failed: str | None = None
        self._fs_cache: dict[str, bool] = {}
        self._said: set[str] = set()
        self.event_dirs: set[str] = set()
        self.poll_dirs: set[str] = set()

    def _say_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(message, *args)

    def _remote(self, directory: str) -> bool:
        if directory not in self._fs_cache:
            fstype = self.fstype(directory)
            remote = needs_polling(fstype)
            if remote:
                self._say_once(
                    f"fs:{fstype}",
                    "%s is on a %s file system, where change events may not arrive: "
                    "polling it instead",
                    shown(directory),
                    fstype,
                )
            self._fs_cache[directory] = remote
        return self._fs_cache[directory]

    def _native_backend(self) -> _InotifyBackend | _WatchfilesBackend | None:
        if self.native is None and self.native_failed is None:
            try:
                if oslayer.HAS_INOTIFY:
                    self.native = _InotifyBackend(self.on_paths, close_wait=self.close_wait)
                else:
                    self.native = _WatchfilesBackend(self.on_paths)
            except OSError as exc:
                self.native_failed = str(exc)
                self._say_once(
                    "native",
                    "cannot start native file events (%s): polling instead; %s",
                    exc,
                    oslayer.watch_limit_hint(exc),
                )
        return self.native

    def update(self, dirs: Iterable[str], files: Iterable[str]) -> None:
        """Watch exactly these folders; ``files`` are the watched files (for polling, and
        whose in-place writes are waited for)."""
        dirs = set(dirs)
        files = frozenset(files)
        if self.force_poll:
            event_dirs: set[str] = set()
        else:
            event_dirs = {d for d in dirs if not self._remote(d)}
        refused: set[str] = set()
        native = self._native_backend() if event_dirs else self.native
        if native is not None:
            refused = native.update(event_dirs, files)
        elif event_dirs:
            refused = event_dirs
        if refused and self.native_failed is None:
            self._say_once(
                "limit",
                "the OS limit on watched folders was reached: polling %d folder(s) instead; %s",
                len(refused),
                oslayer.watch_limit_hint(),
            )
        self.event_dirs = event_dirs - refused
        self.poll_dirs = dirs - self.event_dirs
        self.poller.update(self.poll_dirs, set(files))

    def evented(self, path: str) -> bool:
        """Whether every write of ``path`` raises an event at once (its folder watched by
        inotify): then the last event for it is when it was last written, give or take
        the time to read the event. (watchfiles debounces; polling looks now and then.)"""
        return isinstance(self.native, _InotifyBackend) and os.path.dirname(path) in self.event_dirs

    def being_written(self) -> frozenset[str]:
        """The watched files being written in place now (modified, not closed yet): only
        inotify can tell; elsewhere, none."""
        native = self.native
        if isinstance(native, _InotifyBackend):
            return native.being_written()
        return frozenset()

    def describe(self) -> str:
        """One line for -v: which backend watches how many folders."""
        native = "inotify" if isinstance(self.native, _InotifyBackend) else "watchfiles"
        parts = []
        if self.event_dirs:
            parts.append(f"{len(self.event_dirs)} folder(s) by {native} events")
        if self.poll_dirs:
            parts.append(
                f"{len(self.poll_dirs)} folder(s) by polling every {self.poller.interval}s"
            )
        return ", ".join(parts) or "nothing"

    def close(self) -> None:
        if self.native is not None:
            self.native.close()
        self.poller.close()
