"""What the supervisor tells a front end (``relaunch serve`` has one), as a protocol.

The run layer defines the hooks and the :class:`Failure` they carry; the front end
that implements them (:class:`relaunch.serve.frontend.ServeFrontEnd`) lives above,
and is handed to the supervisor by the subcommand that builds it. The supervisor
calls every hook on its own thread; none may wait for a client.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Failure", "FrontEnd"]


@dataclass
class Failure:
    """Why the program is not serving: what the error page shows."""

    summary: str = ""
    traceback: str = ""
    path: str = ""
    line: int = 0


class FrontEnd(Protocol):
    def child_starting(self) -> None:
        """A process is about to start: only it may answer from now on."""

    def take_over(self, pgid: int) -> None:
        """The new process (group ``pgid``) loaded and no file it imported changed
        since: let it serve, and give it the connections held for it."""

    def child_ready(self) -> None:
        """The new process serves."""

    def child_failed(self, failure: Failure) -> None:
        """The process could not start, crashed, or exited."""

    def handle_change(self, changed: Collection[str], program_files: Collection[str]) -> bool:
        """True if the change was handled without a restart (``program_files``: the
        files the program imported)."""

    def close(self) -> None:
        """relaunch is exiting."""
