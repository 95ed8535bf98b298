"""The bundled example: a tiny WSGI app that shows what `greeting.py` says.

Run it under relaunch, open http://127.0.0.1:8000/, then edit greeting.py and
reload the page:

    relaunch run -- python examples/hello/app.py
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import greeting


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = (
        "<!doctype html><html><head><title>hello</title></head>"
        f"<body><h1>{greeting.MESSAGE}</h1></body></html>\n"
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    with make_server("127.0.0.1", port, app, handler_class=QuietHandler) as server:
        print(
            f"serving http://127.0.0.1:{port}/ (pid {os.getpid()}): {greeting.MESSAGE}", flush=True
        )
        server.serve_forever()
