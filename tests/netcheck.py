"""What the machine's network offers the tests (checked once per test module)."""

from __future__ import annotations

import socket

__all__ = ["has_ipv6_loopback"]


def has_ipv6_loopback() -> bool:
    """True when ``::1`` can be bound here (some containers have no IPv6 at all)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
