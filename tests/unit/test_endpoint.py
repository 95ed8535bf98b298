"""Unit tests for the supervisor's endpoints: the pure decisions, and a Listener on a
real loop with real sockets (its cap and head deadline)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from relaunch.serve import endpoint
from relaunch.serve.endpoint import (
    Connection,
    Listener,
    LoopThread,
    connection_cap,
    listen_same_port,
    parse_head,
    response,
)
from relaunch.serve.livereload import check_request
from relaunch.subcommands.serve import live_reload_addresses

from ..netcheck import has_ipv6_loopback


@pytest.mark.parametrize(
    ("limit", "cap"), [(None, 64), (20000, 64), (1024, 32), (256, 8), (128, 4), (16, 4)]
)
def test_connection_cap_is_a_share_of_the_descriptor_limit(limit: int | None, cap: int) -> None:
    assert connection_cap(limit) == cap


def test_parse_head() -> None:
    request = parse_head(b"GET /events?token=x HTTP/1.1\r\nHost: 127.0.0.1:9\r\nOrigin: o\r\n\r\n")
    assert request is not None
    assert (request.method, request.target) == ("GET", "/events?token=x")
    assert request.headers.get("host") == "127.0.0.1:9" and request.headers.get("Origin") == "o"
    assert parse_head(b"\x16\x03\x01 TLS hello\r\n\r\n") is None
    assert parse_head(b"GET /\r\n\r\n") is None
    assert parse_head(b"GET / SPDY/3\r\n\r\n") is None


def test_response_is_whole_and_refuses_line_breaks_in_headers() -> None:
    data = response(307, headers=[("Location", "/a")])
    assert data == (
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /a\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    head_only = response(500, b"page", send_body=False)
    assert head_only.endswith(b"Content-Length: 4\r\nConnection: close\r\n\r\n")
    with pytest.raises(ValueError):
        response(200, headers=[("Access-Control-Allow-Origin", "x\r\nSet-Cookie: a=b")])


def test_origin_with_control_characters_is_refused() -> None:
    common = dict(
        path="/events?token=t",
        host="127.0.0.1:9",
        client="127.0.0.1",
        token="t",
        port=9,
        origins=frozenset({"http://127.0.0.1:8000"}),
    )
    assert check_request(origin="http://127.0.0.1:8000", allow_remote=False, **common)[0] == 200
    evil = "http://evil\r\n x:8000"
    assert check_request(origin=evil, allow_remote=True, **common)[0] == 403


def test_ipv6_loopback_host_is_accepted() -> None:
    status, _ = check_request(
        path="/events?token=t",
        host="[::1]:9",
        origin="http://[::1]:8000",
        client="::1",
        token="t",
        port=9,
        origins=frozenset({"http://[::1]:8000"}),
        allow_remote=False,
    )
    assert status == 200


def test_live_reload_addresses_follow_the_app_host() -> None:
    assert live_reload_addresses("127.0.0.1", False) == ("127.0.0.1", "::1")
    assert live_reload_addresses("::1", False) == ("::1", "127.0.0.1")
    assert live_reload_addresses("::", False) == ("::1", "127.0.0.1")
    assert live_reload_addresses("0.0.0.0", True) == ("0.0.0.0",)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_listen_same_port_on_both_loopbacks() -> None:
    sockets = listen_same_port(["127.0.0.1", "::1"])
    try:
        assert len(sockets) == 2
        assert sockets[0].getsockname()[1] == sockets[1].getsockname()[1]
    finally:
        for s in sockets:
            s.close()


def test_listen_same_port_leaves_out_an_address_the_machine_lacks() -> None:
    sockets = listen_same_port(["127.0.0.1", "192.0.2.1"])  # TEST-NET: not ours
    try:
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1"]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_listener_holds_at_most_its_cap_dropping_the_oldest_idle(
    loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoint, "HEAD_TIMEOUT", 60.0)  # only the cap closes them here

    async def handler(conn: Connection) -> None:
        await conn.read_head()

    server = listen_same_port(["127.0.0.1"])[0]
    listener = Listener(loop.loop, server, handler, cap=4, name="test")
    loop.call(listener.start)
    clients = [socket.create_connection(server.getsockname()[:2]) for _ in range(20)]
    try:
        # The first 16 are dropped oldest first, as newer ones come; the last 4 are held.
        for client in clients[:16]:
            client.settimeout(20)
            assert client.recv(100) == b""
        assert loop.call(lambda: listener.connections) == 4
    finally:
        loop.call(listener.stop)
        loop.call(listener.close_all)
        for client in clients:
            client.close()
        server.close()


def test_listener_answers_408_when_the_head_is_late_and_closes_idle_ones(
    loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoint, "HEAD_TIMEOUT", 0.2)

    async def handler(conn: Connection) -> None:
        await conn.read_head()

    server = listen_same_port(["127.0.0.1"])[0]
    listener = Listener(loop.loop, server, handler, cap=4, name="test")
    loop.call(listener.start)
    client = socket.create_connection(server.getsockname()[:2], timeout=20)
    idle = socket.create_connection(server.getsockname()[:2], timeout=20)
    try:
        client.sendall(b"GET / HTTP/1.1\r\n")  # and never the rest
        assert client.recv(100).startswith(b"HTTP/1.1 408 ")
        assert idle.recv(100) == b""  # it never began a request: closed without a word
        _wait(lambda: loop.call(lambda: listener.connections) == 0)
    finally:
        loop.call(listener.stop)
        client.close()
        idle.close()
        server.close()


_OUT_OF_DESCRIPTORS = """\
import logging, os, resource, socket, sys, time
from relaunch.serve.endpoint import Listener, LoopThread, listen_same_port, response

seen = []
handler = logging.Handler()
handler.emit = lambda record: seen.append(record.getMessage())
logging.getLogger("relaunch").addHandler(handler)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
loop = LoopThread()

async def answer(conn):
    if await conn.read_head() is not None:
        await conn.reply(response(200, b"ok"))

server = listen_same_port(["127.0.0.1"])[0]
listener = Listener(loop.loop, server, answer, cap=60, name="test")  # above what is left
loop.call(listener.start)
hog = []
try:
    while True:
        hog.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
os.close(hog.pop())  # one left, for the client's end: the server's accept finds none
client = socket.create_connection(server.getsockname()[:2], timeout=20)
client.sendall(b"GET / HTTP/1.1\\r\\n\\r\\n")
deadline = time.monotonic() + 20
while not seen and time.monotonic() < deadline:
    time.sleep(0.01)
print(seen)
for fd in hog:
    os.close(fd)
print(client.recv(100).split(b"\\r\\n")[0].decode())
"""


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="POSIX descriptor limits")
def test_listener_out_of_descriptors_pauses_then_serves() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "test: out of file descriptors" in lines[0], result.stdout
    assert lines[1] == "HTTP/1.1 200 OK", result.stdout
    assert "Traceback" not in result.stderr


def test_the_error_page_answers_a_handed_over_connection_with_its_read_bytes(
    loop: LoopThread,
) -> None:
    """A connection a stopping process accepted and read part of (its request's first
    bytes) is answered from those bytes on, as if it had been accepted here."""
    from relaunch.serve.errorpage import ErrorResponder

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    client, served = socket.socketpair()
    try:
        errors = ErrorResponder(listening, loop)
        errors.activate(b"<p>broken</p>")
        errors.adopt(served.detach(), b"GET /page HTTP/1.1\r\nHo")
        client.sendall(b"st: x\r\nConnection: close\r\n\r\n")
        client.shutdown(socket.SHUT_WR)
        client.settimeout(20)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 500") and reply.endswith(b"<p>broken</p>"), reply
        errors.close()
    finally:
        client.close()
        listening.close()
