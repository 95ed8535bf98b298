"""A deploy's symlink swap followed (relaunch.run.release_swap): which releases are
left behind, and the move into the new one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaunch.run.release_swap import ReleaseSwap, left_after, left_behind
from relaunch.run.releases import ReleaseLinks
from relaunch.watch.watchset import WatchSet


def test_the_release_left_is_remembered_and_one_swapped_back_to_is_not() -> None:
    left = left_after(set(), "/srv/releases/41", "/srv/releases/42")
    assert left == {"/srv/releases/41"}
    left = left_after(left, "/srv/releases/42", "/srv/releases/43")
    assert left == {"/srv/releases/41", "/srv/releases/42"}
    assert left_after(left, "/srv/releases/43", "/srv/releases/41") == {
        "/srv/releases/42",
        "/srv/releases/43",
    }


def test_left_behind_means_inside_a_release_left() -> None:
    left = {"/srv/releases/41"}
    assert left_behind("/srv/releases/41/app.py", left)
    assert not left_behind("/srv/releases/410/app.py", left)
    assert not left_behind("/srv/releases/42/app.py", left)


def test_a_swap_moves_into_the_new_release_with_its_watch_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("41", "42"):
        (tmp_path / "releases" / name).mkdir(parents=True)
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "releases" / "41")
    monkeypatch.chdir(current)
    fresh = WatchSet()
    swap = ReleaseSwap(ReleaseLinks(str(current)), lambda: fresh)
    assert swap.is_link(str(current)) and swap.folders() == {str(tmp_path)}
    tmp = tmp_path / "current.new"
    tmp.symlink_to(tmp_path / "releases" / "42")
    os.replace(tmp, current)
    old, new = swap.swapped(str(current)) or ("", "")
    watchset = WatchSet()
    adopted: list[WatchSet] = []
    monkeypatch.setattr(watchset, "adopt", adopted.append)
    assert swap.move(str(current), old, new, watchset)
    assert adopted == [fresh]
    assert os.getcwd() == str(tmp_path / "releases" / "42")
    assert swap.left_behind(str(tmp_path / "releases" / "41" / "app.py"))


def test_a_release_that_cannot_be_entered_is_not_moved_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "releases" / "41").mkdir(parents=True)
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "releases" / "41")
    monkeypatch.chdir(current)
    swap = ReleaseSwap(ReleaseLinks(str(current)))
    current.unlink()  # the link is gone when relaunch tries to follow it
    assert not swap.move(str(current), "/old", "/new", WatchSet())
    assert swap.left == set()
