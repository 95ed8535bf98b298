"""What the supervisor says about a run: it came up, it failed, it asks to start again.

* :class:`UpReport`: the "reload #N: why; new process up in X ms" line, said once the
  new process is up (or that a newer change superseded it);
* :func:`how_it_ended` (pure) and :func:`report_failure`: a failed run's one line, and
  what the front end's error page shows;
* :class:`ReloadRequests`: ``relaunch.trigger_reload()`` at once, unless the program
  asks again and again right after starting; then after a growing delay;
* :class:`CleanExits`: what an exit with code 0 leads to (``--on-exit``), with the
  same growing delays for ``restart``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from .backoff import Backoff
from .drivers import Handled, NotReloaded
from .frontend import Failure, FrontEnd
from .names import names

__all__ = [
    "SHORT_RUN",
    "CleanExits",
    "ReloadRequests",
    "UpReport",
    "how_it_ended",
    "report_failure",
    "report_in_place",
]

log = logging.getLogger("relaunch")

# A program that exits 0 (or asks for a reload) this soon after starting is restarted
# with growing delays.
SHORT_RUN = 1.0


class UpReport:
    """The reload whose new process is not up yet: (number, why, since).

    ``how()``: what the line adds about how the new process started (what a checkpoint
    kept), "" for nothing."""

    def __init__(self, how: Callable[[], str] | None = None) -> None:
        self.pending: tuple[int, str, float] | None = None
        self.how = how

    def expect(self, number: int, why: str, since: float) -> None:
        if self.pending is not None:
            previous_number, previous, _since = self.pending
            log.info(
                "reload #%d: %s; superseded by a newer change before it was up",
                previous_number,
                previous,
            )
        self.pending = (number, why, since)

    def up(self) -> None:
        if self.pending is None:
            return
        number, why, since = self.pending
        self.pending = None
        took = (time.monotonic() - since) * 1000
        how = self.how() if self.how is not None else ""
        why += f"; {how}" if how else ""
        log.info("reload #%d: %s; new process up in %.0f ms", number, why, took)

    def drop(self) -> None:
        """It never came up: its error says why."""
        self.pending = None


def report_in_place(done: str, why: str, number: int, since: float | None) -> None:
    """A driver's answer (see :mod:`relaunch.run.drivers`): reloaded in place as reload
    ``number``, or deliberately not (the previous version keeps serving; a failed
    preflight is an error)."""
    if isinstance(done, NotReloaded):
        level = logging.INFO if isinstance(done, Handled) else logging.ERROR
        log.log(level, "%s; %s", why, done)
        return
    took = (time.monotonic() - (since or time.monotonic())) * 1000
    log.info("reload #%d: %s; %s in %.0f ms", number, why, done, took)


def how_it_ended(code: int | None) -> str:
    """A run that did not exit 0, in words (None: the status is unknown)."""
    if code is None:
        return "exited (status unknown: the warm-start process that forked it died)"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def report_failure(
    code: int | None, failure: Failure, failed_files: Collection[str], frontend: FrontEnd | None
) -> None:
    """Say that the program failed (exit ``code``), and show it on the front end's error
    page."""
    how = how_it_ended(code)
    if failure.summary and not failure.traceback:
        # A mistake the program told in one sentence (relaunch serve's APP): that
        # sentence is the whole story.
        log.error("%s; waiting for a change (or press Enter)", failure.summary)
    else:
        extra = ""
        if failed_files:
            extra = f"; watching the files of its traceback ({names(failed_files)})"
        log.error("program %s%s; waiting for a change (or press Enter)", how, extra)
    if frontend is not None:
        if not failure.summary:
            failure.summary = f"The app {how}"
        frontend.child_failed(failure)


class ReloadRequests:
    """When to honour the program's reload requests. :attr:`at`: one held back."""

    def __init__(self) -> None:
        self.backoff = Backoff(short_run=SHORT_RUN)
        self.at: float | None = None
        self._said = False

    def now(self, started_at: float | None) -> bool:
        """The program (started at ``started_at``, monotonic clock) asked: True to reload
        at once; else one is held back until :attr:`at` (a change may come first)."""
        if self.at is not None:
            return False  # one is due already
        lived = time.monotonic() - started_at if started_at is not None else SHORT_RUN
        delay = self.backoff.delay(lived)
        if not delay:
            return True
        if not self._said:
            self._said = True
            log.warning(
                "the program asks for a reload (relaunch.trigger_reload()) within %g s of "
                "starting: reloading after a delay that grows each time it does (up to %g s)",
                SHORT_RUN,
                self.backoff.longest,
            )
        self.at = time.monotonic() + delay
        return False


class CleanExits:
    """``--on-exit``: ``wait`` (for a change), ``restart`` or ``exit`` (relaunch too)."""

    def __init__(self, on_exit: str) -> None:
        self.on_exit = on_exit
        self.backoff = Backoff(short_run=SHORT_RUN)

    def after(self, lived: float) -> tuple[bool, float | None]:
        """The program exited 0 after ``lived`` seconds: (relaunch exits too, when to
        start it again)."""
        if self.on_exit == "exit":
            log.info("program exited with code 0: exiting")
            return True, None
        if self.on_exit == "restart":
            return False, time.monotonic() + self.backoff.delay(lived)
        log.info("program exited with code 0; waiting for a change (or press Enter)")
        return False, None
