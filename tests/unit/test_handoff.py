"""Unit tests for relaunch.serve.handoff: the hub and links, in one process, with real
Unix sockets and real connected sockets handed through them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from relaunch import oslayer
from relaunch.serve.handoff import Hub, Link

from ..e2e.harness import wait_until

pytestmark = pytest.mark.skipif(
    oslayer.fd_passing_socket_type() is None, reason="no SCM_RIGHTS over SOCK_SEQPACKET"
)


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.close()


def link_as(hub: Hub, pgid: int, monkeypatch: pytest.MonkeyPatch) -> Link:
    """A link that says it is process group ``pgid`` (one process plays several)."""
    monkeypatch.setattr(oslayer, "own_process_group", lambda: pgid)
    return Link(hub.path)


def received(link: Link, count: int = 1) -> list[tuple[socket.socket, bytes]]:
    got: list[tuple[socket.socket, bytes]] = []

    def enough() -> bool:
        got.extend(link.receive())
        return len(got) >= count

    wait_until(enough, what=f"{count} connection(s) from the hub")
    return got


def test_the_hub_folder_is_private(hub: Hub) -> None:
    assert os.stat(hub.folder).st_mode & 0o777 == 0o700


def test_a_connection_given_back_reaches_the_approved_process_with_its_bytes(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = link_as(hub, 100, monkeypatch)
    hub.approve(100)
    assert old.wait_for_go()
    client, server = socket.socketpair()
    try:
        old.give(server.detach(), b"GET / HTTP/1.1\r\n")  # said "bye" first, by itself
        wait_until(lambda: hub.held == 1, what="the connection held")
        new = link_as(hub, 200, monkeypatch)
        hub.approve(200)
        assert new.wait_for_go()
        [(adopted, unprocessed)] = received(new)
        assert unprocessed == b"GET / HTTP/1.1\r\n"
        # The same connection: what the client sends next reaches the new process.
        client.sendall(b"Host: x\r\n\r\n")
        assert adopted.recv(100) == b"Host: x\r\n\r\n"
        adopted.close()
        # After "bye" the retiring process hears the end of the stream.
        wait_until(lambda: not old.receive() and not old.open, what="end of stream")
    finally:
        client.close()


def test_a_process_never_approved_gets_nothing(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    current = link_as(hub, 100, monkeypatch)
    hub.approve(100)
    assert current.wait_for_go()
    unapproved = link_as(hub, 300, monkeypatch)
    oslayer.send_with_fd(unapproved.sock, b"H300")
    retiring = link_as(hub, 400, monkeypatch)
    a, b = socket.socketpair()
    try:
        retiring.give(b.detach())
        [(adopted, _)] = received(current)
        adopted.close()
        assert unapproved.receive() == [] and unapproved.open
    finally:
        a.close()


def test_connections_go_to_the_error_page_while_the_program_has_failed(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is held when the program fails, and what is given back until a new process
    starts, is answered by the error page with the bytes read from it: closing it would
    reset a request already sent on it."""
    answered: list[tuple[int, bytes]] = []
    retiring = link_as(hub, 100, monkeypatch)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    e, f = socket.socketpair()
    try:
        retiring.give(b.detach(), b"GET / HTTP/1.1\r\n")
        wait_until(lambda: hub.held == 1, what="the connection held")
        hub.failed(lambda fd, data: answered.append((fd, data)))
        assert len(answered) == 1 and answered[0][1] == b"GET / HTTP/1.1\r\n"
        retiring.give(d.detach())  # given back meanwhile: to the error page too
        wait_until(lambda: len(answered) == 2, what="the second connection answered")
        assert hub.held == 0
        hub.hold()  # a new process starts: held for it again
        retiring.give(f.detach())
        wait_until(lambda: hub.held == 1, what="the third connection held")
        assert len(answered) == 2
        for fd, _data in answered:
            os.close(fd)
    finally:
        for sock in (a, c, e):
            sock.close()
