"""When runserver, in a process under relaunch, has begun to serve and has answered:
set by :mod:`.heldserver`, waited for by :mod:`.reloader` (its first look at the
watched folders comes after them, see ``RelaunchReloader._wait_for_serving``)."""

from __future__ import annotations

import threading

__all__ = ["answered", "expected", "serving"]

expected = False  # runserver serves through heldserver here: the two will be set
serving = threading.Event()  # runserver began to serve
answered = threading.Event()  # and has sent a response
