"""How the supervisor runs: its timings and settle options, from the settings."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Options"]


@dataclass(frozen=True)
class Options:
    grace: float = 5.0  # seconds a stopping program gets before SIGKILL
    on_exit: str = "wait"  # after a clean exit: wait | restart | exit
    settle_ms: int = 10  # a batch of changes is taken once the tree is this quiet...
    settle_max_ms: int = 1000  # ... or this long after its first change
    poll: bool = False  # poll the file system rather than ask for its events
    poll_interval: float = 0.5
    read_stdin: bool | None = None  # Enter reloads; None: when stdin is a terminal
