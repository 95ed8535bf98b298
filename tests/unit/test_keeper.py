"""The socket keeper (relaunch.run.keeper) and the program's side of it (relaunch.held),
with real sockets: a listening socket handed over outlives the process that bound it,
and the connections made meanwhile wait in its backlog."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from relaunch import held, oslayer
from relaunch.run.keeper import ENV, SocketKeeper, parse_request

pytestmark = pytest.mark.skipif(
    oslayer.fd_passing_socket_type() is None, reason="no passing of open sockets here"
)


@pytest.fixture
def keeper(monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketKeeper]:
    k = SocketKeeper()
    monkeypatch.setenv(ENV, k.path)
    try:
        yield k
    finally:
        k.close()


def listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_requests_are_parsed_strictly() -> None:
    assert parse_request(b"keep tcp/2 127.0.0.1 8000") == ("keep", "tcp/2 127.0.0.1 8000")
    assert parse_request(b"take k") == ("take", "k")
    assert parse_request(b"drop k") == ("drop", "k")
    long = b"take " + b"k" * 201
    for bad in (b"", b"keep", b"keep ", b"give k", b"take \xff", b"take a\nb", long):
        assert parse_request(bad) is None, bad


def test_a_kept_socket_outlives_the_process_and_holds_its_connections(
    keeper: SocketKeeper,
) -> None:
    name = held.key(socket.AF_INET, "127.0.0.1", 0)
    first = listening()
    port = first.getsockname()[1]
    assert held.take(name, socket.AF_INET) is None  # nothing kept yet: bind
    assert held.keep(name, first)
    assert keeper.holding()
    first.close()  # the first process is gone

    # A client connects between two processes: it waits in the backlog, not refused.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"hello")
    second = held.take(name, socket.AF_INET)
    assert second is not None
    assert second.getsockname()[1] == port
    assert not second.get_inheritable()
    conn, _ = second.accept()
    assert conn.recv(5) == b"hello"
    conn.close()
    client.close()
    second.close()
    # Taking it again gives another copy: the keeper keeps its own.
    third = held.take(name, socket.AF_INET)
    assert third is not None
    third.close()


def test_another_address_or_family_gets_nothing(keeper: SocketKeeper) -> None:
    sock = listening()
    name = held.key(socket.AF_INET, "127.0.0.1", sock.getsockname()[1])
    held.keep(name, sock)
    sock.close()
    assert held.take(held.key(socket.AF_INET, "127.0.0.1", 1), socket.AF_INET) is None
    assert held.take(name, socket.AF_INET6) is None


def test_the_first_socket_kept_stays_and_a_non_listening_one_is_not_kept(
    keeper: SocketKeeper,
) -> None:
    a, b = listening(), listening()
    held.keep("k", a)
    held.keep("k", b)
    taken = held.take("k", socket.AF_INET)
    assert taken is not None and taken.getsockname() == a.getsockname()
    taken.close()
    plain = socket.socket()
    held.keep("plain", plain)
    assert held.take("plain", socket.AF_INET) is None
    for sock in (a, b, plain):
        sock.close()


def test_drop_and_release_let_go_so_clients_are_refused(keeper: SocketKeeper) -> None:
    for let_go in ("drop", "release"):
        sock = listening()
        port = sock.getsockname()[1]
        held.keep("k", sock)
        sock.close()
        if let_go == "drop":
            held.drop("k")
        else:
            keeper.release()
        assert not keeper.holding()
        assert held.take("k", socket.AF_INET) is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_without_a_keeper_the_program_binds_as_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert not held.available()
    sock = listening()
    assert not held.keep("k", sock)
    assert held.take("k", socket.AF_INET) is None
    held.drop("k")
    sock.close()


def test_a_keeper_gone_away_is_no_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv(ENV, os.path.join(str(tmp_path), "nothing-here"))
    sock = listening()
    assert not held.keep("k", sock)
    assert held.take("k", socket.AF_INET) is None
    sock.close()


def test_a_silent_or_garbled_request_does_not_stop_the_keeper(keeper: SocketKeeper) -> None:
    kind = oslayer.fd_passing_socket_type()
    assert kind is not None
    with socket.socket(socket.AF_UNIX, kind) as silent:
        silent.connect(keeper.path)
        with socket.socket(socket.AF_UNIX, kind) as garbled:
            garbled.connect(keeper.path)
            garbled.send(b"\x00\x01junk")
        sock = listening()
        # Answered after the silent one times out (the keeper's own bound).
        assert held.keep("k", sock)
        sock.close()
    taken = held.take("k", socket.AF_INET)
    assert taken is not None
    taken.close()
