"""When the app cannot run, the supervisor answers on its socket with the error.

:func:`render` builds the page (pure; everything from the program is escaped).
:class:`ErrorResponder` accepts on the held listening socket only while no child
serves it, answering every request with that page; it stops accepting before the
next child starts, so the two never compete for connections.
"""

from __future__ import annotations

import html
import logging
import os
import select
import socket
import threading

__all__ = ["ErrorResponder", "render"]

log = logging.getLogger(__name__)

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
    """Serves one page on the listening socket while active."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.page = b""
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = os.pipe()

    @property
    def active(self) -> bool:
        return self._thread is not None

    def activate(self, page: bytes) -> None:
        self.page = page
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="relaunch-error", daemon=True)
            self._thread.start()

    def deactivate(self) -> None:
        """Stop accepting; returns once no connection will be accepted any more."""
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._stop_w, b"x")
            thread.join()
            os.read(self._stop_r, 64)

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        request = b""
        try:
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            head = (
                "HTTP/1.1 500 Internal Server Error\r\n"
                "Content-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(self.page)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            ).encode()
            conn.sendall(head + (b"" if request.startswith(b"HEAD ") else self.page))
            # Close gently: closing with unread bytes would reset the connection and
            # could destroy the response before the client reads it.
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
        except OSError as exc:
            log.debug("error page: %s", exc)

    def close(self) -> None:
        self.deactivate()
        os.close(self._stop_r)
        os.close(self._stop_w)
