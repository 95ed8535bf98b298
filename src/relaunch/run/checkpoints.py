"""Checkpoint restarts: a reload goes on from just before the first edited file runs.

Warm restarts keep the program's installed modules loaded; checkpoints keep its own
too. Every child is told the files edited this session (hot files). About to run one,
it parks a copy of itself there (the bootstrap's ``_Checkpoints``): a process that
has executed everything imported before that file, and serves forks like the zygote
(``_inside/forkserver.py``). A reload forks the latest checkpoint that is still valid,
and the fork goes on from that import, with the files as they are now.

A checkpoint is valid while nothing that ran before it could be different in a cold
start: every file it executed is as it saw it (mtime and size), no new module file
appeared in a watched folder (an earlier import might find it), no other watched
file changed (a configuration read at import), no package was installed and the
interpreter is the same. Otherwise the zygote forks the child (or it starts cold).

This module holds the decisions (pure functions, unit-tested), the supervisor's
listener the parked processes connect to, and the :class:`Checkpointing` strategy.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import oslayer
from ..pathtext import shown
from .preload import is_package_change
from .warm import Warm
from .zygote import MAX_MESSAGE, ZYGOTE_SERVER, ForkClient

__all__ = [
    "MAX_CHECKPOINTS",
    "MAX_HOT",
    "Checkpoint",
    "Checkpointing",
    "Hello",
    "admit",
    "choose",
    "parse_hello",
    "spoiled_by",
    "stale",
    "thinner",
]

log = logging.getLogger("relaunch")

MAX_CHECKPOINTS = 4  # parked processes kept: each costs the memory its fork copied
MAX_HOT = MAX_CHECKPOINTS  # the files most recently edited are the ones stopped at
HELLO_TIMEOUT = 5.0
ARRIVING_FOR = 10.0  # seconds a checkpoint announced by its parent may take to say hello


# -- the decisions (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """What a parked process says of itself (``ev`` "checkpoint"), or why a child did not
    park one (``ev`` "refused", ``why`` set, no files)."""

    pid: int
    file: str  # the hot file it stands before
    files: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # ran before it
    why: str = ""


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return shown(path if relative.startswith("..") else relative)


def _abs(value: object) -> str | None:
    if isinstance(value, str) and value and "\0" not in value and os.path.isabs(value):
        return os.path.normpath(value)
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_hello(message: object) -> Hello | None:
    """Validate a decoded hello; None if it is not one (never trust the program)."""
    if not isinstance(message, dict):
        return None
    pid, path = _int(message.get("pid")), _abs(message.get("file"))
    if pid is None or pid <= 0 or path is None:
        return None
    peer = message.get("peer")
    if peer is not None and peer != pid:
        return None  # it speaks for another process
    if message.get("ev") == "refused":
        why = message.get("why")
        return Hello(pid, path, why=why[:200]) if isinstance(why, str) and why else None
    if message.get("ev") != "checkpoint" or not isinstance(message.get("files"), list):
        return None
    files: dict[str, tuple[int, int]] = {}
    for item in message["files"]:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        name, mtime, size = _abs(item[0]), _int(item[1]), _int(item[2])
        if name is None or mtime is None or size is None:
            return None
        files.setdefault(name, (mtime, size))
    return Hello(pid, path, files)


def spoiled_by(
    paths: Iterable[str],
    *,
    hot: str,
    files: Collection[str],
    existing: Collection[str],
    watched: Callable[[str], bool],
    exists: Callable[[str], bool],
    site_roots: Collection[str],
    interpreter: str | None,
) -> str | None:
    """Why these changed paths make a checkpoint invalid, or None.

    ``hot``: the file it stands before; ``files``: what ran before it; ``existing``: the
    module files in watched folders when it was taken; ``watched(path)``: relaunch
    watches the path."""
    for path in paths:
        if path == hot:
            if not exists(path):
                # A cold start would look for the module again: another file, or none.
                return f"{_shown(path)} was deleted"
            continue
        if path in files:
            return f"{_shown(path)} changed, and it ran before"
        if interpreter is not None and path == interpreter:
            return "the Python interpreter changed"
        if is_package_change(path, site_roots):
            return "installed packages changed"
        if path.endswith(".py"):
            if path not in existing and exists(path):
                return f"a new module appeared ({_shown(path)}), which an earlier import may find"
        elif watched(path) and not path.endswith((".pyc", ".pyo")):
            return f"{_shown(path)} changed, which the program may have read before"
    return None


def stale(
    files: Mapping[str, tuple[int, int]], look: Callable[[str], tuple[int, int]]
) -> str | None:
    """Why a checkpoint is out of date: a file that ran before it is not as it was then."""
    for path, seen in files.items():
        if look(path) != seen:
            return f"{_shown(path)} changed, and it ran before"
    return None


def thinner(files: Collection[str], zygote_files: Collection[str]) -> int:
    """How many of the zygote's files a checkpoint has not loaded (0: it holds them all,
    as every checkpoint parked by a child the zygote forked does)."""
    return sum(1 for f in zygote_files if f not in files)


@dataclass
class Checkpoint:
    pid: int
    file: str
    files: Mapping[str, tuple[int, int]]
    existing: frozenset[str]  # module files in the watched folders when it arrived
    serial: int  # arrival order
    unwatched: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # of ``files``
    client: Any = None  # the ForkClient driving it
    spoiled: str = ""  # why it is no longer valid, once known


def choose(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The valid checkpoint that has run the most (the latest on arrival for a tie)."""
    valid = [c for c in checkpoints if not c.spoiled]
    return max(valid, key=lambda c: (len(c.files), c.serial), default=None)


def admit(
    kept: Sequence[Checkpoint], new: Checkpoint, cap: int = MAX_CHECKPOINTS
) -> tuple[list[Checkpoint], list[Checkpoint]]:
    """Keep ``new``: it replaces an older one before the same file; past ``cap``, the
    oldest go. Returns (kept, dropped)."""
    dropped = [c for c in kept if c.file == new.file]
    out = [c for c in kept if c.file != new.file] + [new]
    out.sort(key=lambda c: c.serial)
    while len(out) > cap:
        dropped.append(out.pop(0))
    return out, dropped


def _look(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


# -- the processes -----------------------------------------------------------------------


class CheckpointClient(ForkClient):
    def __init__(
        self, sock: socket.socket, on_event: Callable[[tuple[Any, ...]], None], pid: int
    ) -> None:
        super().__init__(sock, on_event)
        self.pid = pid
        self._start_reading()

    def close(self) -> threading.Thread:
        """Hang up (it exits at the EOF) and reap it, in the background: discarding one
        must not hold a reload. Returns the reaping thread."""
        self._hang_up()
        reaper = threading.Thread(
            target=_reap, args=(self.pid,), name="relaunch-checkpoint-reap", daemon=True
        )
        reaper.start()
        return reaper


def _reap(pid: int) -> None:
    done = threading.Event()

    def wait() -> None:
        oslayer.wait_exit(pid)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    if not done.wait(5):
        oslayer.kill_and_reap(pid)  # it did not leave at the EOF


def _from_parent(conn: socket.socket, line: bytes) -> bool:
    """A "parking PID" line comes from PID's parent (where the kernel can say)."""
    peer = oslayer.peer_pid(conn)
    return peer is None or oslayer.parent_pid(int(line[8:])) == peer


class Listener:
    """The Unix socket parked processes connect to (in a private folder). Each
    connection's first line is posted as ``("zygote", listener, {"ev": "hello", ...})``.

    A checkpoint's parent first says "parking PID" and waits for the answer: until then
    the new process is not relaunch's child, so it is known before the stray killer can
    see it."""

    def __init__(self, on_event: Callable[[tuple[Any, ...]], None]) -> None:
        self.on_event = on_event
        self.folder = tempfile.mkdtemp(prefix="relaunch-")
        self.address = os.path.join(self.folder, "checkpoints")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.address)
        self.sock.listen(16)
        self.lock = threading.Lock()
        self.arriving: dict[int, float] = {}  # pid -> when announced
        self.closed = False
        threading.Thread(target=self._accept, name="relaunch-checkpoints", daemon=True).start()

    def pids(self) -> set[int]:
        now = time.monotonic()
        with self.lock:
            for pid, since in list(self.arriving.items()):
                if now - since > ARRIVING_FOR:
                    del self.arriving[pid]
            return set(self.arriving)

    def arrived(self, pid: int) -> None:
        with self.lock:
            self.arriving.pop(pid, None)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._greet, args=(conn,), name="relaunch-checkpoint-hello", daemon=True
            ).start()

    def _greet(self, conn: socket.socket) -> None:
        import json

        conn.settimeout(HELLO_TIMEOUT)
        buffer = b""
        try:
            while b"\n" not in buffer and len(buffer) < MAX_MESSAGE:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
            line = buffer.split(b"\n", 1)[0]
            if line.startswith(b"parking ") and line[8:].isdigit() and _from_parent(conn, line):
                with self.lock:
                    self.arriving[int(line[8:])] = time.monotonic()
                conn.sendall(b"ok\n")
                conn.close()
                return
            message = json.loads(line)
        except (OSError, ValueError):
            conn.close()
            return
        conn.settimeout(None)
        if isinstance(message, dict):
            # The kernel's word on who connected, not the program's: the pid is one
            # relaunch will wait for, and kill if it does not leave.
            message["peer"] = oslayer.peer_pid(conn)
        self.on_event(("zygote", self, {"ev": "hello", "hello": message, "sock": conn}))

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the strategy ----------------------------------------------------------------------


class Checkpointing(Warm):
    """Warm restarts (a zygote), and checkpoints before the files edited this session."""

    name = "checkpoint"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener: Listener | None = None
        try:
            self.listener = Listener(self.on_event)
        except OSError as exc:
            log.warning("cannot listen for checkpoints (%s): warm restarts only", exc)
        else:
            self.extra_env["_RELAUNCH_CHECKPOINTS"] = self.listener.address
        self.hot: list[str] = []  # most recent last
        self.checkpoints: list[Checkpoint] = []
        self._serial = 0
        self._reapers: list[threading.Thread] = []
        self._said: set[str] = set()
        self._said_none: list[str] = []  # the hot files when "no checkpoint yet" was said
        self.started_from: Checkpoint | None = None  # what the current child was forked from
        self.ran = 0  # files the current child reported (what it ran after the checkpoint)

    # -- the supervisor's questions --------------------------------------------------

    def forker(self) -> ForkClient | None:
        self.started_from = None
        for checkpoint in self.checkpoints:
            if not checkpoint.spoiled:
                # A watched file's change was an event (or a batch) that spoiled it at
                # once, as was one of the zygote's (its folders are watched); only the
                # others are looked at, here: no stat of a whole project, or of Django,
                # on the way to every reload.
                checkpoint.spoiled = stale(checkpoint.unwatched, _look) or ""
            if checkpoint.spoiled:
                log.debug(
                    "checkpoint before %s dropped: %s", _shown(checkpoint.file), checkpoint.spoiled
                )
        zygote = super().forker()
        # (The zygote's own script is its __main__, which each child replaces.)
        held = self.zygote.files - {ZYGOTE_SERVER} if zygote and self.zygote else frozenset()
        for checkpoint in self.checkpoints:
            lacks = thinner(checkpoint.files, held)
            if lacks and not checkpoint.spoiled:
                # Parked before the zygote had them (a cold start, or a smaller zygote):
                # each fork would import them again. The zygote's child parks a better one.
                checkpoint.spoiled = f"the warm-start process holds {lacks} modules it lacks"
                log.debug(
                    "checkpoint before %s dropped: %s", _shown(checkpoint.file), checkpoint.spoiled
                )
        for checkpoint in [c for c in self.checkpoints if c.spoiled]:
            self._drop(checkpoint)
        chosen = choose(self.checkpoints)
        if chosen is not None and chosen.client.ready:
            chosen.client.hot = list(self.hot)
            chosen.client.last_pid = None
            self.started_from = chosen
            return chosen.client  # type: ignore[no-any-return]
        if not self.checkpoints and self.hot and self._said_none != self.hot:
            self._said_none = list(self.hot)
            log.debug("no checkpoint to start from yet: starting from the program's top")
        if zygote is not None:
            zygote.hot = list(self.hot)
        return zygote

    def child_started(self) -> None:
        super().child_started()
        self.ran = 0

    def child_modules(self, modules: Iterable[tuple[str, str, int]], now: float) -> None:
        modules = list(modules)
        self.ran += len(modules)
        super().child_modules(modules, now)

    def started_how(self, *, ran_known: bool) -> str:
        """What the reload line says the new process kept ("" when it started from the
        top); ``ran_known``: it is up once it has loaded (serve), not once it started."""
        checkpoint = self.started_from
        if checkpoint is None or checkpoint.client.last_pid is None:
            return ""  # started from the top (or the fork failed, and it started cold)
        kept = f"kept {len(checkpoint.files):,} modules"
        return f"{kept}, ran {self.ran:,}" if ran_known else kept

    def paths_changed(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        super().paths_changed(paths)
        self._spoil(paths)

    def files_changed(self, paths: Sequence[str]) -> None:
        # Edits found without an event (made before the watcher covered the file) are
        # only here; so the hot files are taken from here.
        for path in paths:
            if path.endswith(".py"):
                if path in self.hot:
                    self.hot.remove(path)
                self.hot.append(path)
        del self.hot[:-MAX_HOT]
        self.extra_env["_RELAUNCH_HOT"] = os.pathsep.join(self.hot)  # for a cold start
        self._spoil(paths)

    def _spoil(self, paths: Sequence[str]) -> None:
        for checkpoint in list(self.checkpoints):
            checkpoint.spoiled = (
                spoiled_by(
                    paths,
                    hot=checkpoint.file,
                    files=checkpoint.files,
                    existing=checkpoint.existing,
                    watched=self._watched,
                    exists=os.path.isfile,
                    site_roots=self.roots,
                    interpreter=self.interpreter,
                )
                or ""
            )
            if checkpoint.spoiled:
                # Dropped at once: a parked process costs memory, and this one is no use.
                log.debug(
                    "checkpoint before %s dropped: %s", _shown(checkpoint.file), checkpoint.spoiled
                )
                self._drop(checkpoint)

    def zygote_event(self, zygote: Any, message: dict[str, Any]) -> None:
        if zygote is self.listener:
            self._hello(message)
        elif isinstance(zygote, CheckpointClient):
            if message.get("ev") == "gone":
                for checkpoint in [c for c in self.checkpoints if c.client is zygote]:
                    log.debug("the checkpoint before %s exited", _shown(checkpoint.file))
                    self.checkpoints.remove(checkpoint)
        else:
            super().zygote_event(zygote, message)

    def pids(self) -> set[int]:
        """Every helper process kept: the zygote, the checkpoints (and those arriving)."""
        arriving = self.listener.pids() if self.listener is not None else set()
        return {c.pid for c in self.checkpoints} | arriving | super().pids()

    def release_switched(self) -> None:
        super().release_switched()
        self._drop_all()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self._drop_all()
        for reaper in self._reapers:
            reaper.join(timeout=6)
        super().close()

    # -- inside ----------------------------------------------------------------------

    def _watched(self, path: str) -> bool:
        return path in self.watchset.imported or self.watchset.matches(path)

    def _existing_modules(self) -> frozenset[str]:
        found: set[str] = set()
        for folder in self.watchset.directories():
            try:
                with os.scandir(folder) as entries:
                    found.update(e.path for e in entries if e.name.endswith(".py"))
            except OSError:
                continue
        return frozenset(os.path.normpath(p) for p in found)

    def _hello(self, message: dict[str, Any]) -> None:
        conn = message.get("sock")
        hello = parse_hello(message.get("hello"))
        if not isinstance(conn, socket.socket):
            return
        if hello is None or hello.why:
            conn.close()
            if hello is not None:
                if self.listener is not None:
                    self.listener.arrived(hello.pid)
                text = f"no checkpoint before {_shown(hello.file)}: {hello.why}"
                if text not in self._said:
                    self._said.add(text)
                    log.debug("%s", text)
            return
        if self.listener is not None:
            self.listener.arrived(hello.pid)
        self._serial += 1
        checkpoint = Checkpoint(
            hello.pid, hello.file, hello.files, self._existing_modules(), self._serial
        )
        # The zygote's files are watched for it (their change rebuilds it): an event.
        covered = self.zygote.files if self.zygote is not None else frozenset()
        checkpoint.unwatched = {
            p: s for p, s in hello.files.items() if p not in covered and not self._watched(p)
        }
        checkpoint.client = CheckpointClient(conn, self.on_event, hello.pid)
        # Changed after the program read it, before it was known here: no event spoils it.
        checkpoint.spoiled = stale(hello.files, _look) or ""
        self.checkpoints, dropped = admit(self.checkpoints, checkpoint)
        for old in dropped:
            self._close(old)
        log.debug(
            "checkpoint %d parked before %s (%d modules ran before it)",
            hello.pid,
            _shown(hello.file),
            len(hello.files),
        )

    def _drop(self, checkpoint: Checkpoint) -> None:
        if checkpoint in self.checkpoints:
            self.checkpoints.remove(checkpoint)
        self._close(checkpoint)

    def _close(self, checkpoint: Checkpoint) -> None:
        self._reapers = [r for r in self._reapers if r.is_alive()]
        self._reapers.append(checkpoint.client.close())

    def _drop_all(self) -> None:
        for checkpoint in list(self.checkpoints):
            self._drop(checkpoint)
