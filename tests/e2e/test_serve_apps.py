"""`relaunch serve` finding the app as users name it: factories, mistakes in APP, a
module that does not exist yet, what is not an app; and the worker's logging."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from .harness import wait_until, write
from .test_serve import Start, free_port, get, wait_body

APP = """\
import logging
import msg

def app(environ, start_response):
    if environ["PATH_INFO"] == "/log":
        logging.getLogger("shop.queue").warning("Task queue depth is 1 (the app's)")
    body = f"<html><body><h1>{msg.VALUE}</h1></body></html>".encode()
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]

notcallable = 3
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "msg.py").write_text("VALUE = 'one'\n")
    return tmp_path


def error_page(port: int, needle: str) -> str:
    seen: list[str] = []

    def shown() -> bool:
        try:
            status, body = get(port)
        except OSError:
            return False
        seen[:] = [html.unescape(body)]
        return status == 500 and needle in seen[0]

    wait_until(shown, what=f"the error page with {needle!r}")
    return seen[0]


@pytest.mark.parametrize(
    ("spec", "says", "fix"),
    [
        ("app:ap", "module 'app' has no attribute 'ap'", "ap = app\n"),
        ("app:notcallable", "app:notcallable is an int (3), not an app", "notcallable = app\n"),
    ],
)
def test_mistaken_app_gets_the_error_page_one_line_and_recovers(
    site: Path, relaunch: Start, spec: str, says: str, fix: str
) -> None:
    port = free_port()
    r = relaunch(["serve", spec, "--port", str(port)], site)
    pattern = rf"error: APP '{spec}': .*{re.escape(says)}.*; waiting for a change \(or press"
    r.expect(pattern, stream="err")
    page = error_page(port, says)
    assert "worker.py" not in page and "appload.py" not in page  # relaunch's own frames
    assert "Traceback" not in r.err.text()
    assert r.err.count("error:") == 1  # one line, said once
    write(site / "app.py", APP + fix)
    wait_body(port, "<h1>one</h1>")


@pytest.mark.parametrize("shape", ["module", "package", "file"])
def test_missing_module_is_served_once_it_is_created(
    tmp_path: Path, relaunch: Start, shape: str
) -> None:
    port = free_port()
    spec = "web/webapp.py:app" if shape == "file" else "nosuchmod:app"
    r = relaunch(["serve", spec, "--port", str(port)], tmp_path)
    says = "no such file" if shape == "file" else "no module named 'nosuchmod'"
    r.expect(rf"error: APP '{spec}': {says}", stream="err")
    error_page(port, says)
    (tmp_path / "msg.py").write_text("VALUE = 'created'\n")
    if shape == "module":
        write(tmp_path / "nosuchmod.py", APP)
    elif shape == "package":
        (tmp_path / "nosuchmod").mkdir()
        write(tmp_path / "nosuchmod" / "__init__.py", APP)
    else:
        (tmp_path / "web").mkdir()
        (tmp_path / "web" / "msg.py").write_text("VALUE = 'created'\n")
        write(tmp_path / "web" / "webapp.py", APP)
    wait_body(port, "<h1>created</h1>")
    assert "Traceback" not in r.err.text()


PACKAGE_FACTORY = """\
import msg

def create_app(test_config=None):
    def app(environ, start_response):
        body = f"<html><body><h1>factory {msg.VALUE}</h1></body></html>".encode()
        start_response("200 OK", [("Content-Type", "text/html"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app
"""


def test_factory_named_without_parentheses_is_called(site: Path, relaunch: Start) -> None:
    (site / "shop").mkdir()
    (site / "shop" / "__init__.py").write_text(PACKAGE_FACTORY)
    port = free_port()
    r = relaunch(["serve", "shop:create_app", "--port", str(port)], site)
    r.expect(r"serving shop:create_app\(\) \(WSGI app\) with waitress", stream="err")
    wait_body(port, "<h1>factory one</h1>")
    write(site / "msg.py", "VALUE = 'two'\n")
    wait_body(port, "<h1>factory two</h1>")
    # A bare package name finds the factory too, as `flask --app shop` does.
    r.close()
    port = free_port()
    relaunch(["serve", "shop", "--port", str(port)], site)
    wait_body(port, "<h1>factory two</h1>")


CHATDEMO = """\
import asyncio
import msg
import tornado.web

class MainHandler(tornado.web.RequestHandler):
    def get(self):
        self.write(f"<html><body><h1>chat {msg.VALUE}</h1></body></html>")

def make_app():
    return tornado.web.Application([(r"/", MainHandler)])

async def main():
    app = make_app()
    app.listen(8888)
    await asyncio.Event().wait()
"""


def test_tornado_make_app_factory_and_async_main(site: Path, relaunch: Start) -> None:
    pytest.importorskip("tornado")
    (site / "chatdemo.py").write_text(CHATDEMO)
    port = free_port()
    r = relaunch(["serve", "chatdemo:make_app", "--port", str(port)], site)
    r.expect(r"serving chatdemo:make_app\(\) \(TORNADO app\)", stream="err")
    wait_body(port, "<h1>chat one</h1>")
    r.expect(r'^127\.0\.0\.1 - "GET / HTTP/1\.1" 200$', stream="err")  # the access log
    r.close()
    # async def main() is not an ASGI app: said in one line, never run.
    port = free_port()
    r = relaunch(["serve", "chatdemo:main", "--port", str(port)], site)
    r.expect(
        r"chatdemo:main is a coroutine function taking \(\), not an app: a WSGI app takes "
        r"\(environ, start_response\), an ASGI app \(scope, receive, send\)",
        stream="err",
    )
    error_page(port, "coroutine function")


def test_app_logging_stays_the_apps_and_each_request_is_logged(site: Path, relaunch: Start) -> None:
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port)], site)
    wait_body(port, "<h1>one</h1>")
    get(port, "/log?x=1")
    line = r.expect(r"Task queue depth is 1 \(the app's\)", stream="err").string
    assert line == "Task queue depth is 1 (the app's)"  # Python's own output, no prefix
    r.expect(r'^127\.0\.0\.1:\d+ - "GET /log\?x=1 HTTP/1\.1" 200$', stream="err")


def test_no_access_log(site: Path, relaunch: Start) -> None:
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "--no-access-log"], site)
    wait_body(port, "<h1>one</h1>")
    write(site / "msg.py", "VALUE = 'two'\n")
    r.expect("reload #1", stream="err")  # after the request's line, had there been one
    assert '"GET / HTTP/1.1"' not in r.err.text()
    # The same from pyproject.toml.
    r.close()
    (site / "pyproject.toml").write_text("[tool.relaunch]\naccess-log = false\n")
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port)], site)
    wait_body(port, "<h1>two</h1>")
    write(site / "msg.py", "VALUE = 'three'\n")
    r.expect("reload #1", stream="err")
    assert '"GET / HTTP/1.1"' not in r.err.text()


def test_start_is_reported_once_the_app_has_loaded(site: Path, relaunch: Start) -> None:
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port)], site)
    wait_body(port, "<h1>one</h1>")
    write(site / "msg.py", "raise RuntimeError('broken at import')\n")
    r.expect("program exited with code 1", stream="err")
    assert r.err.count("new process up") == 0  # it never came up
    mark = r.err.mark()
    write(site / "msg.py", "VALUE = 'fixed'\n")
    wait_body(port, "<h1>fixed</h1>")
    r.expect(
        r"reload #\d+: msg\.py changed; (kept [^;]+; )?new process up in \d+ ms",
        stream="err",
        start=mark,
    )
    lines = r.err.lines[mark:]
    serving = next(i for i, line in enumerate(lines) if "serving app:app (WSGI" in line)
    up = next(i for i, line in enumerate(lines) if "new process up" in line)
    assert serving < up


ASGI_APP = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi ok"})
"""


def test_asgi_requests_are_logged_by_uvicorn(tmp_path: Path, relaunch: Start) -> None:
    pytest.importorskip("uvicorn")
    (tmp_path / "main.py").write_text(ASGI_APP)
    port = free_port()
    r = relaunch(["serve", "main:app", "--port", str(port)], tmp_path)
    wait_body(port, "asgi ok", "/hello")
    r.expect(r'127\.0\.0\.1:\d+ - "GET /hello HTTP/1\.1" 200', stream="out")  # uvicorn's
    assert r.err.count("Uvicorn running") == 0  # its access lines only, not its chatter
