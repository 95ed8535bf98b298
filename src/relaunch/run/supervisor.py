"""The supervisor: runs the command, watches what it depends on, restarts it on change.

Theory of operation
-------------------
Everything happens on one thread, in :meth:`Supervisor.run`, which takes events off
one queue. Other threads only put events there: the file watcher (paths touched),
each child's pipe reader (validated messages: files imported, a crash's files, a
reload request) and exit waiter, the terminal reader (Enter or "rs"), and signal
handlers (SIGHUP: reload; SIGINT/SIGTERM: stop; a second SIGINT: kill now).

The supervisor holds the loop and the child's lifecycle; its collaborators are given
to it or built here: the restart strategy (:mod:`.strategy`), the server driver
(:mod:`.drivers`), the front end (:mod:`.frontend`, what ``serve`` adds), the file
bookkeeping (:mod:`.files`), the half-written-module guard (:mod:`.takeover`), the
stopping of old children and their strays (:mod:`.retire`), what it says (:mod:`.exits`).

Touched paths are filtered by the watch set, grouped by the settler until the tree
is quiet, and kept only if their content fingerprint really changed. A surviving
batch restarts the child: stop its process group (reload hooks, SIGTERM, SIGKILL
after the grace period), wait until the group is gone, start it again. Where the
listening socket outlives the child (``serve``'s, or one the program handed to the
:mod:`keeper <.keeper>`: runserver's), the old child is stopped in the background
while the new one starts, and finishes its requests meanwhile. A child
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
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import oslayer
from ..command import Command
from ..pycache import drop_bytecode
from ..watch.watchset import WatchSet
from . import ipc
from .child import Child
from .drivers import Driver, NotReloaded
from .exits import CleanExits, ReloadRequests, UpReport, report_failure, report_in_place
from .files import WatchedFiles
from .frontend import Failure, FrontEnd
from .guardian import Guardian
from .inputs import install_signals, read_terminal
from .interpreter import interpreter_info
from .keeper import SocketKeeper
from .names import names
from .options import Options
from .release_swap import ReleaseSwap
from .retire import Retirement
from .strategy import RestartStrategy, StrategyEnv, StrategyFactory, restart_strategy
from .takeover import TakeOver
from .warm import Cold

__all__ = ["RELAUNCH_DIR", "Supervisor"]

RELAUNCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

log = logging.getLogger("relaunch")

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
        keeper: SocketKeeper | None = None,
    ) -> None:
        """``strategy``: how restarts start the program (built once its interpreter is
        known); ``driver``: how a server is told to reload; ``frontend``: what
        ``serve`` adds; ``releases``: the deploy symlinks to follow (a swap moves
        relaunch into the new release and restarts the program); ``pass_fds``: kept
        open in the program's processes; ``extra_env``: environment variables every
        process of the program gets (the subcommand asks the integrations for them);
        ``keeper``: holds the listening sockets the program hands over (runserver's),
        so its processes overlap at a restart and no connection is refused."""
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
            on_release_switched=lambda: self.strategy.release_switched(),
        )
        self.loads = TakeOver(self.files, frontend)
        self.read_stdin = options.read_stdin
        if self.read_stdin is None:
            self.read_stdin = sys.stdin is not None and sys.stdin.isatty()
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
        self.retired = Retirement(
            options.grace,
            current=lambda: self.child,
            on_event=self.events.put,
            helpers=lambda: self.strategy.pids(),
        )
        self._failure = Failure()
        # Every process of this run inherits the token: the guardian finds them by it.
        self.run_token = secrets.token_hex(8)
        self.keeper = keeper
        self.extra_env = {
            **(extra_env or {}),
            **(keeper.env if keeper is not None else {}),
            "_RELAUNCH_RUN": self.run_token,
        }
        self._failed_files: set[str] = set()
        self.up = UpReport(lambda: self.strategy.started_how(ran_known=self.frontend is not None))
        self.clean_exits = CleanExits(options.on_exit)
        self._restart_at: float | None = None
        self.requests = ReloadRequests()

    # -- inputs (any thread) ------------------------------------------------------

    def _on_paths(self, paths: list[str]) -> None:
        self.events.put(("paths", paths, time.monotonic()))

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts >= 2:
                self._kill_now()
        self.events.put(("signal", signum))

    def _kill_now(self) -> None:
        self.retired.kill_now()
        log.warning("killed")
        os._exit(130)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit code for relaunch itself."""
        install_signals(self._on_signal)
        self.retired.subreaper = oslayer.make_subreaper()
        self.guardian = self.retired.guardian = Guardian(self.run_token)
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
            read_terminal(self.events.put)
        self._start_child()
        self.files.baseline()
        try:
            while self.exit_code is None:
                self._step()
        finally:
            self._shutdown()
        return self.exit_code

    def _next_deadline(self) -> float | None:
        due = (self.files.due(), self._restart_at, self.requests.at, self.strategy.due())
        return min((t for t in (*due, self.loads.at) if t), default=None)

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
        if self.requests.at is not None and now >= self.requests.at:
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
            self.strategy.files_changed(changed)
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
            self.retired.kill_strays()

    def _on_signal_event(self, signum: int) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            self._restart("manual reload (SIGHUP)")
        elif signum in (signal.SIGINT, signal.SIGTERM):
            log.info("stopping")
            self.exit_code = 0

    # -- the child ---------------------------------------------------------------------

    def _pgid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def _on_message(self, generation: int, message: ipc.Message) -> None:
        current = generation == self.generation
        if message.kind == "mods" and current:
            self.strategy.child_modules(message.modules, time.monotonic())
            self.loads.read(message.modules, message.sizes)
        if self.files.reported(message):  # any child's: an old one's imports still count
            if message.kind == "failed":
                self._failed_files.update(p for p in message.paths if self.watchset.matches(p))
        elif message.kind == "running" and current:
            self.state = "running"
            if self.frontend is None:
                self.up.up()
        elif message.kind == "ready" and current and self.frontend is not None:
            # A served app is up once it serves, not when its process started: a load
            # failure then prints its error and no "up" line.
            self.up.up()
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
        """The program asked for a reload (see :class:`ReloadRequests`)."""
        if self.requests.now(self.child.started_at if self.child else None):
            self._restart(_REQUESTED)

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
            on_event=self.events.put,
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
            self.up.up()

    def _stop_child(self, *, overlap: bool = False) -> None:
        """Stop the child; with ``overlap``, in the background, so the next one can start
        while it finishes its requests (only with a held socket, which both can serve)."""
        child, self.child = self.child, None
        if child is not None:
            self.retired.stop(child, overlap=overlap)

    def _restart(self, why: str, since: float | None = None, changed: Sequence[str] = ()) -> None:
        child = self.child
        if child is not None and self.state == "running":
            done = self.driver.reload(child, changed)
            if done is not None:  # reloaded in place, or deliberately not at all
                self.reloads += not isinstance(done, NotReloaded)
                report_in_place(done, why, self.reloads, since)
                return
        self.reloads += 1
        self.up.expect(self.reloads, why, since or time.monotonic())
        self._restart_at = None
        self.requests.at = None
        self._stop_child(overlap=self.state == "running" and self._socket_held())
        self._start_child()

    def _socket_held(self) -> bool:
        """Whether the listening socket outlives the child (serve's, or one kept): then
        the next child can start while this one finishes its requests."""
        return self.frontend is not None or (self.keeper is not None and self.keeper.holding())

    def _on_exit(self, generation: int, code: int | None) -> None:
        if generation != self.generation or self.child is None:
            return  # an old child, stopped on purpose
        lived = time.monotonic() - self.child.started_at
        if self.keeper is not None:
            self.keeper.release()  # nothing serves on it: refuse, rather than keep waiting
        # Said first: stopping what it left in its group may take the whole grace period.
        self._report_exit(code, lived)
        self._stop_child()  # SIGTERM, then SIGKILL, what it left in its group

    def _report_exit(self, code: int | None, lived: float) -> None:
        if code == 0:
            self.state = "exited"
            stop, self._restart_at = self.clean_exits.after(lived)
            if stop:
                self.exit_code = 0
            elif self.frontend is not None:
                self.frontend.child_failed(Failure(summary="The app exited (code 0)"))
            return
        self.state = "failed"
        self.up.drop()
        moved = self.loads.moved() if self.frontend is not None else []
        if moved:
            # It may have failed on a half-written file: no error page for that, the
            # change it read half of starts the next process.
            log.info("%s changed while the program loaded: trying again", names(moved))
            self.files.changed_unseen(moved)
            return
        report_failure(code, self._failure, self._failed_files, self.frontend)
        self.files.scan_new_modules()

    # -- start and stop ----------------------------------------------------------------

    def _shutdown(self) -> None:
        self._stop_child()
        self.retired.join()
        self.retired.kill_strays()
        self.strategy.close()
        self.driver.close()
        if self.frontend is not None:
            self.frontend.close()
        if self.keeper is not None:
            self.keeper.close()
        self.files.close()
        if self.guardian is not None:
            self.guardian.close()
