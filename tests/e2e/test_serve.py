"""`relaunch serve` end to end with real HTTP clients."""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Relaunch, wait_until, write

Start = Callable[..., Relaunch]

WSGI_APP = """\
import time
import msg

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.0)
    body = f"<html><body><h1>{msg.VALUE}</h1></body></html>".encode()
    ctype = "text/plain" if environ["PATH_INFO"] == "/text" else "text/html; charset=utf-8"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_body(port: int, needle: str, path: str = "/") -> str:
    seen: list[str] = []

    def check() -> bool:
        try:
            _status, body = get(port, path)
        except OSError:
            return False
        seen[:] = [body]
        return needle in body

    wait_until(check, what=f"{needle!r} at {path}")
    return seen[0]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(WSGI_APP)
    (tmp_path / "msg.py").write_text("VALUE = 'one'\n")
    return tmp_path


def serve(relaunch: Start, site: Path, *extra: str) -> tuple[Relaunch, int]:
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "-v", *extra], site)
    r.expect(r"serving app:app \(WSGI app\) with waitress", stream="err")
    return r, port


def events_url(body: str) -> str:
    start = body.index('":') + 1
    path = body[start : body.index('"', start)]
    return "http://127.0.0.1" + path


class Events:
    """A live-reload client: collects the event names it is sent."""

    def __init__(self, url: str, origin: str) -> None:
        self.events: list[str] = []
        self.cond = threading.Condition()
        parts = urllib.request.urlparse(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.conn.request("GET", f"{parts.path}?{parts.query}", headers={"Origin": origin})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.status
        assert self.response.getheader("Content-Type") == "text/event-stream"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    with self.cond:
                        self.events.append(line[7:])
                        self.cond.notify_all()
        except OSError:
            pass

    def wait(self, count: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.events) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"only {self.events}"
                self.cond.wait(left)
            return list(self.events)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def events() -> Iterator[list[Events]]:
    opened: list[Events] = []
    yield opened
    for client in opened:
        client.close()


def test_edit_serves_new_code_and_page_has_live_reload_script(site: Path, relaunch: Start) -> None:
    r, port = serve(relaunch, site)
    body = wait_body(port, "<h1>one</h1>")
    assert "relaunch live reload" in body and body.index("<script>") < body.index("</body>")
    assert "relaunch live reload" not in get(port, "/text")[1]  # not HTML: untouched
    write(site / "msg.py", "VALUE = 'two'\n")
    wait_body(port, "<h1>two</h1>")
    r.expect("reload #1: msg.py changed", stream="err")


def test_broken_code_shows_error_page_then_recovers(site: Path, relaunch: Start) -> None:
    _r, port = serve(relaunch, site)
    wait_body(port, "<h1>one</h1>")
    write(site / "msg.py", "VALUE = (\n")

    def error_page() -> bool:
        status, body = get(port)
        return status == 500 and "SyntaxError" in body

    wait_until(error_page, what="the error page")
    _status, body = get(port)
    assert "<b>msg.py</b>, line 1" in body  # the failing file and line come first
    assert "VALUE = (" in body and "relaunch live reload" in body
    assert "relaunch/_inside/serve_worker.py" not in body  # relaunch's own frames are hidden
    write(site / "msg.py", "VALUE = 'fixed'\n")
    wait_body(port, "<h1>fixed</h1>")


def test_a_connection_the_old_process_accepted_gets_the_error_page(
    site: Path, relaunch: Start
) -> None:
    """A connection open when the reload begins (accepted by the process that stops,
    its request not sent yet) is handed over; when the new code fails to load it is
    answered with the error page, not closed (its request would have been reset)."""
    _r, port = serve(relaunch, site)
    wait_body(port, "<h1>one</h1>")
    early = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        time.sleep(0.5)  # accepted by the serving process
        write(site / "msg.py", "VALUE = (\n")
        wait_until(lambda: get(port)[0] == 500, what="the error page")
        early.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := early.recv(65536):
            reply += chunk
    finally:
        early.close()
    assert reply.startswith(b"HTTP/1.1 500"), reply[:200]
    assert b"SyntaxError" in reply


def test_error_page_escapes_the_program_output(site: Path, relaunch: Start) -> None:
    _r, port = serve(relaunch, site)
    wait_body(port, "<h1>one</h1>")
    write(site / "msg.py", "raise RuntimeError('<img src=x onerror=alert(1)>')\n")
    wait_until(lambda: get(port)[0] == 500, what="the error page")
    body = get(port)[1]
    assert "<img src=x" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body


def test_request_in_flight_during_reload_completes(site: Path, relaunch: Start) -> None:
    _r, port = serve(relaunch, site)
    wait_body(port, "<h1>one</h1>")
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get(port, "/slow")))
    slow.start()
    time.sleep(0.2)  # let the request reach the app (it sleeps 1 s inside)
    write(site / "msg.py", "VALUE = 'two'\n")
    slow.join(timeout=30)
    assert result and result[0][0] == 200 and "<h1>one</h1>" in result[0][1]
    wait_body(port, "<h1>two</h1>")


BARRIER_APP = """\
import threading
import msg

# Answers /wait only once 4 requests are in it at once: 4 threads must be serving.
together = threading.Barrier(4)

def app(environ, start_response):
    if environ["PATH_INFO"] == "/wait":
        together.wait(timeout=20)
    body = msg.VALUE.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def four_at_once(port: int) -> list[tuple[int, str]]:
    results: list[tuple[int, str]] = []
    clients = [
        threading.Thread(target=lambda: results.append(get(port, "/wait", timeout=40)))
        for _ in range(4)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=60)
    return results


def test_every_thread_of_the_pool_serves_also_after_reloads(
    tmp_path: Path, relaunch: Start
) -> None:
    """The worker starts with one waitress thread and grows its pool once serving (each
    thread start is on the way to the first response): all --threads must serve, in
    the first process and in the ones reloads start (forked from a checkpoint)."""
    (tmp_path / "app.py").write_text(BARRIER_APP)
    (tmp_path / "msg.py").write_text("VALUE = 'v0'\n")
    _r, port = serve(relaunch, tmp_path, "--threads", "4")
    wait_body(port, "v0")
    assert four_at_once(port) == [(200, "v0")] * 4
    for n in (1, 2):
        write(tmp_path / "msg.py", f"VALUE = 'v{n}'\n")
        wait_body(port, f"v{n}")
        assert four_at_once(port) == [(200, f"v{n}")] * 4


class Polling:
    """GET / in a loop on a thread while the ``with`` block runs; every refused or failed
    request goes to ``failures``."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.port = port
        self.path = path
        self.failures: list[str] = []
        self.served = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll)

    def _poll(self) -> None:
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                status, _ = get(self.port, self.path)
                if status != 200:
                    self.failures.append(f"status {status}")
                self.served += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.002)

    def __enter__(self) -> Polling:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_no_refused_connection_during_reloads(site: Path, relaunch: Start) -> None:
    r, port = serve(relaunch, site)
    wait_body(port, "<h1>one</h1>")
    with Polling(port) as polling:
        for n in range(1, 11):
            write(site / "msg.py", f"VALUE = 'v{n}'\n")
            wait_body(port, f"<h1>v{n}</h1>")
    assert r.err.count("reload #") >= 10
    assert polling.served > 10 and polling.failures == []


def test_live_reload_tells_pages_after_the_new_code_serves(
    site: Path, relaunch: Start, events: list[Events]
) -> None:
    _r, port = serve(relaunch, site)
    body = wait_body(port, "<h1>one</h1>")
    client = Events(events_url(body), f"http://127.0.0.1:{port}")
    events.append(client)
    write(site / "msg.py", "VALUE = 'two'\n")
    assert client.wait(1) == ["reload"]
    assert "<h1>two</h1>" in get(port)[1]  # by the time pages are told, new code serves


def test_template_and_css_changes_refresh_without_restart(
    site: Path, relaunch: Start, events: list[Events]
) -> None:
    (site / "templates").mkdir()
    (site / "templates" / "page.html").write_text("<p>1</p>")
    (site / "static").mkdir()
    (site / "static" / "site.css").write_text("h1 { color: red }")
    r, port = serve(relaunch, site, "-w", "templates", "-w", "static")
    body = wait_body(port, "<h1>one</h1>")
    client = Events(events_url(body), f"http://localhost:{port}")
    events.append(client)
    write(site / "templates" / "page.html", "<p>2</p>")
    assert client.wait(1) == ["reload"]
    write(site / "static" / "site.css", "h1 { color: blue }")
    assert client.wait(2) == ["reload", "css"]
    r.expect("templates/page.html changed: pages refreshed, no restart needed", stream="err")
    r.expect("static/site.css changed: pages refreshed, no restart needed", stream="err")
    assert r.err.count("reload #") == 0


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda url: url.replace("token=", "token=x"), 403),
        (lambda url: url.split("?")[0], 403),
        (lambda url: url.replace("/events", "/other"), 404),
    ],
)
def test_live_reload_endpoint_refuses_bad_token_or_path(
    site: Path, relaunch: Start, mutate: Callable[[str], str], status: int
) -> None:
    _r, port = serve(relaunch, site)
    url = mutate(events_url(wait_body(port, "<h1>one</h1>")))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == status


def test_live_reload_endpoint_checks_host_origin_and_method(site: Path, relaunch: Start) -> None:
    _r, port = serve(relaunch, site)
    url = urllib.request.urlparse(events_url(wait_body(port, "<h1>one</h1>")))
    target = f"{url.path}?{url.query}"

    def ask(method: str = "GET", **headers: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
        try:
            conn.request(method, target, headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()

    assert ask(Host=f"evil.example:{url.port}") == 421  # DNS rebinding
    assert ask(Origin="http://evil.example") == 403
    assert ask(Origin=f"http://127.0.0.1:{port + 1}") == 403
    assert ask("POST") == 405


def test_asgi_app_is_served_by_uvicorn(tmp_path: Path, relaunch: Start) -> None:
    pytest.importorskip("uvicorn")
    (tmp_path / "main.py").write_text(
        "import msg\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    body = f'<html><body>{msg.VALUE}</body></html>'.encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': [\n"
        "        (b'content-type', b'text/html'), (b'content-length', str(len(body)).encode())]})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
    )
    (tmp_path / "msg.py").write_text("VALUE = 'async one'\n")
    port = free_port()
    r = relaunch(["serve", "main:app", "--port", str(port)], tmp_path)
    r.expect(r"serving main:app \(ASGI app\) with uvicorn", stream="err")
    body = wait_body(port, "async one")
    assert "relaunch live reload" in body and body.endswith("</body></html>")
    write(tmp_path / "msg.py", "VALUE = 'async two'\n")
    wait_body(port, "async two")


def test_factory_and_file_path_app_specs(site: Path, relaunch: Start) -> None:
    (site / "factory.py").write_text(
        "from app import app as inner\ndef create_app():\n    return inner\n"
    )
    port = free_port()
    r = relaunch(["serve", "factory:create_app()", "--port", str(port)], site)
    wait_body(port, "<h1>one</h1>")
    r.close()
    port = free_port()
    relaunch(["serve", str(site / "app.py") + ":app", "--port", str(port)], site.parent)
    wait_body(port, "<h1>one</h1>")


def test_port_in_use_is_a_clear_error(site: Path) -> None:
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "relaunch", "serve", "app:app", "--port", str(port)],
            cwd=site, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"port {port} is already in use on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_browser_reload_leaves_pages_alone(site: Path, relaunch: Start) -> None:
    _r, port = serve(relaunch, site, "--no-browser-reload")
    assert "relaunch live reload" not in wait_body(port, "<h1>one</h1>")


TORNADO_APP = """\
import asyncio
import msg
import tornado.web

class Page(tornado.web.RequestHandler):
    async def get(self):
        if self.request.path == "/slow":
            await asyncio.sleep(1.0)
        self.write(f"<html><body><h1>{msg.VALUE}</h1></body></html>")

# debug=True turns tornado's own autoreload on: under relaunch serve it must stay idle.
app = tornado.web.Application([(r"/.*", Page)], debug=True, compress_response=True)
"""


def test_tornado_app_is_served_on_the_held_socket(tmp_path: Path, relaunch: Start) -> None:
    pytest.importorskip("tornado")
    (tmp_path / "main.py").write_text(TORNADO_APP)
    (tmp_path / "msg.py").write_text("VALUE = 'one'\n")
    port = free_port()
    r = relaunch(["serve", "main:app", "--port", str(port), "-v"], tmp_path)
    r.expect(r"serving main:app \(TORNADO app\) with tornado's HTTPServer", stream="err")
    body = wait_body(port, "<h1>one</h1>")
    assert "relaunch live reload" in body and body.endswith("</body></html>")

    # A request in flight finishes on the old code while the new code takes over.
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get(port, "/slow")))
    slow.start()
    time.sleep(0.3)
    write(tmp_path / "msg.py", "VALUE = 'two'\n")
    slow.join(timeout=30)
    assert result and result[0][0] == 200 and "<h1>one</h1>" in result[0][1]
    wait_body(port, "<h1>two</h1>")

    # No client is refused while it reloads.
    with Polling(port) as polling:
        for n in range(3, 9):
            write(tmp_path / "msg.py", f"VALUE = 'v{n}'\n")
            wait_body(port, f"<h1>v{n}</h1>")
    assert polling.failures == [] and polling.served > 10
    # tornado's own reloader never re-executed the process behind relaunch's back.
    assert r.err.count("reload #") == 7


FLASK_APP = """\
from flask import Flask, render_template
import msg

app = Flask(__name__)

@app.route("/")
def index():
    return render_template("index.html", value=msg.VALUE)
"""


def test_flask_app_under_serve(tmp_path: Path, relaunch: Start) -> None:
    pytest.importorskip("flask")
    (tmp_path / "app.py").write_text(FLASK_APP)
    (tmp_path / "msg.py").write_text("VALUE = 'one'\n")
    (tmp_path / "templates").mkdir()
    template = tmp_path / "templates" / "index.html"
    template.write_text("<html><body><h1>{{ value }}</h1></body></html>")
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "-w", "templates", "-v"], tmp_path)
    r.expect(r"serving app:app \(WSGI app\) with waitress", stream="err")
    body = wait_body(port, "<h1>one</h1>")
    assert "relaunch live reload" in body
    write(tmp_path / "msg.py", "VALUE = 'two'\n")
    wait_body(port, "<h1>two</h1>")
    restarts = r.err.count("reload #")
    # A template edit shows without a restart (Flask's template auto-reload is on).
    write(template, "<html><body><h2>{{ value }}</h2></body></html>")
    wait_body(port, "<h2>two</h2>")
    assert r.err.count("reload #") == restarts
