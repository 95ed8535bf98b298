"""Logging in ``relaunch serve``'s worker: relaunch's lines, and one line per request.

The worker is the app's process: only relaunch's own logger gets relaunch's
``[relaunch]`` prefix; the root logger is left to the app (Flask, for one, adds its
own handler when nothing is configured; a handler there would print every line of
Django's loggers, which propagate, a second time), so the app's lines stay the app's.

The access log is one line per request, in uvicorn's shape
(``127.0.0.1:54321 - "GET / HTTP/1.1" 200``), on stderr: for WSGI apps by
:class:`AccessLog` around the app, for ASGI apps by uvicorn's own access log, for
tornado apps by the application's ``log_function``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["AccessLog", "PrefixFormatter", "access_line", "configure", "tornado_log_function"]

ACCESS_LOGGER = "relaunch.access"


class PrefixFormatter(logging.Formatter):
    """relaunch's own lines: ``[relaunch] warning: ...``; with ``tracebacks``, a record's
    exception follows it (the worker's; the supervisor's lines stay one line each)."""

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            message = "error: " + message
        elif record.levelno >= logging.WARNING:
            message = "warning: " + message
        text = f"[relaunch] {message}"
        if self.tracebacks and record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(*, access_log: bool) -> None:
    """Set up relaunch's loggers in the worker, and nothing else."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrefixFormatter(tracebacks=True))
    own = logging.getLogger("relaunch")
    own.handlers[:] = [handler]
    own.propagate = False
    own.setLevel(logging.INFO)
    access = logging.getLogger(ACCESS_LOGGER)
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [plain]
    access.propagate = False
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)


def access_line(client: str, method: str, target: str, version: str, status: int | str) -> str:
    """One request, as uvicorn prints it: ``client - "METHOD target VERSION" status``."""
    return f'{client} - "{method} {target} {version}" {status}'


def _wsgi_client(environ: dict[str, Any]) -> str:
    host = environ.get("REMOTE_ADDR", "-")
    port = environ.get("REMOTE_PORT")
    return f"{host}:{port}" if port else str(host)


def _wsgi_target(environ: dict[str, Any]) -> str:
    # PATH_INFO is decoded as latin-1 by the WSGI spec; give it back as the client sent it.
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    try:
        path = path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


class AccessLog:
    """WSGI middleware: logs each request once its status is known (or as 500 when the
    app raised before starting a response)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        status: list[str] = []

        def recording(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [status_line.split(" ", 1)[0]]
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, recording)
        except BaseException:
            status[:] = status or ["500"]
            raise
        finally:
            self.log.info(
                "%s",
                access_line(
                    _wsgi_client(environ),
                    environ.get("REQUEST_METHOD", "-"),
                    _wsgi_target(environ),
                    environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                    status[0] if status else "-",
                ),
            )


def tornado_log_function(handler: Any) -> None:
    """A tornado ``log_function``: the same line for each request tornado finished."""
    request = handler.request
    logging.getLogger(ACCESS_LOGGER).info(
        "%s",
        access_line(
            request.remote_ip or "-",
            request.method,
            request.uri,
            request.version,
            handler.get_status(),
        ),
    )
