"""`relaunch serve` under keep-alive clients and storms of in-place saves.

* Keep-alive clients (``http.client.HTTPConnection`` reused, as browsers, requests
  sessions and httpx do) through reloads: no request fails, each client keeps its one
  connection (handed to the new process, not closed), and once a client got the new
  version it never gets the old one again. With waitress, uvicorn and tornado.
* A storm of in-place saves (truncate, write a moment later, 100 a second): no
  process that read a half-written module serves a request (no HTTP 500), and the
  final content is served after the last save.
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest

from ..e2e.harness import TIMEOUT, Relaunch, wait_until, write
from ..e2e.test_serve import free_port
from .support import Start

WSGI = """\
import msg

def app(environ, start_response):
    body = str(msg.VALUE).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI = """\
import msg

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(msg.VALUE).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

TORNADO = """\
import tornado.web
import msg

class Page(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(str(msg.VALUE))

app = tornado.web.Application([(r"/.*", Page)])
"""

APPS = {"wsgi": (WSGI, None, "waitress"), "asgi": (ASGI, "uvicorn", "uvicorn")}
APPS["tornado"] = (TORNADO, "tornado", "tornado's HTTPServer")


def start_serve(relaunch: Start, root: Path, kind: str) -> tuple[Relaunch, int]:
    source, needs, server = APPS[kind]
    if needs:
        pytest.importorskip(needs)
    (root / "app.py").write_text(source)
    (root / "msg.py").write_text("VALUE = 0\n")
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "--no-browser-reload"], root)
    r.expect(rf"serving app:app \({kind.upper()} app\) with {server}", stream="err")
    return r, port


class Client:
    """One keep-alive connection, reused for every request, on its own thread. A failed
    request is recorded and the connection made again (as a browser would). Without
    ``keep_alive``, a new connection for each request."""

    def __init__(self, port: int, *, keep_alive: bool = True, timeout: float = 60) -> None:
        self.port = port
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.values: list[int] = []
        self.failures: list[str] = []
        self.local_ports: set[int] = set()
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/")
                if conn.sock is not None:  # None only if the request could not be sent
                    self.local_ports.add(conn.sock.getsockname()[1])
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                continue
            if not self.keep_alive:
                conn.close()
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            if response.status == 200:
                try:
                    self.values.append(int(body))
                except ValueError:
                    self.failures.append(f"200 with {body[:80]!r}")
            time.sleep(0.002)  # pacing: a busy client, not a flood on 2 shared cores
        conn.close()

    @property
    def last(self) -> int | None:
        return self.values[-1] if self.values else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)


@pytest.mark.parametrize("kind", ["wsgi", "asgi", "tornado"])
def test_keep_alive_clients_through_reloads(tmp_path: Path, relaunch: Start, kind: str) -> None:
    r, port = start_serve(relaunch, tmp_path, kind)
    clients = [Client(port) for _ in range(4)]
    try:
        wait_until(lambda: all(c.last == 0 for c in clients), what="every client served")
        for n in range(1, 7):
            write(tmp_path / "msg.py", f"VALUE = {n}\n")
            wait_until(
                lambda n=n: all(c.last == n for c in clients),  # type: ignore[misc]
                timeout=TIMEOUT,
                what=f"every client served version {n}",
            )
    finally:
        for client in clients:
            client.close()
    assert r.err.count("reload #") == 6, r.output()
    for client in clients:
        assert client.failures == [], (client.failures, r.output())
        # Its one connection was handed from process to process, never closed.
        assert len(client.local_ports) == 1, client.local_ports
        # Once the new version answered, the old one never did again.
        assert client.values == sorted(client.values)
        assert len(set(client.values)) == 7


def _storm(path: Path, *, seconds: float) -> int:
    """Save ``path`` in place 100 times a second: truncate, then write a moment later
    (an editor or a sync tool writing a file in place). Returns the last value."""
    pad = "# padding, as a real module has\n" * 50
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
        with open(path, "w") as f:
            f.flush()  # the truncation is on disk; the content comes a moment later
            time.sleep(0.008)
            f.write(f"{pad}VALUE = {n}\n")
        time.sleep(0.002)
    return n


def test_storm_of_in_place_saves_never_serves_a_half_written_module(
    tmp_path: Path, relaunch: Start
) -> None:
    r, port = start_serve(relaunch, tmp_path, "wsgi")
    clients = [Client(port, keep_alive=n % 2 == 0, timeout=30) for n in range(4)]
    try:
        wait_until(lambda: all(c.last == 0 for c in clients), what="every client served")
        last = _storm(tmp_path / "msg.py", seconds=4)
        saved_at = time.monotonic()
        try:
            wait_until(lambda: all(c.last == last for c in clients), timeout=90)
        except AssertionError:
            seen = [(c.last, c.statuses, c.failures[-1:]) for c in clients]
            raise AssertionError(f"final content {last} not served: {seen}\n{r.output()}") from None
        took = time.monotonic() - saved_at
    finally:
        for client in clients:
            client.close()
    statuses: dict[int, int] = {}
    for client in clients:
        for status, count in client.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    print(f"storm: {last} saves, responses {statuses}, final content after {took:.2f} s")
    assert set(statuses) == {200}, f"{statuses}\n{r.output()}"
    assert all(c.failures == [] for c in clients), f"{[c.failures for c in clients]}\n{r.output()}"
    assert "Traceback" not in r.err.text()
