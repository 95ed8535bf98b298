"""When the app cannot run, the supervisor answers on its socket with the error.

:func:`render` builds the page (pure; everything from the program is escaped).
:class:`ErrorResponder` accepts on the held listening socket only while no child
serves it, answering every request with that page; it stops accepting before the
next child starts, so the two never compete for connections. It runs on the
endpoints' loop (:mod:`.endpoint`): slow or idle clients hold up no one.
"""

from __future__ import annotations

import html
import os
import socket

from .endpoint import Connection, Listener, LoopThread, response

__all__ = ["ErrorResponder", "render"]

_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;margin:2em;color:#222;background:#fff}"
    "h1{font-size:1.3em;color:#b00020}.where{background:#fff3f3;border-left:4px solid #b00020;"
    "padding:.6em 1em;margin:1em 0}pre{background:#f6f6f6;padding:1em;overflow:auto;"
    "font:13px/1.4 ui-monospace,monospace}.line{background:#ffe0e0;display:block}"
    "small{color:#666}"
)


def _source(path: str, line: int, context: int = 3) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    start = max(0, line - 1 - context)
    out = []
    for number in range(start, min(len(lines), line + context)):
        text = html.escape(f"{number + 1:>5}  {lines[number]}")
        out.append(f'<span class="line">{text}</span>' if number + 1 == line else text)
    return "\n".join(out)


def render(
    *, summary: str, traceback_text: str, path: str = "", line: int = 0, snippet: bytes = b""
) -> bytes:
    """The 500 page: what failed, where (file and line first, with the source), the
    traceback, and the live-reload script so the page recovers when the fix is saved."""
    where = ""
    if path:
        shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
        source = _source(path, line) if line else ""
        where = (
            f'<div class="where"><b>{html.escape(shown)}</b>, line {line}'
            + (f"<pre>{source}</pre>" if source else "")
            + "</div>"
        )
    body = (
        (
            "<!doctype html><html><head><meta charset=utf-8>"
            "<title>relaunch: the app failed</title>"
            f"<style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(summary or 'The app exited with an error')}</h1>"
            f"{where}"
            f"<pre>{html.escape(traceback_text)}</pre>"
            "<small>relaunch is waiting for a change; this page reloads by itself once the "
            "app is back.</small>"
        ).encode()
        + snippet
        + b"</body></html>"
    )
    return body


class ErrorResponder:
    """Serves one page on the held listening socket while active, on the endpoints' loop."""

    def __init__(self, sock: socket.socket, endpoints: LoopThread) -> None:
        self.sock = sock
        self.page = b""
        self._endpoints = endpoints
        self._listener = Listener(
            endpoints.loop, sock, self._answer, cap=endpoints.cap, name="error page"
        )
        self._active = False
        # Which activation a connection belongs to (loop thread only): a request that
        # comes after the page was taken down is not given it.
        self._epoch = 0
        self._serving: int | None = None

    @property
    def active(self) -> bool:
        return self._active

    def activate(self, page: bytes) -> None:
        self.page = page
        if not self._active:
            self._active = True
            self._endpoints.call(self._start)

    def adopt(self, fd: int, unprocessed: bytes = b"") -> None:
        """Answer a connection handed over by a process that stopped (``fd``, now this
        object's to close), whose request may have come already: ``unprocessed``. Any
        thread."""

        def take() -> bool:
            self._listener.adopt(socket.socket(fileno=fd), unprocessed)
            return True

        if not self._endpoints.call(take):  # the loop is closed: relaunch is stopping
            os.close(fd)

    def deactivate(self) -> None:
        """Stop accepting: returns once no connection will be accepted any more, and
        never waits for a client. A connection accepted before gets the page if its
        request came while the page was up; a request that comes later (an idle
        preconnected socket, a slow client) is sent to the same address again (307),
        where the new process answers."""
        if self._active:
            self._active = False
            self._endpoints.call(self._stop)

    def _start(self) -> None:
        self._epoch += 1
        self._serving = self._epoch
        self._listener.start()

    def _stop(self) -> None:
        self._serving = None
        self._listener.stop()

    async def _answer(self, conn: Connection) -> None:
        epoch = self._epoch
        request = await conn.read_head()
        if request is None:
            return
        if self._serving != epoch:
            late = [("Location", _same_target(request.target)), ("Cache-Control", "no-store")]
            await conn.reply(response(307, headers=late))
            return
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        await conn.reply(response(500, self.page, headers, send_body=request.method != "HEAD"))

    def close(self) -> None:
        self.deactivate()
        self._endpoints.call(self._listener.close_all)


def _same_target(target: str) -> str:
    """Where a late request is sent again: its own target when that is a plain path."""
    plain = all(33 <= ord(c) < 127 for c in target)
    return target if plain and target.startswith("/") and not target.startswith("//") else "/"
