"""Unit tests for touch-to-reload (``--touch-reload``): the mtime decision, the watch
set's touch entries, and the option from every source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaunch.config import WATCH_OPTIONS, ConfigError, load
from relaunch.subcommands.common import watchset_from_settings
from relaunch.watch.fingerprint import Fingerprint, Fingerprints, changed
from relaunch.watch.rules import GitIgnore, Glob, IgnoreRules
from relaunch.watch.watchset import WatchEntry, WatchSet

D1 = b"\x01" * 16
D2 = b"\x02" * 16


def fp(mtime: int, size: int = 10, digest: bytes | None = D1) -> Fingerprint:
    return Fingerprint(mtime, size, digest)


# -- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (fp(1), fp(2), True),  # touched: same content, newer mtime
        (fp(2), fp(1), True),  # mtime set back (touch -d): still a touch
        (fp(1), fp(1), False),  # nothing happened (a chmod leaves the mtime alone)
        (fp(1), fp(1, 11, D2), False),  # content differs within the same mtime: no touch
        (fp(1, 10, None), fp(2, 10, None), True),  # unreadable or large: mtime still counts
        (None, fp(1), True),  # created: the trigger file appeared
        (fp(1), None, False),  # removed after use: no second reload
        (None, None, False),
    ],
)
def test_changed_by_mtime(old: Fingerprint | None, new: Fingerprint | None, expected: bool) -> None:
    assert changed(old, new, by_mtime=True) is expected


def test_content_default_is_unchanged() -> None:
    # The same pairs without by_mtime: a touch is no change, a removal is.
    assert changed(fp(1), fp(2)) is False
    assert changed(fp(1), None) is True


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


def test_fingerprints_compare_touch_files_by_mtime(tmp_path: Path) -> None:
    trigger = tmp_path / "reload.txt"
    module = tmp_path / "app.py"
    for f in (trigger, module):
        f.write_text("same\n")
        set_mtime(f, 1_000_000_000)
    prints = Fingerprints(by_mtime=lambda path: path == str(trigger))
    for f in (trigger, module):
        prints.remember(str(f))
    for f in (trigger, module):
        set_mtime(f, 2_000_000_000)  # touch
    assert prints.update(str(trigger)) is True
    assert prints.update(str(module)) is False  # content fingerprints: a touch is no change
    os.chmod(trigger, 0o600)
    assert prints.update(str(trigger)) is False  # metadata alone: the mtime is the same
    trigger.unlink()
    assert prints.update(str(trigger)) is False
    trigger.write_text("")
    assert prints.update(str(trigger)) is True  # created again


def test_fingerprints_ask_by_mtime_at_each_comparison(tmp_path: Path) -> None:
    f = tmp_path / "reload.txt"
    f.write_text("x")
    set_mtime(f, 1_000_000_000)
    touch_files: set[str] = set()
    prints = Fingerprints(by_mtime=touch_files.__contains__)
    prints.remember(str(f))
    touch_files.add(str(f))  # the watch set learned it later (a new release's config)
    set_mtime(f, 2_000_000_000)
    assert prints.update(str(f)) is True


# -- the watch set --------------------------------------------------------------------


def test_touch_entry_may_not_exist_yet(tmp_path: Path) -> None:
    entry = WatchEntry.touch("tmp/restart.txt", cwd=str(tmp_path))
    path = str(tmp_path / "tmp" / "restart.txt")
    assert (entry.path, entry.kind, entry.base) == (path, "touch", str(tmp_path / "tmp"))
    watchset = WatchSet(entries=[entry])
    # Watched from the nearest folder that exists, so its creation is seen.
    assert watchset.directories() == {str(tmp_path)}
    assert path in watchset.files()
    assert watchset.by_mtime(path)
    assert not watchset.by_mtime(str(tmp_path / "other.txt"))
    decision = watchset.decide(path)
    assert decision.watched
    assert "--touch-reload 'tmp/restart.txt'" in decision.reason


def test_touch_entry_is_a_path_not_a_glob(tmp_path: Path) -> None:
    entry = WatchEntry.touch("reload[1].txt", cwd=str(tmp_path))
    assert entry.path == str(tmp_path / "reload[1].txt")
    assert WatchSet(entries=[entry]).decide(entry.path).watched
    assert not WatchSet(entries=[entry]).decide(str(tmp_path / "reload1.txt")).watched


def test_touch_entry_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder"):
        WatchEntry.touch(".", cwd=str(tmp_path))


def test_touch_file_is_watched_whatever_the_ignore_rules(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("tmp/\n*.txt\n")
    (tmp_path / "tmp").mkdir()
    rules = IgnoreRules(
        user=[Glob("*.flag", str(tmp_path))],
        gitignore=GitIgnore.find(str(tmp_path)),
        bases=[str(tmp_path)],
    )
    entries = [
        WatchEntry.touch("tmp/restart.txt", cwd=str(tmp_path)),
        WatchEntry.touch("reload.flag", cwd=str(tmp_path)),
        WatchEntry.touch("app.log", cwd=str(tmp_path)),  # a built-in ignore
    ]
    watchset = WatchSet(entries=entries, rules=rules)
    for entry in entries:
        assert watchset.decide(entry.path).watched, entry
    # The git-ignored folder that holds a touch file is not ignored as a folder...
    assert not watchset.ignores_folder(str(tmp_path / "tmp"))
    # ...while another ignored folder still is, and an ignored file beside it too.
    (tmp_path / "build").mkdir()
    (tmp_path / ".gitignore").write_text("tmp/\n*.txt\nbuild/\n")
    fresh = IgnoreRules(gitignore=GitIgnore.find(str(tmp_path)), bases=[str(tmp_path)])
    assert WatchSet(entries=entries, rules=fresh).ignores_folder(str(tmp_path / "build"))
    assert not watchset.decide(str(tmp_path / "tmp" / "other.txt")).watched


# -- the option -----------------------------------------------------------------------


def test_touch_reload_from_every_source_adds_up(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.relaunch]\ntouch-reload = ["restart.txt"]\n')
    here = tmp_path / "sub"
    here.mkdir()
    settings = load(
        {"touch_reload": ["cli.txt"]},
        cwd=str(here),
        environ={"RELAUNCH_TOUCH_RELOAD": f"env1.txt{os.pathsep}env2.txt"},
    )
    assert settings.touch_reload == [
        ("restart.txt", str(tmp_path)),  # pyproject paths: relative to its folder
        ("env1.txt", str(here)),
        ("env2.txt", str(here)),
        ("cli.txt", str(here)),
    ]
    watchset = watchset_from_settings(settings, str(here), default_here=False)
    assert {e.path for e in watchset.entries if e.kind == "touch"} == {
        str(tmp_path / "restart.txt"),
        str(here / "env1.txt"),
        str(here / "env2.txt"),
        str(here / "cli.txt"),
    }


def test_touch_reload_is_a_watch_option() -> None:
    assert "touch_reload" in WATCH_OPTIONS


def test_touch_reload_is_no_watch_entry_for_the_default(tmp_path: Path) -> None:
    # A non-Python command watches the current folder when no --watch is given: a
    # touch file does not take that away.
    settings = load({"touch_reload": ["restart.txt"]}, cwd=str(tmp_path), environ={})
    watchset = watchset_from_settings(settings, str(tmp_path), default_here=True)
    kinds = sorted(e.kind for e in watchset.entries)
    assert kinds == ["dir", "touch"]


def test_touch_reload_folder_is_a_config_error(tmp_path: Path) -> None:
    settings = load({"touch_reload": ["."]}, cwd=str(tmp_path), environ={})
    with pytest.raises(ConfigError, match=r"--touch-reload '\.' is a folder"):
        watchset_from_settings(settings, str(tmp_path), default_here=False)


def test_touch_reload_pyproject_type_error(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.relaunch]\ntouch-reload = 3\n")
    with pytest.raises(ConfigError, match="touch-reload: expected a string or a list"):
        load({}, cwd=str(tmp_path), environ={})


# -- in-process mode ------------------------------------------------------------------


def test_in_process_monitor_reloads_for_a_touch_of_a_touch_file(tmp_path: Path) -> None:
    from relaunch.inprocess import Monitor
    from relaunch.watch.settle import Settler

    from .test_inprocess import Clock, FakeWatcher

    trigger = tmp_path / "restart.txt"
    trigger.write_text("")
    set_mtime(trigger, 1_000_000_000)
    reloads: list[list[str]] = []
    clock = Clock()
    monitor = Monitor(
        WatchSet(entries=[WatchEntry.touch("restart.txt", cwd=str(tmp_path))]),
        reloads.append,
        settler=Settler(quiet=0.01, max_wait=1.0),
        watcher=FakeWatcher(),  # type: ignore[arg-type]
        clock=clock,
        modules=lambda: [],
    )
    monitor.step()  # the baseline
    set_mtime(trigger, 2_000_000_000)
    monitor._on_paths([str(trigger)])
    monitor.step()
    clock.now += 0.02
    monitor.step()
    assert reloads == [[str(trigger)]]
