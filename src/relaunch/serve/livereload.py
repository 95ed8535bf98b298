"""The live-reload endpoint: Server-Sent Events that tell open pages to refresh.

It runs in the supervisor on its own loopback port and can only *tell*: it accepts
nothing but ``GET /events`` and never runs, evaluates or triggers anything. A request
must carry the run's random token, a ``Host`` that names this endpoint (against DNS
rebinding), an ``Origin`` (when the browser sends one) that is the app's own, and
come from a loopback address unless remote clients were explicitly allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import queue
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["LiveReload", "check_request"]

log = logging.getLogger(__name__)

KEEPALIVE = 15.0  # seconds between comments that let a dead client be noticed


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_request(
    *,
    path: str,
    host: str | None,
    origin: str | None,
    client: str,
    token: str,
    port: int,
    origins: frozenset[str],
    allow_remote: bool,
) -> tuple[int, str]:
    """The decision, pure: (HTTP status, reason). 200 means serve the event stream.

    ``origins`` are the app's own origins (``http://127.0.0.1:8000``...). With
    ``allow_remote``, any client address and host name may be used, but the port of
    ``Host`` and of ``Origin`` must still be the endpoint's and the app's.
    """
    if not allow_remote and not _is_loopback(client):
        return 403, "live reload is served to loopback clients only"
    if host is None or not _host_ok(host.lower(), port, allow_remote):
        return 421, "unexpected Host"
    parts = urlsplit(path)
    if parts.path != "/events":
        return 404, "not found"
    given = parse_qs(parts.query).get("token", [""])[0]
    if not hmac.compare_digest(given.encode(), token.encode()):
        return 403, "bad token"
    if origin is not None and not _origin_ok(origin, origins, allow_remote):
        return 403, "unexpected Origin"
    return 200, "ok"


_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _host_ok(host: str, port: int, allow_remote: bool) -> bool:
    name, sep, given = host.rpartition(":")
    if not sep or given != str(port):
        return False
    return allow_remote or name in _LOCAL_NAMES


def _origin_ok(origin: str, origins: frozenset[str], allow_remote: bool) -> bool:
    if origin in origins:
        return True
    if not allow_remote:
        return False
    # Remote: any host name, but the scheme and port of one of the app's origins.
    parts = urlsplit(origin)
    return any(
        parts.scheme == urlsplit(o).scheme and parts.port == urlsplit(o).port for o in origins
    )


class LiveReload:
    """The endpoint, and the list of pages listening to it."""

    def __init__(
        self, *, app_origins: set[str], bind: str = "127.0.0.1", allow_remote: bool = False
    ):
        self.token = secrets.token_urlsafe(24)
        self.allow_remote = allow_remote
        self.origins = frozenset(app_origins)
        self._clients: set[queue.SimpleQueue[str | None]] = set()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug("live reload: " + format, *args)

            def do_GET(self) -> None:
                status, reason = check_request(
                    path=self.path,
                    host=self.headers.get("Host"),
                    origin=self.headers.get("Origin"),
                    client=self.client_address[0],
                    token=owner.token,
                    port=owner.port,
                    origins=owner.origins,
                    allow_remote=owner.allow_remote,
                )
                if status != 200:
                    self.send_error(status, reason)
                    return
                owner._stream(self)

            def _refuse(self) -> None:
                self.send_error(405, "only GET /events")

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        self.server = ThreadingHTTPServer((bind, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="relaunch-livereload", daemon=True
        )
        self.thread.start()

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        origin = handler.headers.get("Origin")
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        if origin:
            handler.send_header("Access-Control-Allow-Origin", origin)
            handler.send_header("Vary", "Origin")
        handler.end_headers()
        inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        with self._lock:
            self._clients.add(inbox)
        try:
            handler.wfile.write(b"retry: 500\n\n")
            handler.wfile.flush()
            while True:
                try:
                    event = inbox.get(timeout=KEEPALIVE)
                except queue.Empty:
                    handler.wfile.write(b": keep-alive\n\n")
                else:
                    if event is None:
                        return
                    handler.wfile.write(f"event: {event}\ndata: {event}\n\n".encode())
                handler.wfile.flush()
        except OSError:
            return  # the page went away
        finally:
            with self._lock:
                self._clients.discard(inbox)
            handler.close_connection = True

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._clients)

    def broadcast(self, event: str) -> None:
        """Send ``event`` ("reload" or "css") to every open page."""
        with self._lock:
            clients = list(self._clients)
        for inbox in clients:
            inbox.put(event)
        log.debug("live reload: %s sent to %d page(s)", event, len(clients))

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients)
        for inbox in clients:
            inbox.put(None)
        self.server.shutdown()
        self.server.server_close()
