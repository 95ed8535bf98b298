from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from .harness import Relaunch


@pytest.fixture
def relaunch(tmp_path: Path) -> Iterator[Callable[..., Relaunch]]:
    """Start relaunch (always stopped at the end, even on failure)."""
    started: list[Relaunch] = []

    def start(args: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        proc = Relaunch(args, cwd or tmp_path, env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()
