"""Put the live-reload script into HTML pages, as WSGI and ASGI middleware.

Only complete, uncompressed HTML responses are touched: ``Content-Type: text/html``,
no ``Content-Encoding``, and a known length (a ``Content-Length`` header, or a WSGI
body that is a list or tuple). Streaming, compressed and non-HTML responses pass
through unchanged. The script goes before the last ``</body>`` (or at the end), and
``Content-Length`` is corrected.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["ASGIInjector", "WSGIInjector", "inject", "script"]

# Bigger pages are passed through: buffering them would cost more than the reload saves.
MAX_BODY = 10 * 1024 * 1024


def script(port: int, token: str) -> bytes:
    """The snippet the browser runs: it listens to relaunch and reloads (or swaps CSS).

    It reaches the live-reload endpoint on ``port`` under the host name the page itself
    was loaded from (127.0.0.1, localhost or [::1]), with the run's ``token``.
    """
    path = json.dumps(f":{int(port)}/events?token={token}")
    return (
        "<script>/* relaunch live reload */(function(){"
        f'var es=new EventSource(location.protocol+"//"+location.hostname+{path});'
        "window.relaunchLiveReload=es;"
        'es.addEventListener("reload",function(){location.reload();});'
        'es.addEventListener("css",function(){'
        "document.querySelectorAll('link[rel=\"stylesheet\"]').forEach(function(l){"
        'var u=new URL(l.href);u.searchParams.set("relaunch",Date.now());'
        "var n=l.cloneNode();n.href=u.href;"
        "n.onload=function(){l.remove();};l.after(n);});});"
        "})();</script>"
    ).encode()


def inject(body: bytes, snippet: bytes) -> bytes:
    index = body.lower().rfind(b"</body>")
    if index < 0:
        return body + snippet
    return body[:index] + snippet + body[index:]


def _is_html(headers: Iterable[tuple[str, str]]) -> tuple[bool, int | None]:
    """(injectable, content length) from response headers."""
    html = False
    length: int | None = None
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            html = value.split(";", 1)[0].strip().lower() == "text/html"
        elif lower == "content-encoding" and value.strip().lower() not in ("", "identity"):
            return False, None
        elif lower == "content-length":
            try:
                length = int(value)
            except ValueError:
                return False, None
    return html, length


StartResponse = Callable[..., Any]


class WSGIInjector:
    """WSGI middleware; see the module docstring for which responses it changes."""

    def __init__(self, app: Callable[..., Iterable[bytes]], snippet: bytes) -> None:
        self.app = app
        self.snippet = snippet

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: captured.setdefault("written", []).append(data)

        body = self.app(environ, capture)
        if "status" not in captured:
            # The app did not call start_response before returning: a lazy iterator.
            # Rare; pass it through untouched.
            return body
        html, length = _is_html(captured["headers"])
        known = length is not None or isinstance(body, (list, tuple))
        if not html or not known or (length or 0) > MAX_BODY or environ["REQUEST_METHOD"] == "HEAD":
            write = start_response(captured["status"], captured["headers"], captured["exc_info"])
            for data in captured.get("written", []):
                write(data)
            return body
        try:
            content = b"".join(captured.get("written", [])) + b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        content = inject(content, self.snippet)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(content))))
        start_response(captured["status"], headers, captured["exc_info"])
        return [content]


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ASGIInjector:
    """ASGI middleware; see the module docstring for which responses it changes."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], snippet: bytes):
        self.app = app
        self.snippet = snippet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") == "HEAD":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def wrapped(message: Message) -> None:
            nonlocal start, passthrough
            if passthrough:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                ]
                html, length = _is_html(headers)
                if not html or length is None or length > MAX_BODY:
                    passthrough = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                content = inject(b"".join(chunks), self.snippet)
                headers = [
                    (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
                ]
                headers.append((b"content-length", str(len(content)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": content, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, wrapped)
