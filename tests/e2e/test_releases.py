"""`relaunch run` started from a symlinked release folder follows a deploy's swaps."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Relaunch, write

Start = Callable[..., Relaunch]

APP = """\
import os, time
import version
print("release", version.NAME, "in", os.getcwd(), flush=True)
while True:
    time.sleep(1)
"""


def release(root: Path, name: str) -> Path:
    folder = root / "releases" / name
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(APP)
    (folder / "version.py").write_text(f"NAME = {name!r}\n")
    return folder


def swap(link: Path, target: Path, *, atomic: bool = True) -> None:
    """Point ``link`` at ``target`` as deploy tools do: a new link renamed over the old
    one (atomic), or ``ln -sfn`` (unlink, then create)."""
    if atomic:
        tmp = link.with_name(link.name + ".new")
        tmp.symlink_to(target)
        os.replace(tmp, link)
    else:
        link.unlink()
        link.symlink_to(target)


@pytest.mark.parametrize("restart", ["warm", "cold"])
def test_run_follows_a_release_swap(tmp_path: Path, relaunch: Start, restart: str) -> None:
    first = release(tmp_path, "r1")
    second = release(tmp_path, "r2")
    current = tmp_path / "current"
    current.symlink_to(first)
    # Started as a shell in `cd current` would: PWD keeps the link's name.
    r = relaunch(
        ["run", "-v", "--restart", restart, "--", "python", "app.py"],
        current,
        {"PWD": str(current)},
    )
    r.expect(rf"release r1 in {first}$")

    swap(current, second)
    r.expect(r"current now points to .*releases/r2", stream="err")
    r.expect(rf"release r2 in {second}$")

    # The new release's files are watched, the old one's no longer are.
    write(second / "version.py", "NAME = 'r2b'\n")
    r.expect(rf"release r2b in {second}$")
    mark = r.out.mark()
    write(first / "version.py", "NAME = 'r1b'\n")
    time.sleep(1.0)
    assert r.out.count("release") == mark, r.output()

    # `ln -sfn` (the link missing for a moment) back to the first release.
    swap(current, first, atomic=False)
    r.expect(rf"release r1b in {first}$")
    assert r.err.count("now points to") == 2, r.output()


def test_no_link_no_following(tmp_path: Path, relaunch: Start) -> None:
    """A swap of a link that is not on the way to the working folder changes nothing."""
    first = release(tmp_path, "r1")
    second = release(tmp_path, "r2")
    current = tmp_path / "current"
    current.symlink_to(second)
    r = relaunch(["run", "--", "python", "app.py"], first, {"PWD": str(first)})
    r.expect(r"release r1 in ")
    swap(current, first)
    time.sleep(1.0)
    assert r.out.count("release") == 1 and "now points to" not in r.err.text(), r.output()
