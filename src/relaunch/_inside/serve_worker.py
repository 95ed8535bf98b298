"""Runs in the program's process for ``relaunch serve``: load the app, serve the held socket.

Started by the supervisor as ``python -m relaunch._inside.serve_worker APP --fd N ...``
through relaunch's bootstrap, so the app's imports are watched like any program's.
WSGI apps are served by waitress (threads, pure Python, every OS); ASGI apps by
uvicorn; tornado apps by tornado's own HTTPServer (:mod:`relaunch.serve.tornado_app`). All serve
the listening socket the supervisor bound once and keeps open, so while this process
restarts, new connections wait in the socket's backlog.

Once the app is loaded it says so ("loaded") and, with ``--handoff``, accepts nothing
until the supervisor says go over the hand-over socket (:mod:`relaunch.serve.handoff`): the
supervisor first checks that no file it imported changed while it loaded.

On SIGTERM it stops accepting (the supervisor's copy of the socket stays open),
finishes the requests in flight, hands its keep-alive connections to the next process
once they are between requests (without ``--handoff``: closes them), and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from ..integrations.django import devserver as django_devserver
from ..serve import accesslog, appload
from ..serve.appload import AppError
from ..serve.handoff import Link
from ..serve.inject import ASGIInjector, WSGIInjector, script

__all__ = ["main"]

log = logging.getLogger("relaunch.serve")

# After SIGTERM, how long a connection that was accepted but has sent nothing yet may
# take to send its request before it is closed.
FRESH_WAIT = 2.0


def _notify(kind: str) -> None:
    from .. import state

    channel = state.channel()
    if channel is not None:
        channel.send({"t": kind})


def _notify_ready() -> None:
    _notify("ready")


def _wait_for_go(path: str) -> Link | None:
    """Accept nothing until the supervisor says so: it checks first that no file this
    process imported changed while it loaded (a half-written module is never served).
    Without the hub (it could not be reached), serve at once, as without handover."""
    try:
        link = Link(path)
    except OSError as exc:
        log.warning("cannot reach the supervisor's hand-over socket (%s)", exc)
        return None
    link.catch_stop()
    if not link.wait_for_go():
        link.hand_back()
        raise SystemExit(0)  # superseded before it served
    return link


def serve_wsgi(app: Any, sock: socket.socket, *, threads: int, link: Link | None = None) -> None:
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    from waitress.server import create_server

    # One worker thread before serving, the others just after (see _add_threads).
    server: Any = create_server(app, sockets=[sock], threads=1, clear_untrusted_proxy_headers=True)
    stopping = False
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    class Wake(wasyncore.file_dispatcher):  # type: ignore[misc]
        def handle_read(self) -> None:
            self.recv(64)

        def writable(self) -> bool:
            return False

    Wake(wake_r, map=server._map)

    class Channel(HTTPChannel):  # type: ignore[misc]
        def readable(self) -> bool:
            # Once stopping, the next request on an idle connection is for the next
            # process: leave it unread in the socket, which is handed over.
            if stopping and link is not None and self.request is None:
                return False
            return bool(super().readable())

    server.channel_class = Channel

    def adopt(conn: socket.socket, unprocessed: bytes) -> None:
        if stopping:
            assert link is not None
            link.give(conn.detach(), unprocessed)  # arrived after "bye": send it back
            return
        try:
            conn.setblocking(False)
            server.set_socket_options(conn)
            address = conn.getpeername()
        except OSError:
            conn.close()  # the client went away meanwhile
            return
        channel = Channel(server, conn, server.fix_addr(address), server.adj, map=server._map)
        if unprocessed:
            channel.last_activity = time.time()
            channel.received(unprocessed)

    if link is not None:
        hub = link

        class FromHub(wasyncore.dispatcher):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__(map=server._map)
                self.set_socket(hub.sock)

            def handle_read(self) -> None:
                for conn, unprocessed in hub.receive():
                    adopt(conn, unprocessed)
                if not hub.open:
                    self.del_channel()

            def handle_close(self) -> None:
                hub.open = False
                self.del_channel()

            def writable(self) -> bool:
                return False

        FromHub()

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        try:
            os.write(wake_w, b"x")  # wake the loop at once
        except OSError:
            pass

    signal.signal(signal.SIGTERM, on_term)
    if link is not None and link.stop_requested:
        on_term(signal.SIGTERM, None)  # came while it started: stop now, cleanly
    _notify_ready()
    adding = threading.Thread(
        target=_add_threads,
        args=(server.task_dispatcher, threads, lambda: stopping),
        name="relaunch-threads",
        daemon=True,
    )
    adding.start()
    while not stopping:
        wasyncore.loop(timeout=30.0, map=server._map, count=1)
    # Stop accepting; the supervisor's copy of the socket keeps the backlog for the next
    # process. Let requests in flight finish. Then hand each connection over to the
    # next process (without a hub: close it once idle, and give a connection accepted
    # just now, no byte read yet, a moment to send its request).
    for obj in list(server._map.values()):
        if getattr(obj, "accepting", False):
            obj.del_channel()
    if link is not None:
        link.bye()
    stopped_at = time.time()
    while True:
        channels = [c for c in server._map.values() if isinstance(c, HTTPChannel)]
        if not channels and (link is None or not link.open):
            break
        for channel in channels:
            busy = (
                channel.requests
                or channel.request is not None
                or channel.total_outbufs_len
                or channel.will_close
                or channel.close_when_flushed
            )
            if busy:
                continue
            if link is not None:
                channel.del_channel()
                channel.connected = False
                for outbuf in channel.outbufs:
                    outbuf.close()
                link.give(channel.socket.detach())
                continue
            fresh = channel.last_activity == channel.creation_time
            if not fresh or time.time() - stopped_at > FRESH_WAIT:
                channel.handle_close()
        wasyncore.loop(timeout=0.05, map=server._map, count=1)
    adding.join()
    server.task_dispatcher.shutdown()


def _add_threads(dispatcher: Any, count: int, stopping: Callable[[], bool]) -> None:
    """Grow waitress's pool to ``count`` threads, one at a time.

    Each ``Thread.start()`` waits until the new thread runs: in a process just forked
    from a big one, on a busy machine, 1-2 ms each, 10-20 ms for eight, which waitress
    would spend before serving, on the way to the first response after every reload.
    So the server starts with one and grows here. ``set_thread_count`` holds the pool's
    lock while it starts threads, and a request waits on that lock to be queued: one
    thread per call, so a request never waits for more than one start."""
    for size in range(2, count + 1):
        if stopping():
            return
        dispatcher.set_thread_count(size)


def serve_asgi(
    app: Any, sock: socket.socket, link: Link | None = None, *, access_log: bool = False
) -> None:
    try:
        import uvicorn
    except ImportError:
        raise AppError(
            "this is an ASGI app, which relaunch serves with uvicorn: pip install uvicorn"
        ) from None
    from ..serve import asgi_handoff

    asgi_handoff.run(uvicorn, app, sock, link, _notify_ready, access_log=access_log)


def _prepare(app: Any) -> None:
    """Development conveniences the app would want under a reloader."""
    jinja_env = getattr(app, "jinja_env", None)  # Flask: re-read templates when they change
    if jinja_env is not None and hasattr(app, "config"):
        app.config["TEMPLATES_AUTO_RELOAD"] = True
        jinja_env.auto_reload = True
    from ..integrations.flask import app_folders

    folders = app_folders(app)
    if folders:
        import relaunch

        # Their edits refresh open pages; the app itself does not restart for them.
        relaunch.watch(*folders)


def _load(text: str) -> appload.Loaded:
    """The app APP names; a mistake in APP ends the process (see :func:`_give_up`)."""
    try:
        return appload.load(appload.parse(text, cwd=os.getcwd()))
    except AppError as exc:
        _give_up(exc)


def _give_up(exc: AppError) -> NoReturn:
    """Report a mistake as a failed start (the error page, the files that may fix it
    watched) in one line, no traceback, and exit."""
    import relaunch

    from .. import state

    if exc.watch:
        relaunch.watch(*exc.watch)
    channel = state.channel()
    if channel is None:
        log.error("%s", exc)
    else:  # the supervisor says it, once
        channel.report_failure(exc, brief=True)
    raise SystemExit(2) from None


def _with_live_reload(app: Any, kind: str, snippet: bytes) -> Any:
    if kind == "asgi":
        return ASGIInjector(app, snippet)
    if kind == "wsgi":
        return WSGIInjector(app, snippet)
    transforms = getattr(app, "transforms", None)  # a tornado Application
    if isinstance(transforms, list):
        from ..serve.tornado_app import live_reload_transform

        # First, so that it sees the page before tornado's gzip transform compresses it.
        transforms.insert(0, live_reload_transform(snippet))
    return app


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
    parser = argparse.ArgumentParser(prog="relaunch._inside.serve_worker")
    parser.add_argument("app")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--live-reload", default="", metavar="PORT:TOKEN")
    parser.add_argument("--handoff", default="", metavar="PATH")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    accesslog.configure(access_log=args.access_log)

    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    loaded = _load(args.app)
    app, kind = loaded.app, loaded.kind
    _prepare(app)
    app = django_devserver.prepare(app)  # URLconf loaded, folders watched, static served
    if args.access_log and kind == "wsgi":
        app = accesslog.AccessLog(app)
    elif args.access_log and kind == "tornado":
        settings = getattr(app, "settings", None)
        if isinstance(settings, dict):
            settings.setdefault("log_function", accesslog.tornado_log_function)
    if args.live_reload:
        port, _, token = args.live_reload.partition(":")
        app = _with_live_reload(app, kind, script(int(port), token))
    server = {
        "asgi": "uvicorn",
        "tornado": "tornado's HTTPServer",
        "wsgi": f"waitress, {args.threads} threads",
    }[kind]
    workers = f", {args.workers} processes" if args.workers > 1 else ""
    log.info("serving %s (%s app) with %s%s", loaded.name, kind.upper(), server, workers)
    _notify("loaded")
    children = _fork_workers(args.workers)
    link = _wait_for_go(args.handoff) if args.handoff else None
    if kind == "tornado":
        from ..serve import tornado_app

        tornado_app.serve(app, sock, _notify_ready, FRESH_WAIT, link)
    elif kind == "asgi":
        try:
            serve_asgi(app, sock, link, access_log=args.access_log)
        except AppError as exc:  # uvicorn is not installed
            _give_up(exc)
    else:
        serve_wsgi(app, sock, threads=args.threads, link=link)
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
