"""``relaunch serve APP``: the development server that never refuses a connection."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import socket
import sys

from .. import oslayer
from ..command import Command, PythonInvocation
from ..config import OPTIONS, ConfigError, check_number, load
from ..run.frontend import FrontEnd
from ..serve import appload
from ..serve.endpoint import LISTEN_BACKLOG, LoopThread
from ..serve.frontend import ServeFrontEnd
from ..serve.handoff import Hub
from ..serve.livereload import LiveReload
from .common import add_noise_options, add_settings_options
from .run import build_watchset, follow_releases, make_supervisor

__all__ = ["HELP", "NAME", "bind", "configure", "live_reload_addresses", "main"]

log = logging.getLogger("relaunch")

NAME = "serve"
HELP = "serve a WSGI, ASGI or tornado app, reload it on change, refresh the browser"

DESCRIPTION = """\
Serve APP and reload it whenever its code changes.

APP is module:attr or path/to/file.py:attr; without :attr, the module's `app` or
`application`, else its `create_app()` or `make_app()`. A factory (anything callable
with no required argument, e.g. module:create_app, or module:create_app('dev') with
literal arguments) is called once and what it returns is served. The kind is told by
the call signature and said in the log: WSGI apps are served by waitress (threads),
ASGI apps by uvicorn (pip install uvicorn), tornado Applications by tornado's own
HTTPServer. One line per request is logged (--no-access-log turns it off).

relaunch binds the socket once and keeps it open across reloads: during a reload new
connections wait instead of being refused. If the new code fails, the error page is
served on the same address until the fix is saved. Open pages reload by themselves
once the new code serves; a change to templates or static files that you --watch (a
Flask app's and its blueprints' are watched without it) refreshes them without
restarting anything, and a CSS-only change swaps stylesheets in place.
"""

EXAMPLES = """\
examples:
  relaunch serve examples/hello/app.py:app
  relaunch serve myproject.wsgi:application -w templates -w 'static/**'
  relaunch serve main:app --port 8080            # FastAPI, Starlette (ASGI)
  relaunch serve 'factory:create_app()' --workers 2
  relaunch serve shop:create_app                  # a Flask app factory
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("app", metavar="APP", help="the WSGI, ASGI or tornado app, e.g. myapp:app")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes serving the socket (default: 1)"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads per process for WSGI apps (default: 8)"
    )
    parser.add_argument(
        "--no-browser-reload",
        action="store_true",
        help="do not inject the live-reload script into HTML pages",
    )
    parser.add_argument(
        "--allow-remote-reload",
        action="store_true",
        help="serve the live-reload endpoint to other machines too (with a non-loopback --host)",
    )
    add_settings_options(parser, serve=True)
    add_noise_options(parser)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """Bind and listen once; the socket outlives every process that serves it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} is already in use on {host}: stop what holds it, or pick "
                "another with --port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _handoff_hub() -> Hub | None:
    """Where keep-alive connections wait between processes; None where open sockets
    cannot be passed (Windows): retiring processes close them instead."""
    if oslayer.fd_passing_socket_type() is None:
        return None
    try:
        return Hub()
    except OSError as exc:
        log.warning("cannot hand keep-alive connections over at reloads: %s", exc)
        return None


def live_reload_addresses(host: str, allow_remote: bool) -> tuple[str, ...]:
    """Where the live-reload endpoint listens, pure; the first address is required, the
    others are taken when the machine has them. The page reaches the endpoint under the
    host name it was loaded from, so a loopback app gets both loopbacks, its own first."""
    if allow_remote:
        return (host,)
    if ":" in host:
        return ("::1", "127.0.0.1")
    return ("127.0.0.1", "::1")


def main(args: argparse.Namespace) -> int:
    cwd = os.getcwd()
    values = {option.name: getattr(args, option.name) for option in OPTIONS}
    settings = load(values, cwd=cwd)
    for name in ("workers", "threads", "port"):
        check_number(name, getattr(args, name), f"--{name}")
    try:
        appload.parse(args.app, cwd=cwd)  # its syntax: what no edit of the code can fix
    except appload.AppError as exc:
        raise ConfigError(str(exc)) from None
    sock = bind(args.host, args.port)
    port = int(sock.getsockname()[1])
    if not _is_loopback(args.host):
        log.warning(
            "listening on %s: the app, with its debugging error pages, is reachable from "
            "other machines. Use --host 127.0.0.1 unless you mean it.",
            args.host,
        )
    livereload = None
    endpoints = LoopThread()
    if not args.no_browser_reload:
        names = {"127.0.0.1", "localhost", "[::1]"}
        if not _is_loopback(args.host) and args.host not in ("0.0.0.0", "::"):
            names.add(args.host)
        livereload = LiveReload(
            app_origins={f"http://{name}:{port}" for name in names},
            endpoints=endpoints,
            addresses=live_reload_addresses(args.host, args.allow_remote_reload),
            allow_remote=args.allow_remote_reload,
        )
    worker_args = [
        args.app,
        "--fd",
        str(sock.fileno()),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
    ]
    if livereload is not None:
        worker_args += ["--live-reload", f"{livereload.port}:{livereload.token}"]
    hub = _handoff_hub()
    if hub is not None:
        worker_args += ["--handoff", hub.path]
    if settings.access_log:
        worker_args.append("--access-log")
    python = PythonInvocation(
        sys.executable, (), "module", "relaunch._inside.serve_worker", tuple(worker_args)
    )
    command = Command(
        (sys.executable, "-m", "relaunch._inside.serve_worker", *worker_args),
        sys.executable,
        python,
    )
    watchset = build_watchset(settings, command, cwd)

    frontend: FrontEnd = ServeFrontEnd(sock, livereload, endpoints, hub)  # mypy checks the fit
    supervisor = make_supervisor(
        command,
        watchset,
        settings,
        frontend=frontend,
        pass_fds=(sock.fileno(),),
        **follow_releases(values, command),
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    log.info("serving %s on http://%s:%d/ ; Enter reloads, Ctrl-C stops", args.app, shown, port)
    try:
        return supervisor.run()
    finally:
        sock.close()
