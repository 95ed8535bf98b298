"""What ``relaunch serve`` adds to the supervisor: the held socket, the error page,
and live reload of open pages.

The supervisor calls these hooks on its own thread; none of them waits for a client
(the endpoints run on their own loop, see :mod:`.endpoint`):

* :meth:`ServeFrontEnd.child_starting` before a process starts (the error page
  stops answering, so only the new process accepts),
* :meth:`take_over` when the new process loaded the app and none of its files changed
  meanwhile: it may serve now, and gets the keep-alive connections the previous one
  handed over (:mod:`.handoff`),
* :meth:`child_ready` when the new process serves (pages reload now, not before),
* :meth:`child_failed` when it could not start or crashed (the error page answers,
  and pages reload to show it),
* :meth:`handle_change` with the files that changed: when none of them is the
  program's own code (templates, static files), the pages are refreshed and no
  process restarts; a CSS-only change swaps stylesheets in place.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection, Iterable

from ..run.frontend import Failure
from .endpoint import LoopThread
from .errorpage import ErrorResponder, render
from .handoff import Hub
from .inject import script
from .livereload import LiveReload

__all__ = ["Failure", "ServeFrontEnd", "classify"]

log = logging.getLogger("relaunch")


def classify(changed: Iterable[str], program_files: Collection[str]) -> str:
    """What a change calls for, pure: "restart" when any changed file is the program's own
    code; else "css" when all are stylesheets; else "refresh" (templates, static files)."""
    changed = list(changed)
    if any(path in program_files for path in changed):
        return "restart"
    if changed and all(os.path.splitext(path)[1].lower() == ".css" for path in changed):
        return "css"
    return "refresh"


class ServeFrontEnd:
    def __init__(
        self,
        sock: socket.socket,
        livereload: LiveReload | None,
        endpoints: LoopThread | None = None,
        hub: Hub | None = None,
    ) -> None:
        """``endpoints``: the loop the live reload runs on (the front end closes it);
        ``hub``: where keep-alive connections wait between processes."""
        self.sock = sock
        self.livereload = livereload
        self.hub = hub
        self.endpoints = endpoints or LoopThread()
        self.errors = ErrorResponder(sock, self.endpoints)
        self._served_once = False

    @property
    def snippet(self) -> bytes:
        if self.livereload is None:
            return b""
        return script(self.livereload.port, self.livereload.token)

    def child_starting(self) -> None:
        self.errors.deactivate()
        if self.hub is not None:
            self.hub.hold()

    def take_over(self, pgid: int) -> None:
        if self.hub is not None:
            self.hub.approve(pgid)

    def child_ready(self) -> None:
        if self._served_once and self.livereload is not None:
            self.livereload.broadcast("reload")
        self._served_once = True

    def child_failed(self, failure: Failure) -> None:
        page = render(
            summary=failure.summary,
            traceback_text=failure.traceback,
            path=failure.path,
            line=failure.line,
            snippet=self.snippet,
        )
        self.errors.activate(page)
        if self.hub is not None:
            # The connections handed over for the process that failed get the page too.
            self.hub.failed(self.errors.adopt)
        self._served_once = True
        if self.livereload is not None:
            self.livereload.broadcast("reload")

    def handle_change(self, changed: Collection[str], program_files: Collection[str]) -> bool:
        """True if the change was handled in the browser alone (no restart needed)."""
        what = classify(changed, program_files)
        if what == "restart" or self.errors.active:
            return False
        if self.livereload is not None:
            self.livereload.broadcast("css" if what == "css" else "reload")
        return True

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()
        self.errors.close()
        if self.livereload is not None:
            self.livereload.close()
        self.endpoints.close()
