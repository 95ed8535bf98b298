"""Runs inside the child: starts the user's program and reports what it imports.

The supervisor starts ``python [the user's flags] bootstrap.py MODE TARGET ARGS...``.
This file then makes the process look exactly as if ``python [flags] TARGET ARGS``
had been run (``sys.argv``, ``sys.path[0]``, a fresh ``__main__``, ``sys.orig_argv``),
and while the program runs it reports over a pipe every module file it imports, as
it is found (lazy imports included), and on a crash every file of the traceback.

It must run on any Python 3 the user points relaunch at, which may not have relaunch
installed: standard library only, no relaunch imports, conservative syntax.

Messages are JSON lines, each written with one ``os.write`` of at most PIPE_BUF
bytes so that forked workers writing to the same pipe never interleave. Start-up
time is reload time: this file imports nothing it can avoid (no json, whose regex
compilation alone costs ~9 ms; traceback only on a crash).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "CHECKPOINTS_ENV",
    "HOT_ENV",
    "enable_checkpoints",
    "freeze_at_exit",
    "installed_roots",
    "load_forkserver",
    "main",
    "reseed",
    "socket_count",
    "thread_count",
]

_MAX_MESSAGE = 4000  # below PIPE_BUF (4096 on Linux, 512 minimum by POSIX)
_TRACEBACK_CHUNK = 1500  # characters; escaped as JSON it stays under _MAX_MESSAGE
_MAX_TRACEBACK = 60000
_HERE = os.path.abspath(__file__)
_CHANNEL_MODULE = "_relaunch_channel"
# Where a child parks its checkpoints (the supervisor's Unix socket), and the files
# edited this session (os.pathsep between them): a cold child's, from the environment.
CHECKPOINTS_ENV = "_RELAUNCH_CHECKPOINTS"
HOT_ENV = "_RELAUNCH_HOT"


def _json_string(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    if not out.isprintable() or not out.isascii():
        out = "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF else c for c in out
        )
    return '"' + out + '"'


def _json(value: Any) -> str:
    """JSON for the few shapes the bootstrap sends: dicts, lists, str, int, bool."""
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(_json_string(k) + ":" + _json(v) for k, v in value.items()) + "}"
    return "[" + ",".join(_json(v) for v in value) + "]"


def _seen(path: str) -> list[int]:
    """The file's mtime and size as this process saw them, before it read the file: the
    supervisor compares them with its own look, so an edit made while the program was
    starting is not missed (and a file half-written then is never served)."""
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]
    return [st.st_mtime_ns, st.st_size]


class Channel:
    """The child's end of the two pipes to the supervisor.

    Registered in ``sys.modules`` so ``relaunch``'s public API (watch, trigger_reload,
    add_reload_hook) finds it without importing this file.
    """

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd = write_fd
        self.read_fd = read_fd
        self.hooks: list[Callable[[], object]] = []
        self.parking: list[Callable[[], object]] = []  # run in a checkpoint, to park
        self.judge: Callable[[list[str]], bool] | None = None
        self._listening = False
        self._lock = threading.Lock()
        self.reported: set[str] = set()
        self.reported_missing: set[str] = set()  # places of modules an import did not find
        # Each file reported, in import order, with the (mtime, size) seen before it ran.
        self.seen: dict[str, list[int]] = {}

    def send(self, message: dict[str, Any]) -> bool:
        data = (_json(message) + "\n").encode("utf-8")
        if len(data) > _MAX_MESSAGE:
            return False
        try:
            os.write(self.write_fd, data)
        except OSError:
            return False  # the supervisor is gone; nothing to report to
        return True

    def send_paths(self, kind: str, items: list[Any]) -> None:
        """Send a list in as many messages as needed to stay under PIPE_BUF."""
        batch: list[Any] = []
        size = 0
        for item in items:
            cost = len(_json(item)) + 1
            if batch and size + cost > _MAX_MESSAGE - 64:
                self.send({"t": kind, "p": batch})
                batch, size = [], 0
            batch.append(item)
            size += cost
        if batch:
            self.send({"t": kind, "p": batch})

    def report_module(self, name: str, path: str) -> None:
        if path in self.reported:
            return
        self.reported.add(path)
        seen = self.seen[path] = _seen(path)
        self.send_paths("mods", [[name, path, *seen]])

    def report_missing(self, name: str, search: Any) -> None:
        """An import found no module ``name``: watch where it would be, were it created
        (a cold start then imports it)."""
        places = _missing_places(name, sys.path if search is None else search)
        # Apart from ``reported``: one created and then imported is reported as it runs.
        places = [p for p in places if p[1] not in self.reported_missing]
        self.reported_missing.update(p[1] for p in places)
        self.send_paths("mods", places)

    def report_loaded(self) -> None:
        """Report modules that reached sys.modules without going through a finder."""
        found = []
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and path not in self.reported:
                self.reported.add(path)
                full = os.path.abspath(path)
                seen = self.seen[full] = _seen(full)
                found.append([name, full, *seen])
        self.send_paths("mods", found)

    def watch(self, paths: list[str]) -> None:
        self.send_paths("watch", [os.path.abspath(str(p)) for p in paths])

    def trigger_reload(self) -> None:
        self.send({"t": "reload"})

    def report_failure(self, exc: BaseException, *, brief: bool = False) -> None:
        """For a program that catches its own start-up failure (``relaunch serve``'s
        worker): the same report a crash gives; ``brief`` leaves out the traceback."""
        report_failure(self, exc, brief=brief)

    def add_reload_hook(self, fn: Callable[[], object]) -> None:
        self.hooks.append(fn)
        self._start_listening()
        self.send({"t": "hooks"})

    def before_checkpoint(self, fn: Callable[[], object]) -> None:
        """Have ``fn()`` run in each checkpoint's process before it parks: work done
        there is done for every process forked from it (an integration's, kept for its
        next run: runserver's URL checks). A failure is ignored: forks do the work."""
        self.parking.append(fn)

    def judge_changes(self, fn: Callable[[list[str]], bool]) -> None:
        """Have the supervisor ask ``fn(paths)`` before it restarts for changed files: True
        means the program handled them (Django's ``file_changed`` receivers), no restart."""
        self.judge = fn
        self._start_listening()
        self.send({"t": "changes"})

    def _start_listening(self) -> None:
        with self._lock:
            if self._listening:
                return
            self._listening = True
        threading.Thread(target=self._listen, name="relaunch-control", daemon=True).start()

    def _answer(self, data: bytes) -> None:
        import json

        handled = False
        try:
            paths = json.loads(data)
            if self.judge is not None and isinstance(paths, list):
                handled = bool(self.judge([str(p) for p in paths]))
        except Exception:
            import traceback

            traceback.print_exc()
        self.send({"t": "handled" if handled else "unhandled"})

    def _listen(self) -> None:
        # The supervisor writes "stop" before it stops this process: run the hooks, ack;
        # and "changed [paths]" to ask whether the program handles a change itself.
        buffer = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 1024)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line == b"stop":
                    self.run_hooks()
                    self.send({"t": "hooks-done"})
                elif line.startswith(b"changed "):
                    self._answer(line[len(b"changed ") :])

    def run_hooks(self) -> None:
        for fn in list(self.hooks):
            try:
                fn()
            except Exception:
                import traceback

                traceback.print_exc()


class ReportingFinder:
    """A meta-path finder that asks the others, and reports where each module came from.

    It sits first on sys.meta_path and returns the very spec the next finder found,
    so the import system behaves as without it. A file is reported when it is found,
    before it runs, so a module that then fails (SyntaxError) is watched too.
    """

    def __init__(
        self,
        report: Callable[[str, str], None],
        hooks: dict[str, Callable[[Any], None]] | None = None,
        missing: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.report = report  # called with (module name, absolute file path)
        self.hooks = hooks or {}  # module name -> called with the module once it ran
        # Called with (module name, the folders searched: None for sys.path) when no
        # finder has the module: `try: import local_settings` / `except ImportError`.
        self.missing = missing
        self.local = threading.local()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if getattr(self.local, "busy", False):
            return None
        self.local.busy = True
        try:
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    source = None
                    # Not before a module run again (importlib.reload): what ran of it
                    # before would be kept. (Found is not run: find_spec() probes.)
                    points = _checkpoints if name not in sys.modules else None
                    if spec.has_location and isinstance(spec.origin, str):
                        source = _source_file(spec)
                        self.report(name, source)
                    hook = self.hooks.pop(name, None)
                    if hook is not None and spec.loader is not None:
                        spec.loader = _HookedLoader(spec.loader, hook)
                    if (
                        points is not None
                        and source is not None
                        and points.wants(source)
                        and hasattr(spec.loader, "exec_module")
                    ):
                        spec.loader = _CheckpointLoader(spec.loader, name, source)
                    return spec
            if self.missing is not None:
                self.missing(name, path)
            return None
        finally:
            self.local.busy = False

    def invalidate_caches(self) -> None:
        pass


class _HookedLoader:
    """Runs a module with its own loader, then calls a hook with it; leaves no trace
    of itself on the module."""

    def __init__(self, loader: Any, hook: Callable[[Any], None]) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _run_hook(self.hook, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _CheckpointLoader:
    """Parks a checkpoint (see :class:`_Checkpoints`) before a hot file runs, then runs
    it with its own loader; leaves no trace of itself on the module."""

    def __init__(self, loader: Any, name: str, path: str) -> None:
        self.loader = loader
        self.name = name
        self.path = path

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        real = self.loader
        while isinstance(real, (_HookedLoader, _CheckpointLoader)):
            real = real.loader
        module.__loader__ = real
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = real
        points = _checkpoints
        if points is not None:
            # Returns in this process, and again (later, with the file as it is then)
            # in every process forked from the checkpoint.
            points.stop_at(self.name, self.path)
        self.loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def thread_count() -> int:
    """Threads of this process as the OS sees them (C threads included, on Linux)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def socket_count() -> int:
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    count = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def reseed() -> None:
    """Give a forked child fresh random state, as a cold start would have had.

    The standard library's ``random`` reseeds itself after fork; numpy's legacy
    global generator does not.
    """
    np_random = sys.modules.get("numpy.random")
    seed = getattr(np_random, "seed", None)
    if callable(seed):
        seed()


def load_forkserver() -> Any:
    """forkserver.py (next to this file), under a private name."""
    name = "_relaunch_forkserver"
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util

    path = os.path.join(os.path.dirname(_HERE), "forkserver.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Checkpoints:
    """Checkpoints: when the program is about to run a file edited this session (a hot
    file), a copy of the process is parked there, and a reload forks that copy, which
    goes on from exactly that import with the file as it is then.

    This process forks K0, which forks K and exits: K is orphaned to the supervisor (a
    subreaper), so the program never sees a child of its own. K leaves the program's
    process group, closes the program's pipes, connects to the supervisor, says which
    files ran before it (each with the mtime and size seen before it ran: what it holds),
    and serves forks (forkserver.py). A process forked from K takes the new pipes and
    returns into the import. Only in a process with no thread but this one (and
    relaunch's control thread, started again after the fork) and no socket opened
    since it started: a fork copies neither threads nor a connection's peer.
    """

    def __init__(self, channel: Channel, address: str, hot: list[str]) -> None:
        self.channel = channel
        self.address = address
        self.hot = set(hot)
        self.taken: set[str] = set()  # hot files this line of processes stopped at
        # What a cold start makes anew and a fork would keep: the process id, random
        # bytes and numbers read before a checkpoint. Once the program reads one, no
        # checkpoint is parked after it (the new process must not hold the old's).
        self.taint = ""
        self.getpid = os.getpid  # relaunch's own reads do not count
        self.random_state: Any = None
        self._watch_identity()
        # Only the process the supervisor runs: a worker the program forks is not a run.
        self.pid = self.getpid()
        ours = 1 if channel._listening else 0
        self.threads = thread_count() - ours
        self.sockets = socket_count()

    def wants(self, path: str) -> bool:
        return path in self.hot and path not in self.taken and self.getpid() == self.pid

    def watching(self) -> bool:
        """Whether a read of the pid or of random bytes may still taint a checkpoint to
        come: none yet, a hot file still to stop at, and in the main thread (a read in
        another thread has no module-level frame: _own_read finds it is not an import's).
        Otherwise the wrappers skip the stack walk (logging reads the pid per record)."""
        return (
            not self.taint
            and not self.hot <= self.taken
            and threading.current_thread() is threading.main_thread()
        )

    def _watch_identity(self) -> None:
        real_getpid, real_urandom = os.getpid, os.urandom
        points = self

        def getpid() -> int:
            if points.watching():
                points.taint = _own_read("the program had read its process id")
            return real_getpid()

        def urandom(size: int) -> bytes:
            if points.watching():
                points.taint = _own_read("the program had read random bytes")
            return real_urandom(size)

        getpid.__doc__, urandom.__doc__ = real_getpid.__doc__, real_urandom.__doc__
        os.getpid, os.urandom = getpid, urandom  # type: ignore[assignment]
        random = sys.modules.get("random")
        if random is not None:
            self.random_state = random.getstate()  # fresh: reseeded at the fork
        else:
            for finder in sys.meta_path:
                if isinstance(finder, ReportingFinder):
                    finder.hooks.setdefault("random", self._random_imported)

    def _random_imported(self, module: Any) -> None:
        self.random_state = module.getstate()

    def _drew_random(self) -> bool:
        random = sys.modules.get("random")
        getstate = getattr(random, "getstate", None)
        if not callable(getstate) or self.random_state is None:
            return False
        return bool(getstate() != self.random_state)

    def unsafe(self) -> str | None:
        if threading.current_thread() is not threading.main_thread():
            return "the file was imported in a thread"
        ours = 1 if self.channel._listening else 0
        if threading.active_count() > 1 + ours or thread_count() > self.threads + ours:
            return "the program had started a thread"
        if socket_count() > self.sockets:
            return "the program had opened a socket"
        if not self.taint and self._drew_random():
            self.taint = "the program had drawn random numbers"
        return self.taint or None

    def stop_at(self, name: str, path: str) -> None:
        if not self.wants(path):
            return
        self.taken.add(path)
        why = self.unsafe()
        if why:
            self._refuse(path, why)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        run = self.getpid()  # goes on from here as each fork of K will
        pid = os.fork()
        if pid:
            try:
                os.waitpid(pid, 0)  # K0, which exits at once
            except ChildProcessError:
                pass  # SIGCHLD ignored by the program: reaped already
            return
        try:
            parked = os.fork()
            if parked:
                # Until K0 exits, K is not relaunch's child: have it known by then.
                self._tell(f"parking {parked}\n", answer=True)
                os._exit(0)
            forked = self._park(path, run)
        except BaseException:
            os._exit(1)
        if forked is None:
            os._exit(0)
        self._go_on(name, path, *forked)

    def _refuse(self, path: str, why: str) -> None:
        """Tell the supervisor why there is no checkpoint here (it says so at -v)."""
        message = {"ev": "refused", "pid": self.getpid(), "file": path, "why": why}
        self._tell(_json(message) + "\n")

    def _tell(self, line: str, *, answer: bool = False) -> None:
        """One line to the supervisor's checkpoint socket; with ``answer``, wait for its."""
        had = "_socket" in sys.modules
        import _socket

        try:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(5.0)
                sock.connect(self.address)
                sock.sendall(line.encode("utf-8"))
                if answer:
                    sock.recv(16)
            finally:
                sock.close()
        except OSError:
            pass
        if not had:
            sys.modules.pop("_socket", None)  # as a cold start would have it

    def _executed(self, hot: str) -> list[list[Any]]:
        """Every file that ran before the checkpoint, in import order, with (mtime, size)
        as the program saw it: the finder's reports, then what came loaded (the zygote's
        preloaded modules, the main script)."""
        files = [[p, *seen] for p, seen in self.channel.seen.items() if p != hot]
        known = set(self.channel.seen)
        known.add(hot)
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                full = os.path.abspath(path)
                if full not in known:
                    known.add(full)
                    files.append([full, *_seen(full)])
        return files

    def _park(self, path: str, run: int) -> Any:
        """In K: serve forks; returns in each process forked from it, never in K. ``run``
        is the process that went on from the import (what it writes, K's spare copies)."""
        os.setpgid(0, 0)  # a stop of the program's group must not reach it
        for fd in (self.channel.write_fd, self.channel.read_fd):
            try:
                os.close(fd)  # the supervisor sees the program's pipes close with it
            except OSError:
                pass
        for fn in list(self.channel.parking):  # before ``before``: what they load stays
            try:
                fn()
            except Exception:
                pass
        before = set(sys.modules)
        files = self._executed(path)
        forkserver = load_forkserver()
        import gc
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.address)
        server = forkserver.ForkServer(sock, own_pages=True, like=run)
        server.send({"ev": "checkpoint", "pid": self.getpid(), "file": path, "files": files})
        # Worked out here, once, not in each fork: there, a look at every module (or the
        # freeing of what was sent) would touch, and so copy, pages it shares with K.
        del files
        ours = set(sys.modules) - before  # relaunch's, not the program's
        del before
        # A collection in a fork would touch, and so copy, every page it shares with K.
        gc.freeze()
        forked = server.serve()
        if forked is not None:
            for name in ours:
                sys.modules.pop(name, None)
        return forked

    def _go_on(self, name: str, path: str, message: Any, report_w: int, control_r: int) -> None:
        """In a process forked from K: become the new run of the program."""
        channel = self.channel
        self.pid = self.getpid()
        for fd in (report_w, control_r):
            os.set_inheritable(fd, False)
        channel.write_fd, channel.read_fd = report_w, control_r
        channel._lock = threading.Lock()
        hot = message.get("hot") if isinstance(message, dict) else None
        if isinstance(hot, list):
            self.hot = {h for h in hot if isinstance(h, str)}
        listening, channel._listening = channel._listening, False
        if listening:
            channel._start_listening()
        # What the program asked of the supervisor before the checkpoint, asked again:
        # this is a new run to it.
        if channel.hooks:
            channel.send({"t": "hooks"})
        if channel.judge is not None:
            channel.send({"t": "changes"})
        reseed()
        random = sys.modules.get("random")
        if random is not None:
            # Reseeded at the fork: what this process draws from now on is its own.
            self.random_state = random.getstate()
        # A cold start would see modules created since the checkpoint was parked.
        for finder in list(sys.meta_path):
            invalidate = getattr(finder, "invalidate_caches", None)
            if callable(invalidate):
                invalidate()
        channel.reported.discard(path)
        channel.report_module(name, path)  # with what it sees of the file now
        channel.send({"t": "running"})


def _own_read(what: str) -> str:
    """``what (in FILE)`` when the module whose import is running is the program's own
    (the innermost module-level frame); "" for one of the standard library's or a
    package's: their import-time state is the zygote's in every warm start already
    (multiprocessing's authentication key)."""
    frame: Any = sys._getframe(2)
    while frame is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    if frame is None:
        return ""
    filename = os.path.abspath(frame.f_code.co_filename)
    installed = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    places = (*(p.rstrip(os.sep) + os.sep for p in installed), _RELAUNCH_DIR)
    if frame.f_code.co_filename.startswith("<") or filename.startswith(places):
        return ""
    return f"{what} (in {os.path.basename(filename)})"


_checkpoints: _Checkpoints | None = None


def enable_checkpoints(channel: Channel, address: str, hot: list[str]) -> None:
    """Park a checkpoint before each of the ``hot`` files this process runs."""
    global _checkpoints
    _checkpoints = _Checkpoints(channel, address, hot) if address and hot else None


def _run_hook(hook: Callable[[Any], None], module: Any) -> None:
    try:
        hook(module)
    except Exception as exc:  # a hook is a convenience: never the program's failure
        sys.stderr.write(f"[relaunch] warning: integration hook for {module.__name__}: {exc}\n")


_HOOKS_ENV = "_RELAUNCH_IMPORT_HOOKS"


def _import_hooks() -> dict[str, Callable[[Any], None]]:
    """``_RELAUNCH_IMPORT_HOOKS``: ``MODULE=FILE`` entries (os.pathsep between them).
    Each FILE (standard library only, like this one) is loaded by path, and its
    ``after_import(module)`` called once MODULE has run in this process."""
    hooks: dict[str, Callable[[Any], None]] = {}
    listed = os.environ.get(_HOOKS_ENV, "")
    if not listed:
        return hooks
    import importlib.util

    for entry in listed.split(os.pathsep):
        name, _, path = entry.partition("=")
        if not name or not os.path.isfile(path):
            continue
        spec = importlib.util.spec_from_file_location(
            "_relaunch_hook_" + name.replace(".", "_"), path
        )
        if spec is None or spec.loader is None:
            continue
        hook_module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(hook_module)
        except Exception as exc:
            sys.stderr.write(f"[relaunch] warning: cannot load {path}: {exc}\n")
            continue
        after = getattr(hook_module, "after_import", None)
        if callable(after):
            hooks[name] = after
    return hooks


def _source_file(spec: Any) -> str:
    """The file to watch for a module: its own, or the archive holding it (a module
    imported from ``app.pyz`` or an egg has an origin inside the zip, no file of its own)."""
    origin = os.path.abspath(str(spec.origin))
    archive = getattr(spec.loader, "archive", None)
    if isinstance(archive, str) and not os.path.exists(origin):
        return os.path.abspath(archive)
    return origin


def runs_main_of(target: str) -> bool:
    """True when ``python TARGET`` runs TARGET's ``__main__.py``: a folder or a zip archive
    (``app.pyz``). CPython decides with the path hooks, as here: one that accepts TARGET
    as a sys.path entry makes it one."""
    for hook in sys.path_hooks:
        try:
            hook(target)
        except ImportError:
            continue
        except OSError:
            return False
        return True
    return False


_ROOTS: list[str] = []  # _excluded_roots(), once known: they cannot change in a process


def _excluded_roots() -> list[str]:
    """Folders of the standard library and installed packages of this interpreter
    (worked out once: 0.7 ms, and every import that finds no module asks)."""
    if not _ROOTS:
        _ROOTS.extend(_find_excluded_roots())
    return list(_ROOTS)


_PREFIXES: list[tuple[str, ...]] = []  # _root_prefixes(), once known


def _root_prefixes() -> tuple[str, ...]:
    """The excluded roots as path prefixes (a trailing separator), for ``startswith``."""
    if not _PREFIXES:
        _PREFIXES.append(tuple(root.rstrip(os.sep) + os.sep for root in _excluded_roots()))
    return _PREFIXES[0]


def _find_excluded_roots() -> list[str]:
    import site
    import sysconfig

    roots: set[str] = set()
    bases: list[dict[str, str]] = [{}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}]
    for variables in bases:
        paths = sysconfig.get_paths(vars=variables) if variables else sysconfig.get_paths()
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            if paths.get(key):
                roots.add(paths[key])
    try:
        roots.update(site.getsitepackages())
    except AttributeError:
        pass
    try:
        roots.add(site.getusersitepackages())
    except AttributeError:
        pass
    return sorted(os.path.realpath(r) for r in roots if r)


def installed_roots() -> list[str]:
    """What ``bootstrap.py --roots`` reports, for the interpreter running this."""
    return _excluded_roots()


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in out):
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _missing_module_places(exc: BaseException) -> list[list[Any]]:
    """Where each module a ModuleNotFoundError of the chain says is missing would be
    found, were it created: ``NAME.py`` and ``NAME/__init__.py`` in every folder the
    import searched (its parent package's, else sys.path), outside the standard library
    and installed packages. As ``mods`` entries, each seen missing (mtime -1): one
    created before the supervisor looks is then a change, as an edit made while a
    module loaded is. Watching them lets the program start once the module appears
    (``relaunch serve nosuchmod:app``, an import of a module not written yet)."""
    places: list[list[Any]] = []
    for error in _chain(exc):
        name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
        if not isinstance(name, str) or not name:
            continue
        parent = name.rpartition(".")[0]
        package = sys.modules.get(parent) if parent else None
        search = getattr(package, "__path__", None) or [] if parent else sys.path
        places.extend(_missing_places(name, search))
    return places


def _missing_places(name: str, search: Any) -> list[list[Any]]:
    """Where module ``name`` would be found in the folders ``search`` (its parent
    package's ``__path__``, or sys.path), outside the standard library and installed
    packages: ``NAME.py`` and ``NAME/__init__.py`` in each, as ``mods`` entries seen
    missing (mtime -1)."""
    roots = _root_prefixes()
    last = name.rpartition(".")[2]
    places: list[list[Any]] = []
    for folder in list(search or ()):
        if not isinstance(folder, str):
            continue
        folder = os.path.abspath(folder or os.curdir)
        if not (folder + os.sep).startswith(roots) and os.path.isdir(folder):
            places.append([name, os.path.join(folder, last + ".py"), -1])
            places.append([name, os.path.join(folder, last, "__init__.py"), -1])
    return places


def _traceback_files(exc: BaseException) -> list[str]:
    files: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SyntaxError) and current.filename:
            files.append(current.filename)
        tb = current.__traceback__
        while tb is not None:
            files.append(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    here = os.path.abspath(__file__)
    return [
        os.path.abspath(f)
        for f in files
        if f and not f.startswith("<") and os.path.exists(f) and os.path.abspath(f) != here
    ]


# relaunch's own package (this file's grandparent folder): its frames lead to the
# program's, and are not the program's business.
_RELAUNCH_DIR = os.path.dirname(os.path.dirname(_HERE)) + os.sep


def _is_plumbing(filename: str) -> bool:
    """A frame of relaunch, runpy or the import machinery, not of the program."""
    if filename.startswith(("<frozen runpy>", "<frozen importlib")):
        return True
    full = os.path.abspath(filename)
    if full.startswith(_RELAUNCH_DIR) or full.endswith("runpy.py"):
        return True
    return full.endswith(os.path.join("importlib", "__init__.py"))


def _user_traceback(exc: BaseException) -> BaseException:
    """The traceback without the leading frames of relaunch, runpy and importlib, as
    Python itself would have shown it for the program run directly."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if _is_plumbing(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
            continue
        break
    return exc.with_traceback(tb)


def _fresh_main(file: str | None = None) -> Any:
    import types

    main: Any = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = sys.modules["builtins"]
    if file is not None:
        from importlib.machinery import SourceFileLoader

        main.__file__ = file
        main.__cached__ = None
        main.__loader__ = SourceFileLoader("__main__", file)
    old = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    if old is not None and sys.modules.get("__mp_main__") is old:
        # multiprocessing, imported before (a zygote preloads it), made its alias of the
        # __main__ of then: in a cold start that alias is the program's.
        sys.modules["__mp_main__"] = main
    return main


def _script_dir(script: str) -> str:
    # As CPython computes sys.path[0] for a script: the folder of the resolved file.
    return os.path.dirname(os.path.realpath(script))


def _original_argv(mode: str, target: str, args: list[str], entry: str) -> list[str]:
    """sys.orig_argv as if the user's command had run without relaunch's ``entry`` script."""
    orig = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(orig):
        if os.path.abspath(arg) == entry:
            program = {"script": [target], "module": ["-m", target], "code": ["-c", target]}
            return orig[:i] + program.get(mode, ["-"]) + list(args)
    return orig


def prepare(mode: str, target: str, args: list[str], entry: str = __file__) -> None:
    """Make sys.argv and sys.path what ``python TARGET`` would have given the program.

    ``entry`` is the script Python actually ran (this file, or the zygote's).
    """
    entry = os.path.abspath(entry)
    original_argv = _original_argv(mode, target, args, entry)
    safe_path = getattr(sys.flags, "safe_path", False)
    as_entry = mode == "script" and runs_main_of(target)
    if as_entry:
        # The folder or archive itself is sys.path[0], even with -P (as CPython does).
        sys.argv = [target, *args]
        first = os.path.abspath(target)
    elif mode == "script":
        sys.argv = [target, *args]
        first = _script_dir(target)
    elif mode == "module":
        sys.argv = ["-m", *args]
        first = os.getcwd()
    else:
        sys.argv = ["-c" if mode == "code" else "-", *args]
        first = ""
    if safe_path and not as_entry:
        if sys.path and sys.path[0] == _script_dir(entry):
            del sys.path[0]
    elif sys.path and sys.path[0] == _script_dir(entry):
        sys.path[0] = first
    else:
        sys.path.insert(0, first)
    if original_argv:
        sys.orig_argv = list(original_argv)


def run(mode: str, target: str) -> None:
    """Run the program as ``__main__``. Exceptions propagate to the caller."""
    if mode == "script" and runs_main_of(target):
        import runpy

        _fresh_main()
        # What CPython runs for `python DIR` or `python app.pyz` (prepare() put TARGET
        # first on sys.path): its __main__.py, with __spec__.name "__main__".
        runpy._run_module_as_main("__main__", alter_argv=False)  # type: ignore[attr-defined]
    elif mode == "script":
        with open(target, "rb") as f:
            source = f.read()
        path = os.path.abspath(target)  # as CPython 3.9+ sets __main__.__file__
        main = _fresh_main(path)
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    elif mode == "module":
        import runpy

        _fresh_main()
        # What `python -m` itself calls: exact __main__ semantics, argv[0] set to the file.
        runpy._run_module_as_main(target, alter_argv=True)  # type: ignore[attr-defined]
    elif mode == "code":
        main = _fresh_main()
        exec(compile(target, "<string>", "exec", dont_inherit=True), main.__dict__)
    else:
        main = _fresh_main()
        text = sys.stdin.read()
        exec(compile(text, "<stdin>", "exec", dont_inherit=True), main.__dict__)


def freeze_at_exit() -> None:
    """Have the interpreter's shutdown skip its garbage collections (an atexit handler).

    At exit Python collects garbage more than once while it tears the modules down;
    in a large program that is most of its exit: 0.85-0.9 s for a 20-app Django
    project, against tens of milliseconds without the collections, and a reload waits
    for the old process to be gone. So the objects are frozen, out of the collector's
    sight, and every module is kept alive until the shutdown's last step, which
    clears the dicts of the modules still alive, in reverse import order: the objects
    a module holds are then released by their reference count, as they would have
    been by the collections (a file never closed is flushed and closed, ``__del__``
    runs). Everything before is unchanged: atexit handlers (this one runs among them,
    with no effect on them) and the join of non-daemon threads. What no longer
    happens is the collection of reference cycles no module holds, whose ``__del__``
    Python never promises to run at exit."""
    import gc

    alive: list[Any] = [list(sys.modules.values())]
    alive.append(alive)  # a cycle: frozen, it is never collected, so neither are they
    gc.freeze()


_freeze_registered = [False]


def install(channel: Channel, *, report_loaded: bool = True) -> None:
    """Start reporting imports; register the channel for relaunch's public API.

    ``report_loaded``: also report what is already imported. A warm child skips it:
    the supervisor knows what its zygote holds, and walking every module would touch
    (and so copy) the memory the fork shares: 14 ms for 1,600 modules.
    """
    import atexit  # built in, loaded at every interpreter's start
    import types

    if not _freeze_registered[0]:
        _freeze_registered[0] = True
        atexit.register(freeze_at_exit)

    module: Any = types.ModuleType(_CHANNEL_MODULE)
    module.channel = channel
    # Keep this file's module alive once the program's __main__ replaces it.
    module.bootstrap = sys.modules.get("__main__")
    sys.modules[_CHANNEL_MODULE] = module
    hooks = _import_hooks()
    for name in list(hooks):
        if name in sys.modules:  # preloaded (a warm start's zygote imported it)
            _run_hook(hooks.pop(name), sys.modules[name])
    sys.meta_path.insert(0, ReportingFinder(channel.report_module, hooks, channel.report_missing))
    if report_loaded:
        channel.report_loaded()


def execute(channel: Channel, mode: str, target: str) -> int:
    """Run the program, report a crash's files, and return the exit status."""
    if mode == "script" and os.path.isfile(target):
        # A script, or an archive whose __main__.py the finder reports as the archive.
        channel.report_module("__main__", os.path.abspath(target))
    channel.send({"t": "running"})
    try:
        run(mode, target)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        report_failure(channel, exc)
        exc = _user_traceback(exc)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 1
    return 0


def report_failure(channel: Channel, exc: BaseException, *, brief: bool = False) -> None:
    """Tell the supervisor the files of a crash (to watch) and what happened (to show).

    ``brief``: a mistake told in one sentence (no traceback to show)."""
    import traceback

    channel.report_loaded()
    channel.send_paths("failed", _traceback_files(exc))
    channel.send_paths("mods", _missing_module_places(exc))
    summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
    text = ""
    if not brief:
        trimmed = _user_traceback(exc)
        text = "".join(traceback.format_exception(type(trimmed), trimmed, trimmed.__traceback__))
    text = text[-_MAX_TRACEBACK:]
    for start in range(0, len(text), _TRACEBACK_CHUNK):
        channel.send({"t": "tb", "text": text[start : start + _TRACEBACK_CHUNK]})
    if brief:
        summary = str(exc)
    path, line = _failure_location(exc)
    channel.send({"t": "error", "summary": summary[:2000], "file": path, "line": line})


def _failure_location(exc: BaseException) -> tuple[str, int]:
    """The file and line to show first: a syntax error's own, else the innermost frame
    in the program's code (not the standard library's or a package's)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return os.path.abspath(exc.filename), int(exc.lineno)
    roots = _root_prefixes()
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    for path, line in reversed(frames):
        full = os.path.abspath(path)
        if not path.startswith("<") and not full.startswith(roots) and not _is_plumbing(path):
            return full, line
    # No frame of the program's own: the innermost one that is not relaunch's.
    for path, line in reversed(frames):
        if not _is_plumbing(path) and not path.startswith("<"):
            return os.path.abspath(path), line
    return "", 0


def _channel_from_env() -> Channel:
    spec = os.environ.pop("_RELAUNCH_IPC", "")
    try:
        write_fd, read_fd = (int(x) for x in spec.split(","))
    except ValueError:
        sys.stderr.write("relaunch bootstrap: started without a supervisor\n")
        raise SystemExit(2) from None
    for fd in (write_fd, read_fd):
        os.set_inheritable(fd, False)
    return Channel(write_fd, read_fd)


def main() -> None:
    if sys.argv[1:] == ["--roots"]:
        # Asked by `relaunch run --explain` about an interpreter it will not run.
        sys.stdout.write(_json({"executable": sys.executable, "roots": _excluded_roots()}))
        return
    if len(sys.argv) < 3:
        sys.stderr.write("usage: bootstrap.py MODE TARGET [ARGS...]\n")
        raise SystemExit(2)
    mode, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    channel = _channel_from_env()
    install(channel)
    hot = [h for h in os.environ.pop(HOT_ENV, "").split(os.pathsep) if h]
    enable_checkpoints(channel, os.environ.pop(CHECKPOINTS_ENV, ""), hot)
    prepare(mode, target, args)
    status = execute(channel, mode, target)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
