"""runserver on the listening socket relaunch keeps across restarts (:mod:`relaunch.held`).

Under ``relaunch run`` with the integration, runserver's server class becomes
:class:`KeptSocketServer`, a subclass of Django's own ``WSGIServer``:

* Its first process binds the address as runserver always does, then hands a copy of
  the listening socket to relaunch; every later process takes that copy instead of
  binding. Between two processes, connections wait in the socket's backlog: none is
  refused, and the new process does not wait for the old one to let go of the port.
* When relaunch stops it for a restart, it stops accepting at once, lets the requests
  in flight finish (closing each connection after its response), closes the idle
  keep-alive connections, then exits as runserver does on SIGTERM
  (:func:`stop_on_sigterm`). Meanwhile relaunch has already started the next process,
  which accepts what comes next. The stop of accepting and the close of the idle
  connections are done before the SIGTERM, at relaunch's word to the process's
  control thread (a reload hook, :meth:`KeptSocketServer.stop_accepting`): Python
  runs a signal's handler in the main thread only, and when the kernel gives the
  signal to another thread, a main thread waiting on a lock (runserver's reloader
  between two looks) runs it only when that wait ends, up to a second later. Until
  then the old process would go on accepting, serving the old code beside the new
  process, and holding the port.
* A process whose start fails before it serves (a system check error, an import
  error in the URLconf) tells relaunch to let go of the socket: clients are then
  refused, as without relaunch, rather than left waiting, and the next process that
  starts binds the port again.

Nothing else changes: the same handler, the same threads, the same address; a
SIGTERM handler only where the program has none of its own but runserver's. A closed
idle keep-alive connection can still race with a request the client sends on it at
that moment, as at every runserver restart; browsers retry such a request.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.servers import basehttp  # type: ignore[import-untyped,import-not-found,unused-ignore]

from ... import held, state
from . import serving

__all__ = ["KeptSocketServer", "applies", "serve_on_kept_socket"]

_DRAIN_FOR = 60.0  # relaunch kills the process after its grace period anyway


def applies(command: object) -> bool:
    """Whether ``command`` is runserver with Django's own server class, and relaunch
    keeps sockets here."""
    from django.core.management.commands import runserver  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return (
        isinstance(command, runserver.Command)
        and getattr(command, "server_cls", None) is basehttp.WSGIServer
        and held.available()
    )


def _key_of(command: Any) -> str:
    family = socket.AF_INET6 if command.use_ipv6 else socket.AF_INET
    return held.key(family, command.addr, int(command.port))


def serve_on_kept_socket(command: Any, main: Callable[..., Any]) -> Callable[..., Any]:
    """Make runserver ``command`` serve on the kept socket; returns its ``main``
    (``inner_run``), which lets go of the socket if it fails before serving. In the
    main thread (SIGTERM's handler is installed here)."""
    command.server_cls = KeptSocketServer
    stop_on_sigterm()
    key = _key_of(command)

    def inner_run(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except BaseException:
            if _serving.server is None:
                held.drop(key)  # it will not serve: nobody would answer what waits
            raise

    return inner_run


class _Serving:
    server: KeptSocketServer | None = None


_serving = _Serving()


def stop_on_sigterm() -> None:
    """On SIGTERM, stop serving gracefully, then do what was done before: runserver's
    own handler (``sys.exit(0)``, set by Django's ``run_with_reloader``), or the default
    action. A handler of the program's own is left alone."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL and getattr(previous, "__module__", None) != (
        "django.utils.autoreload"
    ):
        return

    def on_term(signum: int, frame: Any) -> None:
        server = _serving.server
        if server is not None:
            server.retire()
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)


class KeptSocketServer(basehttp.WSGIServer):  # type: ignore[misc]
    """Django's ``WSGIServer`` on the socket relaunch keeps, stopping gracefully."""

    # socketserver's (Django's class comes untyped).
    RequestHandlerClass: Any
    server_address: Any
    socket: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # (Names of its own: socketserver's mixins keep ``_threads`` and others.)
        self._kept_key = ""
        self._kept_taken = False
        self._kept_stopping = False
        self._kept_stopped = threading.Event()
        self._kept_wake_r, self._kept_wake_w = socket.socketpair()
        self._kept_lock = threading.Lock()
        self._kept_connections: dict[Any, bool] = {}  # -> a request is in flight
        super().__init__(*args, **kwargs)
        self.RequestHandlerClass = _tracking(self.RequestHandlerClass)

    # -- the socket ------------------------------------------------------------------

    def server_bind(self) -> None:
        host, port = self.server_address[:2]
        self._kept_key = held.key(self.address_family, host, port)
        sock = held.take(self._kept_key, self.address_family)
        if sock is None:
            super().server_bind()
            return
        self._kept_taken = True
        self.socket.close()
        self.socket = sock
        # What HTTPServer.server_bind and wsgiref's WSGIServer would have set.
        self.server_address = sock.getsockname()
        host, port = self.server_address[:2]
        self.server_name = socket.getfqdn(host)
        self.server_port = port
        self.setup_environ()

    def server_activate(self) -> None:
        if not self._kept_taken:
            super().server_activate()
            held.keep(self._kept_key, self.socket)

    # -- serving ---------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """socketserver's loop, woken at once by :meth:`retire` instead of polling."""
        _serving.server = self
        channel = state.channel()
        if channel is not None:
            channel.add_reload_hook(self.stop_accepting)  # before relaunch's SIGTERM
        serving.serving.set()  # relaunch's reloader thread may look at its folders now
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._kept_wake_r, selectors.EVENT_READ)
                while not self._kept_stopping:
                    ready = selector.select(poll_interval)
                    if self._kept_stopping:
                        break  # what is in the backlog is the next process's
                    if any(key.fileobj is self for key, _events in ready):
                        self._handle_request_noblock()
                    self.service_actions()
        finally:
            self._kept_stopped.set()

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._kept_lock:
            self._kept_connections[request] = False
        try:
            super().finish_request(request, client_address)
        finally:
            with self._kept_lock:
                self._kept_connections.pop(request, None)

    def request_started(self, request: Any) -> None:
        with self._kept_lock:
            if request in self._kept_connections:
                self._kept_connections[request] = True

    def request_done(self, request: Any) -> bool:
        """A response was sent; True if the connection must close (retiring)."""
        serving.answered.set()
        with self._kept_lock:
            if request in self._kept_connections:
                self._kept_connections[request] = False
            return self._kept_stopping

    def stop_accepting(self) -> None:
        """Stop accepting, close this process's listening descriptor (relaunch's copy
        stays open: the next process accepts from it) and the idle connections; a busy
        one closes after its response. Returns once the serve loop has stopped."""
        with self._kept_lock:
            self._kept_stopping = True
        with contextlib.suppress(OSError):
            self._kept_wake_w.send(b"x")
        self._kept_stopped.wait(_DRAIN_FOR)
        self.socket.close()  # this process's descriptor only
        self._close_idle()

    def retire(self) -> None:
        """:meth:`stop_accepting`, then wait until the requests in flight have finished
        (closing the connections that are idle meanwhile)."""
        self.stop_accepting()
        deadline = time.monotonic() + _DRAIN_FOR
        while self._close_idle() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _close_idle(self) -> bool:
        """Close the idle connections; whether any connection is still open."""
        with self._kept_lock:
            idle = [c for c, busy in self._kept_connections.items() if not busy]
            if not self._kept_connections:
                return False
        for conn in idle:
            # Wakes its thread, waiting for a next request, with an end of file.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        return True


_TRACKING: dict[type, type] = {}


def _tracking(handler_cls: type) -> type:
    """``handler_cls`` (Django's WSGIRequestHandler) telling its server when a request
    is in flight; made once per class."""
    if getattr(handler_cls, "_relaunch_tracking", False):
        return handler_cls
    made = _TRACKING.get(handler_cls)
    if made is not None:
        return made

    class Tracking(handler_cls):  # type: ignore[valid-type,misc]
        _relaunch_tracking = True

        def parse_request(self) -> bool:
            self.server.request_started(self.request)
            return bool(super().parse_request())

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            finally:
                if self.server.request_done(self.request):
                    self.close_connection = True

    Tracking.__name__ = Tracking.__qualname__ = handler_cls.__name__
    Tracking.__module__ = handler_cls.__module__
    _TRACKING[handler_cls] = Tracking
    return Tracking
