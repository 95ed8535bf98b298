"""Runs in the program's process for ``relaunch serve``: load the app, serve the held socket.

Started by the supervisor as ``python -m relaunch.serve.worker APP --fd N ...``
through relaunch's bootstrap, so the app's imports are watched like any program's.
WSGI apps are served by waitress (threads, pure Python, every OS); ASGI apps by
uvicorn; tornado apps by tornado's own HTTPServer (:mod:`.tornado_app`). All serve
the listening socket the supervisor bound once and keeps open, so while this process
restarts, new connections wait in the socket's backlog.

On SIGTERM it stops accepting (the supervisor's copy of the socket stays open),
finishes the requests in flight, closes idle keep-alive connections, and exits.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from ..integrations.django import devserver as django_devserver
from .inject import ASGIInjector, WSGIInjector, script

__all__ = ["app_kind", "load_app", "main"]

log = logging.getLogger("relaunch.serve")

# After SIGTERM, how long a connection that was accepted but has sent nothing yet may
# take to send its request before it is closed.
FRESH_WAIT = 2.0


class AppError(Exception):
    """APP does not name a usable application."""


def load_app(spec: str) -> Any:
    """Import ``module:attr``, ``path/to/file.py:attr`` or ``module:factory()``.

    Without ``:attr``, the module's ``app`` or ``application`` is used.
    """
    target, _, attr = spec.partition(":")
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise AppError(f"no such file: {target}")
        # Import it by name from its folder, as `python file.py` would find its siblings.
        sys.path.insert(0, os.path.dirname(path))
        target = os.path.splitext(os.path.basename(path))[0]
    module = importlib.import_module(target)
    call = attr.endswith("()")
    names = [attr.removesuffix("()")] if attr else ["app", "application"]
    for name in names:
        obj: Any = module
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if call:
            obj = obj()
        if not callable(obj) and app_kind(obj) != "tornado":
            raise AppError(f"{spec} is not callable")
        return obj
    raise AppError(f"module {target!r} has no attribute {' or '.join(map(repr, names))}")


def app_kind(app: Any) -> str:
    """ "tornado" for a tornado application (an ``HTTPServerConnectionDelegate``), else
    "asgi" or "wsgi" from the call signature: (scope, receive, send) is ASGI."""
    if "tornado.httputil" in sys.modules:  # only a program that imported tornado has one
        from .tornado_app import is_tornado_app

        if is_tornado_app(app):
            return "tornado"
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    try:
        parameters = [
            p
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return "wsgi"
    return "asgi" if len(parameters) == 3 else "wsgi"


def _notify_ready() -> None:
    import relaunch

    channel = relaunch._channel()
    if channel is not None:
        channel.send({"t": "ready"})


def serve_wsgi(app: Any, sock: socket.socket, *, threads: int) -> None:
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    from waitress.server import create_server

    server: Any = create_server(
        app, sockets=[sock], threads=threads, clear_untrusted_proxy_headers=True
    )
    stopping = False
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    class Wake(wasyncore.file_dispatcher):  # type: ignore[misc]
        def handle_read(self) -> None:
            self.recv(64)

        def writable(self) -> bool:
            return False

    Wake(wake_r, map=server._map)

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        try:
            os.write(wake_w, b"x")  # wake the loop at once
        except OSError:
            pass

    signal.signal(signal.SIGTERM, on_term)
    _notify_ready()
    while not stopping:
        wasyncore.loop(timeout=30.0, map=server._map, count=1)
    # Stop accepting; the supervisor's copy of the socket keeps the backlog for the next
    # process. Let requests in flight finish; close keep-alive connections once idle;
    # give a connection accepted just now (no byte read yet) a moment to send its request.
    for obj in list(server._map.values()):
        if getattr(obj, "accepting", False):
            obj.del_channel()
    stopped_at = time.time()
    while True:
        channels = [c for c in server._map.values() if isinstance(c, HTTPChannel)]
        if not channels:
            break
        for channel in channels:
            busy = channel.requests or channel.request is not None or channel.total_outbufs_len
            fresh = channel.last_activity == channel.creation_time
            if not busy and (not fresh or time.time() - stopped_at > FRESH_WAIT):
                channel.handle_close()
        wasyncore.loop(timeout=0.05, map=server._map, count=1)
    server.task_dispatcher.shutdown()


def serve_asgi(app: Any, sock: socket.socket) -> None:
    try:
        import uvicorn
    except ImportError:
        raise AppError(
            "this is an ASGI app, which relaunch serves with uvicorn: pip install uvicorn"
        ) from None

    config = uvicorn.Config(app, lifespan="auto", log_level="warning", timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets=sockets)
        _notify_ready()

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


def _prepare(app: Any) -> None:
    """Development conveniences the app would want under a reloader."""
    jinja_env = getattr(app, "jinja_env", None)  # Flask: re-read templates when they change
    if jinja_env is not None and hasattr(app, "config"):
        app.config["TEMPLATES_AUTO_RELOAD"] = True
        jinja_env.auto_reload = True


def _with_live_reload(app: Any, kind: str, snippet: bytes) -> Any:
    if kind == "asgi":
        return ASGIInjector(app, snippet)
    if kind == "wsgi":
        return WSGIInjector(app, snippet)
    transforms = getattr(app, "transforms", None)  # a tornado Application
    if isinstance(transforms, list):
        from .tornado_app import live_reload_transform

        # First, so that it sees the page before tornado's gzip transform compresses it.
        transforms.insert(0, live_reload_transform(snippet))
    return app


def _log_to_stderr() -> None:
    """relaunch's own lines only: the root logger stays the app's (a handler there
    printed every line of Django's loggers, which propagate, a second time)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[relaunch] %(message)s"))
    own = logging.getLogger("relaunch")
    own.handlers[:] = [handler]
    own.setLevel(logging.INFO)
    own.propagate = False


def _fork_workers(count: int) -> list[int]:
    """Pre-fork ``count - 1`` more processes sharing the socket; returns their pids in the
    first process, an empty list in the others."""
    pids = []
    for _ in range(count - 1):
        pid = os.fork()
        if pid == 0:
            return []
        pids.append(pid)
    return pids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="relaunch.serve.worker")
    parser.add_argument("app")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--live-reload", default="", metavar="PORT:TOKEN")
    args = parser.parse_args(argv)
    _log_to_stderr()

    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    app = load_app(args.app)
    _prepare(app)
    app = django_devserver.prepare(app)  # URLconf loaded, folders watched, static served
    kind = app_kind(app)
    if args.live_reload:
        port, _, token = args.live_reload.partition(":")
        app = _with_live_reload(app, kind, script(int(port), token))
    server = {
        "asgi": "uvicorn",
        "tornado": "tornado's HTTPServer",
        "wsgi": f"waitress, {args.threads} threads",
    }[kind]
    workers = f", {args.workers} processes" if args.workers > 1 else ""
    log.info("serving %s (%s app) with %s%s", args.app, kind.upper(), server, workers)
    children = _fork_workers(args.workers)
    if kind == "tornado":
        from . import tornado_app

        tornado_app.serve(app, sock, _notify_ready, FRESH_WAIT)
    elif kind == "asgi":
        serve_asgi(app, sock)
    else:
        serve_wsgi(app, sock, threads=args.threads)
    for pid in children:
        _reap(pid)


def _reap(pid: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.05)


if __name__ == "__main__":
    main()
