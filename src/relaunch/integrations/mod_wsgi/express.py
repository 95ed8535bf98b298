"""mod_wsgi-express under ``relaunch run``: graceful reloads, after preflight.

Under ``relaunch run -- mod_wsgi-express start-server app.wsgi ...`` the
:class:`ModWsgiDriver` reloads gracefully instead of restarting Apache (which would
refuse connections while it restarts): on a change it preflights the application
with mod_wsgi-express's interpreter, then touches the WSGI script (the module file
with ``--application-type module``), mod_wsgi's own signal that the code changed, and
sends the daemon processes mod_wsgi's graceful SIGINT, so that they restart now
rather than each at its next request (an idle one would otherwise load, much later,
whatever is on disk then). The listening socket never closes; requests wait in the
daemon group's queue while the processes restart. Apache's daemon processes are not
started by relaunch's bootstrap and cannot report their imports, so the driver
watches, itself, the files the preflight imported (plus ``-w`` paths, through the
supervisor).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ...command import Command
from ...preflight import AppSpec, PreflightResult, describe_failure, run_preflight
from ...run.drivers import Driver, NotReloaded
from . import RELAUNCH_DIR, shown_paths

if TYPE_CHECKING:
    from ...production.monitor import Monitor
    from ...run.child import Child
    from ...watch.fingerprint import Fingerprint

__all__ = [
    "EmbeddedDriver",
    "ExpressOptions",
    "ModWsgiDriver",
    "apache_main_process",
    "daemon_processes",
    "driver_for",
    "express_argv",
    "module_file",
    "parse_express_args",
]

log = logging.getLogger(__name__)

# mod_wsgi-express 6 start-server options (optparse) that take no value, or two values;
# every other option takes one. Unknown options are assumed to take one value.
_FLAGS = frozenset(
    {
        "--access-log", "--allow-localhost", "--chunked-request", "--compress-responses",
        "--debug-mode", "--debugger-startup", "--directory-listing", "--disable-reloading",
        "--embedded-mode", "--enable-coverage", "--enable-debugger", "--enable-docs",
        "--enable-gdb", "--enable-profiler", "--enable-recorder", "--enable-sendfile",
        "--enable-telemetry", "--error-override", "--free-threading", "--http2",
        "--https-only", "--log-to-terminal", "--orphan-interpreter", "--reload-on-changes",
        "--rotate-logs", "--server-metrics", "--server-status", "--setup-only",
        "--ssl-environment", "--startup-log", "--verbose-debugging", "--with-cgi",
        "--with-php5",
    }
)  # fmt: skip
_PAIRS = frozenset(
    {
        "--url-alias", "--error-document", "--proxy-mount-point", "--proxy-url-alias",
        "--proxy-virtual-host", "--setenv", "--add-handler", "--service-script",
        "--service-user", "--service-group", "--service-log-file",
    }
)  # fmt: skip
_VALUED = frozenset(
    {
        "--application-type", "--entry-point", "--callable-object", "--working-directory",
        "--python-path", "--server-root", "--processes", "--threads", "--host", "--port",
        "--user", "--group", "--application-group", "--process-name", "--mount-point",
    }
)  # fmt: skip
_KNOWN = _FLAGS | _PAIRS | _VALUED


def _long_name(text: str) -> str:
    """optparse accepts any unambiguous prefix of a long option."""
    if text in _KNOWN:
        return text
    matches = [name for name in _KNOWN if name.startswith(text)]
    return matches[0] if len(matches) == 1 else text


@dataclass(frozen=True)
class ExpressOptions:
    """What the driver needs from ``mod_wsgi-express SUBCOMMAND [options] [entry point]``."""

    command: str = ""
    entry_point: str | None = None
    application_type: str = "script"
    callable_object: str = "application"
    working_directory: str | None = None
    python_paths: tuple[str, ...] = ()
    processes: int | None = None
    disable_reloading: bool = False
    reload_on_changes: bool = False
    embedded_mode: bool = False
    setup_only: bool = False
    unknown: tuple[str, ...] = field(default=())

    def unsupported(self) -> str | None:
        """Why touching the script cannot reload this server (None: it can)."""
        if self.setup_only:
            return "--setup-only starts no server"
        if self.embedded_mode:
            return "--embedded-mode has no daemon processes to restart"
        if self.disable_reloading:
            return "--disable-reloading turns off mod_wsgi's script reloading"
        if self.application_type not in ("script", "module"):
            return f"--application-type {self.application_type} is not supported"
        if not self.entry_point:
            hint = f" (unknown options: {' '.join(self.unknown)})" if self.unknown else ""
            return f"no WSGI script or module found in its arguments{hint}; pass --entry-point"
        return None

    def workdir(self, cwd: str) -> str:
        return os.path.normpath(os.path.join(cwd, self.working_directory or "."))

    def paths(self, cwd: str) -> list[str]:
        """``sys.path`` additions, as mod_wsgi-express makes them (working folder first)."""
        out = [self.workdir(cwd)]
        out += [os.path.normpath(os.path.join(cwd, p)) for p in self.python_paths]
        return list(dict.fromkeys(out))

    def app_spec(self, cwd: str) -> AppSpec | None:
        if not self.entry_point:
            return None
        if self.application_type == "module":
            return AppSpec("module", self.entry_point, self.callable_object)
        return AppSpec(
            "script", os.path.normpath(os.path.join(cwd, self.entry_point)), self.callable_object
        )


def parse_express_args(args: Sequence[str]) -> ExpressOptions:
    """Read ``mod_wsgi-express``'s arguments (subcommand first), as its optparse would:
    ``--opt value``, ``--opt=value``, unambiguous prefixes, positionals anywhere,
    ``--`` ending the options. ``--entry-point`` wins over the positional."""
    if not args:
        return ExpressOptions()
    values: dict[str, str] = {}
    flags: set[str] = set()
    paths: list[str] = []
    positionals: list[str] = []
    unknown: list[str] = []
    i = 1
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positionals.extend(args[i:])
            break
        if not arg.startswith("--") or arg == "--":
            if arg.startswith("-") and len(arg) > 1:
                unknown.append(arg)  # mod_wsgi-express has no short options
            else:
                positionals.append(arg)
            continue
        raw, eq, value = arg.partition("=")
        name = _long_name(raw)
        if name not in _KNOWN:
            unknown.append(raw)
        if name in _FLAGS:
            flags.add(name)
            continue
        count = 2 if name in _PAIRS else 1
        taken = [value] if eq else []
        while len(taken) < count and i < len(args):
            taken.append(args[i])
            i += 1
        if name == "--python-path":
            paths.extend(taken[:1])
        elif taken:
            values[name] = taken[0]
    processes: int | None = None
    try:
        processes = int(values["--processes"]) if "--processes" in values else None
    except ValueError:
        processes = None
    return ExpressOptions(
        command=args[0],
        entry_point=values.get("--entry-point") or (positionals[0] if positionals else None),
        application_type=values.get("--application-type", "script"),
        callable_object=values.get("--callable-object", "application"),
        working_directory=values.get("--working-directory"),
        python_paths=tuple(paths),
        processes=processes,
        disable_reloading="--disable-reloading" in flags,
        reload_on_changes="--reload-on-changes" in flags,
        embedded_mode="--embedded-mode" in flags,
        setup_only="--setup-only" in flags,
        unknown=tuple(unknown),
    )


def express_argv(command: Command) -> list[str] | None:
    """mod_wsgi-express's own argv (program name first) if ``command`` runs it."""
    py = command.python
    if py is not None and py.mode == "script" and os.path.basename(py.target) == "mod_wsgi-express":
        return [py.target, *py.args]
    return None


def daemon_processes(root: int | None = None) -> set[int]:
    """The mod_wsgi daemon processes among ``root``'s descendants (default: this
    process's, i.e. the servers relaunch started), by the name mod_wsgi-express gives
    them (``(wsgi:host:port:uid)``); its service scripts' processes excluded.

    The command line is compared on purpose: mod_wsgi's ``display-name`` is how its
    documentation says to tell daemon processes apart. Linux (``/proc``); elsewhere
    none are found and the touch alone restarts them, each at its next request."""
    from ... import oslayer

    found: set[int] = set()
    for pid in oslayer.descendants(os.getpid() if root is None else root):
        name = oslayer.process_command(pid) or ""
        if name.startswith("(wsgi:") and not name.startswith("(wsgi:service:"):
            found.add(pid)
    return found


def module_file(name: str, files: Iterable[str]) -> str | None:
    """The file of module ``name`` among ``files`` (those a preflight imported)."""
    tail = os.sep + name.replace(".", os.sep)
    for path in files:
        if path.endswith((tail + ".py", tail + os.sep + "__init__.py")):
            return path
    return None


# act()'s answer when every changed file is as the last reload left it.
_ALREADY = NotReloaded("already reloaded for this change")


class ModWsgiDriver(Driver):
    """Graceful reloads for ``relaunch run -- mod_wsgi-express start-server ...``: preflight,
    then touch the WSGI script and restart the daemon processes (see the module doc)."""

    name = "mod_wsgi"

    def __init__(
        self,
        options: ExpressOptions,
        python: str,
        *,
        preflight: bool = True,
        preflight_timeout: float = 60.0,
        cwd: str | None = None,
    ) -> None:
        self.options = options
        self.python = python
        self.preflight = preflight
        self.preflight_timeout = preflight_timeout
        self.cwd = cwd or os.getcwd()
        self.spec = options.app_spec(self.cwd)
        self.monitor: Monitor | None = None
        self.reloads = 0
        self._lock = threading.Lock()
        # Fingerprints of the files as of the last reload: a change heard twice (by the
        # driver's watcher and through the supervisor's -w) reloads once.
        self._loaded: dict[str, Fingerprint | None] = {}
        self.rollover_timeout = 60.0
        self._closed = False
        self._files: set[str] = set()  # what the driver asked its watcher to watch
        self._touch: str | None = None
        if self.spec is not None and self.spec.kind == "script":
            self._touch = self.spec.target

    def check(self) -> PreflightResult:
        """Import the application as mod_wsgi-express would, in a throwaway process."""
        assert self.spec is not None
        return run_preflight(
            self.spec,
            python=self.python,
            cwd=self.options.workdir(self.cwd),
            paths=self.options.paths(self.cwd),
            timeout=self.preflight_timeout,
        )

    def _touch_target(self, result: PreflightResult) -> str | None:
        if self._touch is None and self.spec is not None and self.spec.kind == "module":
            self._touch = module_file(self.spec.target, result.files)
        return self._touch

    def _already_loaded(self, changed: Sequence[str]) -> bool:
        from ...watch.fingerprint import take

        return bool(changed) and all(
            p in self._loaded and take(p) == self._loaded[p] for p in changed
        )

    def act(self, changed: Sequence[str]) -> str | None:
        """Preflight, then :meth:`_apply` the new code. Returns what was done, a
        :class:`NotReloaded`, or None (the supervisor restarts the whole server instead).
        Serialised; blocks for the preflight and the server's rollover."""
        from ...watch.fingerprint import take

        with self._lock:
            if self._already_loaded(changed):
                return _ALREADY
            before = {p: take(p) for p in self._files | set(changed)}
            started = time.monotonic()
            result = self.check()
            took = (time.monotonic() - started) * 1000
            if not result.ok:
                log.error("%s", describe_failure(result))
                if self.preflight:
                    return NotReloaded(
                        f"preflight failed: {result.summary}; still serving the previous version"
                    )
            else:
                self._watch(result.files, "imported by the application (preflight)")
            done = self._apply(result)
            if done is None:
                return None
            self._loaded.update(before)
            checked = f"preflight ok in {took:.0f} ms; " if result.ok else ""
            return checked + done

    def _apply(self, result: PreflightResult) -> str | None:
        """Touch the script and restart the daemon processes; what was done, or None."""
        target = self._touch_target(result)
        if target is None:
            log.error("cannot tell which file to touch for module %s", self.options.entry_point)
            return None
        old = daemon_processes()
        try:
            os.utime(target, None)
        except OSError as exc:
            log.error("cannot touch %s: %s", target, exc)
            return None
        touched = f"touched {os.path.relpath(target, self.cwd)}"
        return f"{touched} and {self._restart_daemons(old)}"

    def _restart_daemons(self, old: set[int]) -> str:
        """Restart the daemon processes now (mod_wsgi's graceful SIGINT: requests in
        flight finish, new ones wait in the group's queue) rather than each at its next
        request: an idle process would otherwise stay stale, then load whatever is on
        disk when traffic comes, a broken save made since included. Waits until Apache
        has replaced them; reports how long old and new served side by side."""
        from ...production import procs

        signalled = set()
        for pid in old:
            try:
                os.kill(pid, signal.SIGINT)
                signalled.add(pid)
            except OSError:
                pass  # gone, or not ours to signal: the touch restarts it at its next request
        if not signalled:
            return "mod_wsgi restarts each daemon process at its next request"
        rollover = procs.Rollover(frozenset(signalled), len(signalled), time.monotonic())
        deadline = rollover.started + self.rollover_timeout
        while not rollover.feed(daemon_processes(), time.monotonic()):
            if time.monotonic() >= deadline:
                return (
                    f"restarted {len(signalled)} daemon process(es); not all were replaced "
                    f"within {self.rollover_timeout:g} s"
                )
            time.sleep(0.02)
        gap = 0.0
        if rollover.first_new is not None and rollover.last_old_gone is not None:
            gap = max(0.0, rollover.first_new - rollover.last_old_gone)
        waited = f", none up for {gap * 1000:.0f} ms (requests waited in the queue)" if gap else ""
        return (
            f"restarted {len(signalled)} daemon process(es): every old one finished; old and "
            f"new code served side by side for {rollover.coexisted * 1000:.0f} ms{waited}"
        )

    def reload(self, child: Child, changed: Sequence[str]) -> str | None:
        from ... import oslayer

        if child.pid is None or not oslayer.process_alive(child.pid):
            return None
        done = self.act(changed)
        if done is _ALREADY:
            return "already done: the mod_wsgi driver's watcher reloaded for this change"
        return done

    def _watch(self, paths: Iterable[str], how: str) -> None:
        """Add files to the driver's watcher (under ``self._lock`` or before it runs)."""
        paths = [p for p in paths if p not in self._files]
        self._files.update(paths)
        if self.monitor is not None and paths:
            self.monitor.add_files(paths, how)

    def start_watching(self) -> None:
        """Watch the files the application imports, from a thread of relaunch: Apache's
        daemon processes are not relaunch's bootstrap and cannot report them."""
        from ...config import load
        from ...production.monitor import Monitor
        from ...run.interpreter import interpreter_info
        from ...watch.fingerprint import take
        from ...watch.rules import GitIgnore, Glob, IgnoreRules
        from ...watch.watchset import WatchEntry, WatchSet

        try:
            settings = load({}, cwd=self.cwd)
        except Exception:  # a bad pyproject.toml is the supervisor's to report
            from ...config import Settings

            settings = Settings()
        rules = IgnoreRules(
            user=[Glob(text, anchor) for text, anchor in settings.ignore],
            gitignore=GitIgnore.find(self.cwd) if settings.gitignore else None,
            bases=[self.cwd],
        )
        watchset = WatchSet(rules=rules, watch_installed=settings.watch_installed)
        monitor = Monitor(
            watchset,
            self._on_change,
            settle_ms=settings.settle,
            settle_max_ms=settings.settle_max,
            poll=settings.poll,
            poll_interval=settings.poll_interval,
        )

        def begin() -> None:
            try:
                roots = interpreter_info(self.python).roots
            except Exception:
                roots = ()
            watchset.set_excluded_roots((*roots, RELAUNCH_DIR))
            first = self.check()
            with self._lock:
                if self._closed:
                    return
                self.monitor = monitor
                if first.ok:
                    self._watch(first.files, "imported by the application (preflight)")
                else:
                    log.error("%s", describe_failure(first))
                    log.error("the application does not import: watching its folder meanwhile")
                    folder = os.path.dirname(self._touch or self.options.workdir(self.cwd))
                    watchset.entries += (WatchEntry.parse(folder, cwd=self.cwd),)
                    watchset.invalidate_tree()
                self._touch_target(first)
                if self._touch is not None:
                    self._watch([self._touch], "the WSGI script")
                for path in self._files:
                    self._loaded.setdefault(path, take(path))
                count = len(watchset.files())
            monitor.start()
            log.info(
                "mod_wsgi driver: watching %d file(s) of the application; on a change: %s%s",
                count,
                "preflight, then " if self.preflight else "",
                self.reload_how(),
            )

        threading.Thread(target=begin, name="relaunch-mod_wsgi", daemon=True).start()

    def reload_how(self) -> str:
        """What a reload does, for the log."""
        return "touch " + (
            os.path.relpath(self._touch, self.cwd) if self._touch else "its module file"
        )

    def _on_change(self, changed: list[str]) -> None:
        what = shown_paths(changed, self.cwd)
        done = self.act(changed)
        if done is _ALREADY:
            log.debug("%s changed; already reloaded for it", what)
        elif done is None:
            log.error("%s changed; cannot reload mod_wsgi in place", what)
        elif isinstance(done, NotReloaded):
            log.error("%s changed; %s", what, done)
        else:
            self.reloads += 1
            log.info("mod_wsgi reload #%d: %s changed; %s", self.reloads, what, done)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            monitor = self.monitor
        if monitor is not None:
            monitor.close()


def apache_main_process(root: int | None = None) -> int | None:
    """The Apache parent process mod_wsgi-express became, among ``root``'s descendants
    (default: this process's): the one of its processes that all the others descend from."""
    from ... import oslayer

    mine = [
        pid
        for pid in oslayer.descendants(os.getpid() if root is None else root)
        if "(mod_wsgi-express)" in (oslayer.process_command(pid) or "")
    ]
    for pid in mine:
        if set(mine) - {pid} <= set(oslayer.descendants(pid)):
            return pid
    return None


class EmbeddedDriver(ModWsgiDriver):
    """``mod_wsgi-express --embedded-mode``: no daemon processes, the application runs
    in Apache's own. It is watched the same way (the files its preflight imports); after
    a passed preflight Apache restarts gracefully (SIGUSR1): its processes finish their
    requests and are replaced by ones that load the new code, and the listening socket
    stays open."""

    name = "mod_wsgi embedded"

    def reload_how(self) -> str:
        return "graceful Apache restart (SIGUSR1)"

    def _apply(self, result: PreflightResult) -> str | None:
        apache = apache_main_process()
        if apache is None:
            return None  # not found: the supervisor restarts the whole server
        try:
            os.kill(apache, signal.SIGUSR1)
        except OSError as exc:
            log.error("cannot signal Apache (process %d): %s", apache, exc)
            return None
        return f"graceful Apache restart (SIGUSR1 to process {apache})"


def driver_for(
    command: Command,
    *,
    preflight: bool = True,
    preflight_timeout: float = 60.0,
    watch: bool = True,
) -> ModWsgiDriver | None:
    """A :class:`ModWsgiDriver` if ``command`` runs ``mod_wsgi-express start-server``;
    ``watch``: start its watcher of the application's files (relaunch run does)."""
    argv = express_argv(command)
    if argv is None or command.python is None:
        return None
    options = parse_express_args(argv[1:])
    if options.command != "start-server":
        return None
    why = options.unsupported()
    # Embedded mode: mod_wsgi's own reloading is irrelevant, Apache's graceful restart is.
    embedded = options.embedded_mode and (
        replace(options, embedded_mode=False, disable_reloading=False).unsupported() is None
    )
    if why is not None and not embedded:
        log.warning(
            "mod_wsgi-express: %s; a change restarts Apache (connections are refused meanwhile)",
            why,
        )
        return None
    if options.reload_on_changes:
        log.warning(
            "mod_wsgi-express --reload-on-changes restarts daemon processes on every save, "
            "without preflight: drop it, relaunch reloads"
        )
    driver = (EmbeddedDriver if embedded else ModWsgiDriver)(
        options,
        command.python.interpreter,
        preflight=preflight,
        preflight_timeout=preflight_timeout,
    )
    if watch:
        driver.start_watching()
    return driver
