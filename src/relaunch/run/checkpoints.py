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

Events spoil a checkpoint as they come. Besides, while a batch of changes settles,
a thread looks at every file each checkpoint ran (:meth:`Checkpointing._look_soon`),
and the reload that follows waits for that look: an event that never came, or came
for another name of the file, cannot leave an out-of-date checkpoint in use. The
settle period hides the look's cost (a few ms for a large project).

This module holds the :class:`Checkpointing` strategy; its decisions (pure,
unit-tested) are in :mod:`.checkpoint_rules`, the socket the parked processes connect
to in :mod:`.checkpoint_listener`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .checkpoint_listener import CheckpointClient, Listener
from .checkpoint_rules import (
    MAX_HOT,
    Checkpoint,
    admit,
    choose,
    look,
    parse_hello,
    shown_path,
    spoiled_by,
    stale,
    stale_each,
    thinner,
)
from .warm import Warm
from .zygote import ZYGOTE_SERVER, ForkClient

__all__ = ["Checkpointing"]

log = logging.getLogger("relaunch")

LOOK_WAIT = 1.0  # seconds a reload waits for the look at the checkpoints' files


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
        # The look at every file the checkpoints ran, in a thread while a batch settles:
        # each change to a watched file asks for one; a look answers every ask made
        # before it began. A reload waits for the asks made before it, no later ones.
        self._look = threading.Condition()
        self._looks_asked = 0
        self._looks_answered = 0
        self._looking = False
        self._look_failed = False
        self._found_stale: dict[int, str] = {}  # checkpoint serial -> why

    # -- the supervisor's questions --------------------------------------------------

    def forker(self) -> ForkClient | None:
        self.started_from = None
        with self._look:
            asked = self._looks_asked
            looked = self._look.wait_for(lambda: self._looks_answered >= asked, LOOK_WAIT)
            found, self._found_stale = self._found_stale, {}
            if self._look_failed:
                looked, self._look_failed = False, False
        if not looked:
            log.debug("the checkpoints' files were not all looked at: not using them")
            for checkpoint in self.checkpoints:
                checkpoint.spoiled = checkpoint.spoiled or "its files were not looked at"
        for checkpoint in self.checkpoints:
            if not checkpoint.spoiled and checkpoint.serial in found:
                checkpoint.spoiled = found[checkpoint.serial]
        for checkpoint in self.checkpoints:
            if not checkpoint.spoiled:
                # A watched file's change was an event (or a batch) that spoiled it at
                # once, as was one of the zygote's (its folders are watched); only the
                # others are looked at, here: no stat of a whole project, or of Django,
                # on the way to every reload.
                checkpoint.spoiled = stale(checkpoint.unwatched, look) or ""
            if checkpoint.spoiled:
                log.debug(
                    "checkpoint before %s dropped: %s",
                    shown_path(checkpoint.file),
                    checkpoint.spoiled,
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
                    "checkpoint before %s dropped: %s",
                    shown_path(checkpoint.file),
                    checkpoint.spoiled,
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
        # Not for a log file the app writes; nor with no checkpoint to look at (one
        # parked later is looked at as it arrives: see checkpoint_rules.admit).
        if self.checkpoints and any(self._watched(p) for p in paths):
            self._look_soon()

    def _look_soon(self) -> None:
        """Ask for a look at every file each checkpoint ran (see the module doc), by the
        one thread that looks; asked while it looks, it looks again. Cheap: it runs for
        every event, and the supervisor must keep up with a checkout's."""
        with self._look:
            self._looks_asked += 1
            if not self._looking:
                self._looking = True
                threading.Thread(
                    target=self._looker, name="relaunch-checkpoint-look", daemon=True
                ).start()
            else:
                self._look.notify_all()

    def _looker(self) -> None:
        """The thread that looks, for as long as relaunch runs."""
        while True:
            with self._look:
                self._look.wait_for(lambda: self._looks_asked > self._looks_answered)
                asked = self._looks_asked
            try:
                targets = {c.serial: c.files for c in list(self.checkpoints) if not c.spoiled}
                found = stale_each(targets, look)
            except Exception:
                log.debug("the look at the checkpoints' files failed", exc_info=True)
                with self._look:
                    self._look_failed = True  # the reload does not take an unlooked-at one
                    self._looks_answered = asked
                    self._look.notify_all()
                continue
            with self._look:
                self._found_stale.update(found)
                self._looks_answered = asked
                self._look.notify_all()

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
                    "checkpoint before %s dropped: %s",
                    shown_path(checkpoint.file),
                    checkpoint.spoiled,
                )
                self._drop(checkpoint)

    def zygote_event(self, zygote: Any, message: dict[str, Any]) -> None:
        if zygote is self.listener:
            self._hello(message)
        elif isinstance(zygote, CheckpointClient):
            if message.get("ev") == "gone":
                for checkpoint in [c for c in self.checkpoints if c.client is zygote]:
                    log.debug("the checkpoint before %s exited", shown_path(checkpoint.file))
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
                text = f"no checkpoint before {shown_path(hello.file)}: {hello.why}"
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
        checkpoint.spoiled = stale(hello.files, look) or ""
        self.checkpoints, dropped = admit(self.checkpoints, checkpoint)
        for old in dropped:
            self._close(old)
        if checkpoint.spoiled:
            log.debug(
                "checkpoint %d before %s dropped on arrival: %s",
                hello.pid,
                shown_path(hello.file),
                checkpoint.spoiled,
            )
            return
        log.debug(
            "checkpoint %d parked before %s (%d modules ran before it)",
            hello.pid,
            shown_path(hello.file),
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
