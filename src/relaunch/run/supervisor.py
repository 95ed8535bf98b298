"""The supervisor: runs the command, watches what it depends on, restarts it on change.

Theory of operation
-------------------
Everything happens on one thread, in :meth:`Supervisor.run`, which takes events off
one queue. Other threads only put events there: the file watcher (paths touched),
each child's pipe reader (validated messages: files imported, a crash's files, a
reload request) and exit waiter, the terminal reader (Enter or "rs"), and signal
handlers (SIGHUP: reload; SIGINT/SIGTERM: stop; a second SIGINT: kill now).

Touched paths are filtered by the watch set, grouped by the settler until the tree
is quiet, and kept only if their content fingerprint really changed. A surviving
batch restarts the child: stop its process group (reload hooks, SIGTERM, SIGKILL
after the grace period), wait until the group is gone, start it again. A child
that fails is reported and left down until the next change or a manual reload;
nothing restarts in a loop.

The supervisor never imports the program: it learns the program's files from the
child's reports, which it validates and never executes.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import oslayer
from ..command import Command
from ..pycache import drop_bytecode
from ..watch.watchset import WatchSet
from . import ipc
from .backoff import Backoff
from .child import Child
from .drivers import Driver, Handled, NotReloaded
from .files import WatchedFiles
from .frontend import Failure, FrontEnd
from .guardian import Guardian
from .interpreter import interpreter_info
from .names import names
from .options import Options
from .release_swap import ReleaseSwap
from .strategy import RestartStrategy, StrategyEnv, StrategyFactory, restart_strategy
from .strays import kill_strays, known_pids
from .takeover import TakeOver
from .warm import Cold

__all__ = ["RELAUNCH_DIR", "Supervisor"]

RELAUNCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

log = logging.getLogger("relaunch")

# A program that exits 0 this soon after starting is restarted with growing delays.
_SHORT_RUN = 1.0
_REQUESTED = "reload requested by the program (relaunch.trigger_reload())"


class Supervisor:
    def __init__(
        self,
        command: Command,
        watchset: WatchSet,
        *,
        options: Options | None = None,
        strategy: StrategyFactory | None = None,
        driver: Driver | None = None,
        frontend: FrontEnd | None = None,
        releases: ReleaseSwap | None = None,
        pass_fds: tuple[int, ...] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``strategy``: how restarts start the program (built once its interpreter is
        known); ``driver``: how a server is told to reload; ``frontend``: what
        ``serve`` adds; ``releases``: the deploy symlinks to follow (a swap moves
        relaunch into the new release and restarts the program); ``pass_fds``: kept
        open in the program's processes; ``extra_env``: environment variables every
        process of the program gets (the subcommand asks the integrations for them)."""
        self.command = command
        self.watchset = watchset
        self.options = options = options or Options()
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.make_strategy = strategy or restart_strategy("cold")
        self.strategy: RestartStrategy = Cold()
        self.files = WatchedFiles(
            watchset,
            options,
            on_paths=self._on_paths,
            extra_dirs=lambda: self.strategy.watch_dirs(),
            failed=lambda: self.state == "failed",
            releases=releases,
            on_release_swapped=self._release_switched,
        )
        self.loads = TakeOver(self.files, frontend)
        read_stdin = options.read_stdin
        if read_stdin is None:
            read_stdin = sys.stdin is not None and sys.stdin.isatty()
        self.read_stdin = read_stdin
        self.child: Child | None = None
        self.state = "stopped"  # starting | running | failed | exited | stopped
        self.generation = 0
        self.reloads = 0
        self.exit_code: int | None = None
        self.interrupts = 0
        self.guardian: Guardian | None = None
        self.executable: str | None = None
        self.driver = driver or Driver()
        self.frontend = frontend
        self.pass_fds = pass_fds
        self.releases = releases
        self._retiring: list[threading.Thread] = []
        self._retiring_children: list[Child] = []
        self._stopping: Child | None = None
        self._subreaper = False
        self._failure = Failure()
        # Every process of this run inherits the token: the guardian finds them by it.
        self.run_token = secrets.token_hex(8)
        self.extra_env = {**(extra_env or {}), "_RELAUNCH_RUN": self.run_token}
        self._failed_files: set[str] = set()
        self._pending_report: tuple[int, str, float] | None = None
        self._exit_backoff = Backoff(short_run=_SHORT_RUN)
        self._restart_at: float | None = None
        self._request_backoff = Backoff(short_run=_SHORT_RUN)
        self._requested_at: float | None = None  # a trigger_reload() held back
        self._said_backoff = False

    # -- inputs (any thread) ------------------------------------------------------

    def _on_paths(self, paths: list[str]) -> None:
        self.events.put(("paths", paths, time.monotonic()))

    def _on_child_event(self, event: tuple[Any, ...]) -> None:
        self.events.put(event)

    def _read_terminal(self) -> None:
        for line in sys.stdin:
            if line.strip() in ("", "rs"):
                self.events.put(("manual", "manual reload (Enter)"))

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts >= 2:
                self._kill_now()
        self.events.put(("signal", signum))

    def _kill_now(self) -> None:
        for child in (self.child, self._stopping, *self._retiring_children):
            if child is not None and child.pid is not None:
                oslayer.kill_group(child.pid)
        log.warning("killed")
        os._exit(130)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit code for relaunch itself."""
        self._install_signals()
        self._subreaper = oslayer.make_subreaper()
        self.guardian = Guardian(self.run_token)
        python = self.command.python
        if python is not None:
            info = interpreter_info(python.interpreter)
            # relaunch's own code (the serve worker, the API) is tooling, not the program:
            # never watched, and preloaded like an installed package, even when relaunch
            # itself is an editable install.
            self.watchset.set_excluded_roots((*info.roots, RELAUNCH_DIR))
            self.executable = info.executable
            self.strategy = self.make_strategy(
                StrategyEnv(
                    python,
                    self.watchset,
                    executable=info.executable,
                    roots=(*info.roots, RELAUNCH_DIR),
                    stdin_to_child=not self.read_stdin,
                    extra_env=self.extra_env,
                    pass_fds=self.pass_fds,
                    on_event=self.events.put,
                    on_watch_dirs_changed=self.files.refresh,
                )
            )
        if self.read_stdin:
            threading.Thread(target=self._read_terminal, name="relaunch-stdin", daemon=True).start()
        self._start_child()
        self.files.baseline()
        try:
            while self.exit_code is None:
                self._step()
        finally:
            self._shutdown()
        return self.exit_code

    def _next_deadline(self) -> float | None:
        candidates = [
            t
            for t in (
                self.files.due(),
                self._restart_at,
                self._requested_at,
                self.strategy.due(),
                self.loads.at,
            )
            if t
        ]
        return min(candidates) if candidates else None

    def _step(self) -> None:
        deadline = self._next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            event = None
        if event is not None:
            self._handle(event)
        now = time.monotonic()
        self.files.tick(now)
        self.strategy.tick(now)
        if self.loads.at is not None and now >= self.loads.at:
            self.loads.take_over(self._pgid())
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self._restart("program exited: restarting (--on-exit restart)")
        if self._requested_at is not None and now >= self._requested_at:
            self._restart(_REQUESTED)
        taken = self.files.take(now)
        if taken is None:
            return
        changed, batch = taken
        if (
            changed
            and self.frontend is not None
            # A --touch-reload file asks for a restart, whatever kind of file it is.
            and not any(self.watchset.by_mtime(p) for p in changed)
            and self.frontend.handle_change(changed, self.watchset.imported)
        ):
            log.info("%s changed: pages refreshed, no restart needed", names(changed))
        elif changed:
            drop_bytecode(changed)
            self._restart(f"{names(changed)} changed", batch.first_event, changed)
        else:
            log.debug("no content changed in %s", names(batch.paths))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "paths":
            self.strategy.paths_changed(event[1])
            self.files.touched(event[1], event[2])
        elif kind == "msg":
            self._on_message(event[1], event[2])
        elif kind == "exit":
            self._on_exit(event[1], event[2])
        elif kind == "manual":
            self._restart(event[1])
        elif kind == "signal":
            self._on_signal_event(event[1])
        elif kind == "zygote":
            self.strategy.zygote_event(event[1], event[2])
        elif kind == "retired":
            self._kill_strays()

    def _on_signal_event(self, signum: int) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            self._restart("manual reload (SIGHUP)")
        elif signum in (signal.SIGINT, signal.SIGTERM):
            log.info("stopping")
            self.exit_code = 0

    def _release_switched(self, link: str, old: str, target: str) -> None:
        assert self.releases is not None
        if not self.releases.move(link, old, target, self.watchset):
            return
        self.files.forget_fingerprints()
        self.strategy.release_switched()
        self.files.refresh()
        self.files.changed_unseen([link])

    # -- the child ---------------------------------------------------------------------

    def _pgid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def _on_message(self, generation: int, message: ipc.Message) -> None:
        current = generation == self.generation
        if message.kind == "mods":
            if current:
                self.strategy.child_modules(message.modules, time.monotonic())
                self.loads.read(message.modules, message.sizes)
            self.files.add_files(
                ((path, mtime) for _name, path, mtime in message.modules), "imported by the program"
            )
        elif message.kind == "watch":
            folders = [p for p in message.paths if os.path.isdir(p)]
            self.files.add_folders(folders)
            files = (p for p in message.paths if p not in folders)
            self.files.add_files(((p, None) for p in files), "relaunch.watch()")
        elif message.kind == "failed":
            self.files.add_files(
                ((p, None) for p in message.paths), "named in the program's traceback"
            )
            self._failed_files.update(p for p in message.paths if self.watchset.matches(p))
        elif message.kind == "running" and current:
            self.state = "running"
            if self.frontend is None:
                self._report_up()
        elif message.kind == "ready" and current and self.frontend is not None:
            # A served app is up once it serves, not when its process started: a load
            # failure then prints its error and no "up" line.
            self._report_up()
            self.frontend.child_ready()
        elif message.kind == "loaded" and current and self.frontend is not None:
            self.loads.take_over(self._pgid())
        elif message.kind == "tb" and current:
            self._failure.traceback += message.text
        elif message.kind == "error" and current:
            self._failure.summary = message.text
            self._failure.path = message.paths[0] if message.paths else ""
            self._failure.line = message.line
        elif message.kind == "reload" and current:
            self._reload_requested()

    def _reload_requested(self) -> None:
        """The program asked for a reload: at once, unless it asks again and again
        right after starting; then after a growing delay (or a change comes first)."""
        if self._requested_at is not None:
            return  # one is due already
        lived = time.monotonic() - self.child.started_at if self.child else _SHORT_RUN
        delay = self._request_backoff.delay(lived)
        if not delay:
            self._restart(_REQUESTED)
            return
        if not self._said_backoff:
            self._said_backoff = True
            log.warning(
                "the program asks for a reload (relaunch.trigger_reload()) within %g s of "
                "starting: reloading after a delay that grows each time it does (up to %g s)",
                _SHORT_RUN,
                self._request_backoff.longest,
            )
        self._requested_at = time.monotonic() + delay

    def _report_up(self) -> None:
        if self._pending_report is None:
            return
        number, why, since = self._pending_report
        self._pending_report = None
        took = (time.monotonic() - since) * 1000
        log.info("reload #%d: %s; new process up in %.0f ms", number, why, took)

    def _start_child(self) -> None:
        self.generation += 1
        self._failed_files.clear()
        self.files.child_started_ns = time.time_ns()
        self._failure = Failure()
        self.loads.child_starting()
        if self.frontend is not None:
            self.frontend.child_starting()
        child = Child(
            self.command,
            generation=self.generation,
            on_event=self._on_child_event,
            stdin_to_child=not self.read_stdin,
            executable=self.executable,
            extra_env=self.extra_env,
            pass_fds=self.pass_fds,
        )
        forker = self.strategy.forker()
        if forker is not None:
            try:
                child.start(forker)
            except OSError as exc:
                log.debug("warm start failed (%s): starting cold", exc)
                forker = None
        try:
            if forker is None:
                child.start()
        except OSError as exc:
            log.error("cannot start %s: %s; waiting for a change", self.command.argv[0], exc)
            self.state = "failed"
            self.child = None
            if self.frontend is not None:
                self.frontend.child_failed(Failure(summary=f"cannot start the app: {exc}"))
            return
        self.child = child
        self.state = "starting"
        self.strategy.child_started()
        if self.guardian is not None and child.pid is not None:
            self.guardian.track(child.pid)
        if not self.command.is_python:
            self.state = "running"
            self._report_up()

    def _stop_child(self, *, overlap: bool = False) -> None:
        """Stop the child; with ``overlap``, in the background, so the next one can start
        while it finishes its requests (only with a held socket, which both can serve)."""
        child = self.child
        if child is None:
            return
        self.child = None
        if overlap:
            self._retiring_children.append(child)
            retiring = threading.Thread(
                target=self._retire_in_background,
                args=(child,),
                name="relaunch-retire",
                daemon=True,
            )
            retiring.start()
            self._retiring.append(retiring)
        else:
            self._retire(child)

    def _retire_in_background(self, child: Child) -> None:
        try:
            child.stop(self.options.grace)
        finally:
            self._retiring_children.remove(child)
        if self.guardian is not None and child.pid is not None:
            self.guardian.forget(child.pid)
        # Strays are looked for on the supervisor's thread, the only one that starts
        # processes: from here, a process being started could look like a stray.
        self.events.put(("retired",))

    def _retire(self, child: Child) -> None:
        self._stopping = child  # a second Ctrl-C meanwhile kills it at once
        try:
            child.stop(self.options.grace)
        finally:
            self._stopping = None
        if self.guardian is not None and child.pid is not None:
            self.guardian.forget(child.pid)
        self._kill_strays()

    def _kill_strays(self) -> None:
        """Kill what a stopped program left behind outside its process group (a daemon
        that called setsid): as relaunch is a subreaper, those orphans are its children.
        Runs on the supervisor's thread only (see _retire_in_background)."""
        if self._subreaper:
            kill_strays(self._known_pids)

    def _known_pids(self) -> set[int]:
        children = (c.pids for c in (self.child, *self._retiring_children) if c)
        guardian = self.guardian.pid if self.guardian else None
        return known_pids(children, [guardian, *self.strategy.pids()])

    def _restart(self, why: str, since: float | None = None, changed: Sequence[str] = ()) -> None:
        child = self.child
        if child is not None and self.state == "running":
            done = self.driver.reload(child, changed)
            if isinstance(done, NotReloaded):
                # The previous version keeps serving (a failed preflight is an error).
                level = logging.INFO if isinstance(done, Handled) else logging.ERROR
                log.log(level, "%s; %s", why, done)
                return
            if done is not None:
                self.reloads += 1
                took = (time.monotonic() - (since or time.monotonic())) * 1000
                log.info("reload #%d: %s; %s in %.0f ms", self.reloads, why, done, took)
                return
        if self._pending_report is not None:
            number, previous, _since = self._pending_report
            log.info(
                "reload #%d: %s; superseded by a newer change before it was up", number, previous
            )
        self.reloads += 1
        self._restart_at = None
        self._requested_at = None
        self._pending_report = (self.reloads, why, since or time.monotonic())
        self._retiring = [t for t in self._retiring if t.is_alive()]
        self._stop_child(overlap=self.frontend is not None and self.state == "running")
        self._start_child()

    def _on_exit(self, generation: int, code: int | None) -> None:
        if generation != self.generation or self.child is None:
            return  # an old child, stopped on purpose
        lived = time.monotonic() - self.child.started_at
        # Said first: stopping what it left in its group may take the whole grace period.
        self._report_exit(code, lived)
        self._stop_child()  # SIGTERM, then SIGKILL, what it left in its group

    def _report_exit(self, code: int | None, lived: float) -> None:
        if code == 0:
            self.state = "exited"
            if self.options.on_exit == "exit":
                log.info("program exited with code 0: exiting")
                self.exit_code = 0
            elif self.options.on_exit == "restart":
                self._restart_at = time.monotonic() + self._exit_backoff.delay(lived)
            else:
                log.info("program exited with code 0; waiting for a change (or press Enter)")
            if self.frontend is not None and self.exit_code is None:
                self.frontend.child_failed(Failure(summary="The app exited (code 0)"))
            return
        self.state = "failed"
        self._pending_report = None  # it never came up: its error says why
        if code is None:
            how = "exited (status unknown: the warm-start process that forked it died)"
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        extra = ""
        if self._failed_files:
            extra = f"; watching the files of its traceback ({names(self._failed_files)})"
        moved = self.loads.moved() if self.frontend is not None else []
        if moved:
            # It may have failed on a half-written file: no error page for that, the
            # change it read half of starts the next process.
            log.info("%s changed while the program loaded: trying again", names(moved))
            self.files.changed_unseen(moved)
            return
        if self._failure.summary and not self._failure.traceback:
            # A mistake the program told in one sentence (relaunch serve's APP): that
            # sentence is the whole story.
            log.error("%s; waiting for a change (or press Enter)", self._failure.summary)
        else:
            log.error("program %s%s; waiting for a change (or press Enter)", how, extra)
        if self.frontend is not None:
            if not self._failure.summary:
                self._failure.summary = f"The app {how}"
            self.frontend.child_failed(self._failure)
        self.files.scan_new_modules()

    # -- start and stop ----------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_signal)

    def _shutdown(self) -> None:
        self._stop_child()
        for retiring in self._retiring:
            retiring.join()
        self._kill_strays()
        self.strategy.close()
        self.driver.close()
        if self.frontend is not None:
            self.frontend.close()
        self.files.close()
        if self.guardian is not None:
            self.guardian.close()
