"""Apache mod_wsgi (daemon mode): reload after preflight, from the WSGI script.

In the WSGI script (the classic ``monitor.py`` recipe of mod_wsgi's "Reloading Source
Code", with relaunch's watcher)::

    from relaunch.integrations import mod_wsgi as reloader
    reloader.start()                  # OS events; start(interval=1.0) polls instead
    reloader.track("site.cf")         # also watch this file (relative: to the script)

    from myapp import application

Theory of operation
-------------------
:func:`start` runs one daemon thread in the daemon process: relaunch's in-process
:class:`~relaunch.inprocess.Monitor`, which watches the files of the modules this
process imported (``sys.modules``, standard library, installed packages and relaunch
itself excluded, as under ``relaunch run``), every module imported later (a meta-path
finder reports it when it is found), the WSGI script and :func:`track`-ed paths, with
relaunch's ignore rules, settle window and content fingerprints (``[tool.relaunch]``
next to the script and ``RELAUNCH_*`` apply). On a settled, real change it
**preflights** the WSGI script (imports it in a throwaway process with this
interpreter, ``sys.path`` and working folder). A failure is logged with its traceback
to the Apache error log; the process keeps serving what it loaded and the next change
tries again. Only after a passed preflight is the process restarted, the way mod_wsgi
wants it:

* by default, like the recipe: ``SIGINT`` to itself. mod_wsgi stops taking new
  requests in this process, lets the ones in flight finish (up to the daemon's
  ``shutdown-timeout``, 5 s by default), and Apache starts a new process, which loads
  the new code (at once when the script is preloaded, as under mod_wsgi-express).
  Requests that arrive meanwhile wait in the daemon group's socket backlog or go to
  the group's other processes.
* ``on_next_request=True``: the process is only marked stale, the way mod_wsgi's
  documentation suggests for preloaded applications: the modification time mod_wsgi
  recorded for the script module (``__mtime__``, an implementation detail of
  mod_wsgi that its "Reloading Source Code" page describes) is reset, so mod_wsgi's
  own script-reloading check fires at the next request: it turns that request back
  to Apache, which sends it again to a new process (it never runs old code), and
  restarts this one. An idle process restarts only when traffic comes, and the
  monitor keeps watching: a later change that fails preflight takes the mark back,
  so the process keeps serving the code it has rather than restart into broken
  code. Needs script reloading on (mod_wsgi's default; not with mod_wsgi-express
  ``--disable-reloading``).

The daemon processes of a group each watch the same files: the preflight runs once
per change for the whole group (a lock file in the temporary folder serialises them;
the first process runs it and the others reuse its verdict for identical file
contents). Outside a mod_wsgi daemon process :func:`start` does nothing (it says so
once): embedded mode cannot restart its processes this way.

A module is fingerprinted when the finder reports it, just before it is read, so an
edit that lands before the watch is set up is still a change, and a process that
started after an edit does not restart for it again. Call :func:`start` before
importing the application. What preflight cannot cover: a process that starts while
an unchecked edit is on disk (a broken save made in the second or so in which the
group restarts after a reload) imports it; its monitor restarts it once the fix
passes preflight.

``relaunch run -- mod_wsgi-express start-server ...`` is driven by :mod:`.express`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...command import looks_like_python
from ...pathtext import shown
from ...preflight import AppSpec, PreflightResult, describe_failure, run_preflight

if TYPE_CHECKING:
    from ...inprocess import Monitor as InProcessMonitor

__all__ = ["RELAUNCH_DIR", "mark_stale", "shown_paths", "start", "track", "unmark_stale"]

log = logging.getLogger(__name__)

# relaunch's own package: tooling, never the application (it may sit outside
# site-packages, e.g. an editable install).
RELAUNCH_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# -- in the daemon process: start() and track() ---------------------------------------

_lock = threading.Lock()
_tracked: list[str] = []
_reloader: _Reloader | None = None
_said_why_not = False


def _process_group() -> str | None:
    """mod_wsgi's daemon process group: None outside mod_wsgi, "" in embedded mode."""
    module = sys.modules.get("mod_wsgi")
    if module is None:
        try:
            module = importlib.import_module("mod_wsgi")
        except ImportError:
            return None
    group = getattr(module, "process_group", None)
    # The mod_wsgi package from PyPI (mod_wsgi-express) has the same name but none of
    # the attributes: only the module mod_wsgi embeds in Apache has process_group.
    return group if isinstance(group, str) else None


def _caller_globals(depth: int) -> dict[str, Any]:
    return sys._getframe(depth + 1).f_globals


def _is_script_module(name: object) -> bool:
    """The module mod_wsgi (``_mod_wsgi_<hash>``) or mod_wsgi-express (``__wsgi__``)
    loads a WSGI script as."""
    return isinstance(name, str) and (name == "__wsgi__" or name.startswith("_mod_wsgi_"))


def _find_script(caller: dict[str, Any]) -> str | None:
    """The WSGI script: the caller when it is one, else the one mod_wsgi loaded."""
    path = caller.get("__file__")
    if _is_script_module(caller.get("__name__")) and isinstance(path, str):
        return os.path.abspath(path)
    for name in ("__wsgi__", *sorted(n for n in sys.modules if n.startswith("_mod_wsgi_"))):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path:
            return os.path.abspath(path)
    return None


def _anchor(caller: dict[str, Any]) -> str:
    path = caller.get("__file__")
    return os.path.dirname(os.path.abspath(path)) if isinstance(path, str) else os.getcwd()


def track(path: str | os.PathLike[str]) -> None:
    """Also restart when this file changes (the recipe's ``track``). A relative path is
    taken from the calling file's folder. Before :func:`start`, it is kept for it."""
    absolute = os.path.normpath(os.path.join(_anchor(_caller_globals(1)), os.fspath(path)))
    with _lock:
        if absolute not in _tracked:
            _tracked.append(absolute)
        current = _reloader
    if current is not None:
        current.monitor.add([absolute], "track()")


def _say_once(level: int, message: str) -> None:
    global _said_why_not
    if not _said_why_not:
        _said_why_not = True
        log.log(level, message)


def _setup_logging() -> None:
    """In a daemon process stderr is Apache's error log: say what relaunch does there."""
    logger = logging.getLogger("relaunch")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[relaunch] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def start(
    interval: float | None = None,
    *,
    on_next_request: bool = False,
    preflight: bool = True,
    preflight_timeout: float = 60.0,
    script: str | os.PathLike[str] | None = None,
    callable_object: str = "application",
    watch: Iterable[str | os.PathLike[str]] = (),
) -> bool:
    """Restart this mod_wsgi daemon process, after preflight, when its code changes.

    Call it from the WSGI script, before importing the application. ``interval=None``
    uses OS events (polling only where they do not work); a number polls every that
    many seconds. ``on_next_request``: mark the process stale instead of restarting it
    now (see the module doc). ``script``/``callable_object``: what the preflight
    imports (default: the calling WSGI script, ``application``). ``watch``: more
    files, folders or globs (relative: to the calling file's folder, which is also
    where ``[tool.relaunch]`` settings are looked for).

    Returns True if this process is watched. Safe to call again (it adds ``watch``);
    outside a mod_wsgi daemon process it does nothing and says why, once. Raises
    FileNotFoundError for a ``watch`` path that does not exist.
    """
    global _reloader
    caller = _caller_globals(1)
    anchor = _anchor(caller)
    with _lock:
        current = _reloader
    if current is not None:
        current.add_watch(watch, anchor)
        return True
    group = _process_group()
    if not group:
        if group is None:
            _say_once(logging.INFO, "not in a mod_wsgi daemon process: not watching")
        else:
            _setup_logging()
            _say_once(
                logging.WARNING,
                "mod_wsgi embedded mode: relaunch cannot restart Apache's own processes; "
                "use daemon mode (WSGIDaemonProcess, or mod_wsgi-express) to reload",
            )
        return False
    _setup_logging()
    path = os.path.abspath(os.fspath(script)) if script is not None else _find_script(caller)
    if path is None and preflight:
        log.error("cannot tell which WSGI script to preflight: pass start(script=...)")
        return False
    from ...config import ConfigError

    try:
        new = _Reloader(
            script=path,
            callable_object=callable_object,
            interval=interval,
            on_next_request=on_next_request,
            preflight=preflight,
            preflight_timeout=preflight_timeout,
            watch=watch,
            anchor=anchor,
            group=group,
        )
    except ConfigError as exc:
        log.error("not watching: %s", exc)  # the application itself still loads
        return False
    with _lock:
        if _reloader is not None:
            return True  # another thread won
        _reloader = new
        tracked = list(_tracked)
    new.start(tracked)
    return True


def mark_stale(modules: Mapping[str, object] | None = None) -> dict[str, int]:
    """Make mod_wsgi restart this daemon process at its next request: reset the
    ``__mtime__`` it recorded for each loaded WSGI script. Returns the previous values
    (for :func:`unmark_stale`); empty if there was nothing to mark."""
    found: Mapping[str, object] = sys.modules if modules is None else modules
    previous: dict[str, int] = {}
    for name, module in list(found.items()):
        if not isinstance(name, str) or not name.startswith("_mod_wsgi_"):
            continue
        mtime = getattr(module, "__mtime__", None)
        if isinstance(mtime, int) and not isinstance(mtime, bool):
            previous[name] = mtime
            setattr(module, "__mtime__", 0)  # noqa: B010
    return previous


def unmark_stale(previous: Mapping[str, int], modules: Mapping[str, object] | None = None) -> None:
    """Undo :func:`mark_stale` (where mod_wsgi has not acted on it yet)."""
    found: Mapping[str, object] = sys.modules if modules is None else modules
    for name, mtime in previous.items():
        module = found.get(name)
        if module is not None and getattr(module, "__mtime__", None) == 0:
            setattr(module, "__mtime__", mtime)  # noqa: B010


def _interpreter() -> str:
    """A Python interpreter for the preflight: this one, as a program. In a daemon
    process ``sys.executable`` may be Apache when mod_wsgi could not tell."""
    candidates = [
        sys.executable,
        *(os.path.join(sys.prefix, "bin", n) for n in ("python3", "python")),
    ]
    for candidate in candidates:
        if candidate and looks_like_python(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def shown_paths(paths: Sequence[str], base: str) -> str:
    names = [os.path.relpath(p, base) if p.startswith(base + os.sep) else p for p in paths[:3]]
    more = f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
    return ", ".join(shown(name) for name in names) + more


class _GroupVerdicts:
    """One preflight per change for a whole daemon process group.

    A lock file, private to this user, in the temporary folder: whoever holds it runs
    the preflight and writes the verdict with the key of the file contents it checked;
    the others wait on the lock, then reuse that verdict if their key is the same.
    Falls back to a preflight of its own whenever the file is not safely ours.
    """

    def __init__(self, name: str) -> None:
        self.path = os.path.join(tempfile.gettempdir(), name)

    def _open(self) -> int | None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError:
            return None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            os.close(fd)  # someone else's file: trust nothing in it
            return None
        return fd

    def run(
        self, key: Callable[[], object], check: Callable[[], PreflightResult]
    ) -> tuple[PreflightResult, int]:
        """``check()`` (a preflight) unless the group already judged ``key()``."""
        fd = self._open()
        if fd is None:
            return check(), os.getpid()
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)  # another process's preflight: bounded by its timeout
            wanted = key()
            try:
                saved = json.loads(os.pread(fd, 1 << 20, 0).decode("utf-8") or "{}")
            except (ValueError, OSError):
                saved = {}
            if isinstance(saved, dict) and saved.get("key") == wanted:
                result = PreflightResult(
                    bool(saved.get("ok")),
                    str(saved.get("summary", "")),
                    str(saved.get("output", "")),
                    files=tuple(f for f in saved.get("files", ()) if isinstance(f, str)),
                )
                return result, int(saved.get("pid", 0))
            result = check()
            data = {
                "key": wanted,
                "pid": os.getpid(),
                "ok": result.ok,
                "summary": result.summary,
                "output": result.output[-100_000:],
                "files": list(result.files),
            }
            blob = json.dumps(data).encode("utf-8")
            os.ftruncate(fd, 0)
            os.pwrite(fd, blob, 0)
            return result, os.getpid()
        finally:
            os.close(fd)  # releases the lock


class _Reloader:
    """The watcher of one daemon process (see the module doc)."""

    def __init__(
        self,
        *,
        script: str | None,
        callable_object: str,
        interval: float | None,
        on_next_request: bool,
        preflight: bool,
        preflight_timeout: float,
        watch: Iterable[str | os.PathLike[str]],
        anchor: str,
        group: str,
    ) -> None:
        import hashlib

        from ...config import load
        from ...inprocess import Monitor, build_watchset
        from ...watch.settle import Settler

        self.script = script
        self.callable_object = callable_object
        self.on_next_request = on_next_request
        self.preflight = preflight
        self.preflight_timeout = preflight_timeout
        self.anchor = anchor
        self.python = _interpreter()
        self.marks: dict[str, int] = {}
        settings = load({}, cwd=anchor)
        watchset = build_watchset(watch, anchor)
        watchset.set_excluded_roots((*watchset.excluded_roots, RELAUNCH_DIR))
        self.monitor: InProcessMonitor = Monitor(
            watchset,
            self._on_change,
            settler=Settler(quiet=settings.settle / 1000, max_wait=settings.settle_max / 1000),
            poll=interval is not None or settings.poll,
            poll_interval=interval if interval is not None else settings.poll_interval,
            # Not a guess from relaunch's import time: a module imported from now on is
            # fingerprinted as it is found (see start()), so an edit that lands before it
            # is watched still counts, and a process that started after an edit does not
            # restart for it again.
            loaded_after_ns=None,
            modules=self._modules,
        )
        digest = hashlib.sha256(f"{group}\0{script}\0{self.python}".encode()).hexdigest()[:20]
        self.verdicts = _GroupVerdicts(f"relaunch-mod_wsgi-{os.geteuid()}-{digest}.json")

    def _modules(self) -> list[object]:
        """sys.modules without mod_wsgi's own glue (mod_wsgi-express's handler.wsgi,
        regenerated at each server start): only the script and what it imports."""
        out: list[object] = []
        for name, module in list(sys.modules.items()):
            if _is_script_module(name) and getattr(module, "__file__", None) != self.script:
                continue
            out.append(module)
        return out

    def add_watch(self, watch: Iterable[str | os.PathLike[str]], anchor: str) -> None:
        from ...inprocess import build_watchset

        paths = list(watch)
        if paths:
            self.monitor.add_entries(build_watchset(paths, anchor).entries)

    def start(self, tracked: Sequence[str]) -> None:
        from ..._inside.bootstrap import ReportingFinder

        extra = [*tracked, *([self.script] if self.script else [])]
        self.monitor.add(extra, "the WSGI script or track()")
        watchset = self.monitor.watchset

        def found(_name: str, path: str) -> None:
            # On the importing thread, just before the module is read: what this process
            # runs is what the fingerprint says.
            if not watchset.installed(path):
                self.monitor.fingerprints.remember(path)
                self.monitor.add([path], "imported by the application")

        finder = ReportingFinder(found)
        sys.meta_path.insert(0, finder)
        from ... import inprocess

        # relaunch.trigger_reload() and relaunch.watch() in the application: this monitor's
        # reload (preflight, then the restart mod_wsgi wants), not nothing.
        inprocess.adopt(self.monitor)
        self.monitor.start()
        module = sys.modules.get("mod_wsgi")
        subscribe = getattr(module, "subscribe_shutdown", None)
        if callable(subscribe):
            subscribe(lambda *_args, **_kwargs: self.monitor.stop())
        how = "mark it stale for mod_wsgi" if self.on_next_request else "restart it (SIGINT)"
        check = "preflight, then " if self.preflight else ""
        log.info("watching daemon process %d's modules; on a change: %s%s", os.getpid(), check, how)

    # -- on the monitor's thread -----------------------------------------------------

    def _key(self) -> list[Any]:
        from ...watch.fingerprint import take

        files = sorted(self.monitor.watchset.files() | ({self.script} if self.script else set()))
        key: list[Any] = [self.script, self.callable_object, self.python, sys.path, os.getcwd()]
        for path in files:
            fp = take(path)
            key.append(
                [path, None if fp is None else [fp.mtime_ns, fp.size, (fp.digest or b"").hex()]]
            )
        return key

    def _check(self) -> PreflightResult:
        assert self.script is not None
        return run_preflight(
            AppSpec("script", self.script, self.callable_object),
            python=self.python,
            cwd=os.getcwd(),
            paths=[p for p in sys.path if isinstance(p, str) and p],
            timeout=self.preflight_timeout,
        )

    def _on_change(self, changed: list[str]) -> None:
        try:
            self._reload(changed)
        except Exception:
            log.exception("reload failed; still serving the previous version")
            self.monitor.reloading = False

    def _reload(self, changed: list[str]) -> None:
        what = shown_paths(changed, self.anchor) or "reload requested"
        if self.preflight:
            started = time.monotonic()
            result, by = self.verdicts.run(self._key, self._check)
            took = (time.monotonic() - started) * 1000
            by_whom = "" if by == os.getpid() else f" (checked by daemon process {by})"
            if not result.ok:
                if not by_whom:
                    log.error("%s", describe_failure(result))  # the traceback, once per group
                undo = ""
                if self.marks:
                    unmark_stale(self.marks)
                    self.marks = {}
                    undo = "not restarting after all: "
                log.error(
                    "%s changed; preflight failed%s: %s; %sstill serving the previous version",
                    what,
                    by_whom,
                    result.summary,
                    undo,
                )
                self.monitor.reloading = False  # keep watching: the next change retries
                return
            self.monitor.add(result.files, "imported by the application (preflight)")
            checked = f"preflight ok{by_whom} in {took:.0f} ms; "
        else:
            checked = ""
        if self.on_next_request:
            marks = mark_stale()
            if marks:
                for name, mtime in marks.items():
                    self.marks.setdefault(name, mtime)
                log.info(
                    "%s changed; %sdaemon process %d restarts at its next request",
                    what,
                    checked,
                    os.getpid(),
                )
                self.monitor.reloading = False  # a later broken change takes the mark back
                return
            log.warning("no WSGI script module to mark stale: restarting now instead")
        log.info("%s changed; %srestarting daemon process %d", what, checked, os.getpid())
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os.kill(os.getpid(), signal.SIGINT)  # mod_wsgi's graceful shutdown of this process
