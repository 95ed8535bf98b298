"""Which symlinks a run follows, and when one counts as swapped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaunch.run.releases import ReleaseLinks, logical_cwd, symlinks_above


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    for name in ("41", "42"):
        (tmp_path / "releases" / name / "src").mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "41")
    return tmp_path


def test_symlinks_above_names_every_link_on_the_way(deploy: Path) -> None:
    (deploy / "outer").symlink_to(deploy)
    path = str(deploy / "outer" / "current" / "src")
    assert symlinks_above([path]) == {str(deploy / "outer"), str(deploy / "outer" / "current")}
    assert symlinks_above([str(deploy / "releases" / "41" / "src")]) == set()


def test_a_swap_is_reported_once_with_both_targets(deploy: Path) -> None:
    current = deploy / "current"
    links = ReleaseLinks(str(current / "src"))
    assert links and links.folders() == {str(deploy)}
    assert links.swapped(str(current)) is None  # still the same release
    assert links.swapped(str(deploy / "releases")) is None  # not a link of ours
    tmp = deploy / "current.new"
    tmp.symlink_to(deploy / "releases" / "42")
    os.replace(tmp, current)
    old, new = links.swapped(str(current)) or ("", "")
    assert (old, new) == (str(deploy / "releases" / "41"), str(deploy / "releases" / "42"))
    assert links.swapped(str(current)) is None


def test_a_link_missing_for_a_moment_is_not_a_swap(deploy: Path) -> None:
    current = deploy / "current"
    links = ReleaseLinks(str(current))
    current.unlink()
    assert links.swapped(str(current)) is None
    current.symlink_to(deploy / "releases" / "nowhere")
    assert links.swapped(str(current)) is None  # dangling: wait for a real release
    current.unlink()
    current.symlink_to(deploy / "releases" / "42")
    assert links.swapped(str(current)) is not None


def test_no_links_nothing_to_follow(deploy: Path) -> None:
    assert not ReleaseLinks(str(deploy / "releases" / "41"))


def test_logical_cwd_keeps_the_shells_name_only_when_it_is_true(
    deploy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(deploy / "current")
    monkeypatch.setenv("PWD", str(deploy / "current"))
    assert logical_cwd() == str(deploy / "current")
    monkeypatch.setenv("PWD", str(deploy / "releases" / "42"))  # stale: somewhere else
    assert logical_cwd() == str(deploy / "releases" / "41")
    monkeypatch.setenv("PWD", "relative")
    assert logical_cwd() == str(deploy / "releases" / "41")
