"""RelaunchReloader keeps Django's reloader contract for what is registered through
its API (``watch_dir`` globs, ``extra_files``): an mtime change alone sends
``file_changed``, as under StatReloader, and a tick handles a change made before it.
Modules keep relaunch's content comparison. Real files, the real watcher, Django's
real signal; a receiver that handles every change keeps the reloader from exiting."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

autoreload = pytest.importorskip("django.utils.autoreload")

from relaunch.integrations.django.reloader import RelaunchReloader  # noqa: E402


def touch(path: Path) -> None:
    later = max(time.time_ns(), path.stat().st_mtime_ns + 10_000_000)
    os.utime(path, ns=(later, later))


@pytest.fixture
def notified() -> Iterator[list[Path]]:
    seen: list[Path] = []

    def receiver(sender: object, file_path: Path, **kwargs: object) -> bool:
        seen.append(file_path)
        return True  # handled: no restart (unsupervised, the reloader would exit 3)

    autoreload.file_changed.connect(receiver, weak=False)
    yield seen
    autoreload.file_changed.disconnect(receiver)


def ticks_until(ticker: Iterator[None], done: Callable[[], bool], limit: int = 20) -> None:
    for _ in range(limit):  # each tick waits about a second at most
        next(ticker)
        if done():
            return
    raise AssertionError("no file_changed within the ticks given")


@pytest.mark.timeout(60)
def test_a_touch_of_registered_files_is_notified_within_the_next_tick(
    tmp_path: Path, notified: list[Path]
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "site.ini").write_text("[site]\n")
    (conf / "notes.txt").write_text("not matched by the glob\n")
    (tmp_path / "VERSION").write_text("1\n")
    reloader = RelaunchReloader()
    reloader.watch_dir(conf, "*.ini")
    reloader.extra_files.add(tmp_path / "VERSION")
    ticker = reloader.tick()
    try:
        next(ticker)  # the baseline
        touch(conf / "notes.txt")
        touch(conf / "site.ini")
        touch(tmp_path / "VERSION")
        next(ticker)  # one tick: the change made before it is settled and notified
        assert sorted(notified) == [tmp_path / "VERSION", conf / "site.ini"]
    finally:
        ticker.close()


@pytest.mark.timeout(60)
def test_a_touch_of_a_module_is_no_change_an_edit_is(
    tmp_path: Path, notified: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "touched_module_for_reloader_test.py"
    module.write_text("X = 1\n")
    spec = importlib.util.spec_from_file_location(module.stem, module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    monkeypatch.setitem(sys.modules, module.stem, loaded)  # an imported module, for a while
    (tmp_path / "VERSION").write_text("1\n")
    reloader = RelaunchReloader()
    assert not reloader.supervised  # watches the imported modules itself
    reloader.extra_files.add(tmp_path / "VERSION")
    ticker = reloader.tick()
    try:
        next(ticker)
        touch(module)
        touch(tmp_path / "VERSION")
        ticks_until(ticker, lambda: tmp_path / "VERSION" in notified)
        assert module not in notified
        module.write_text("X = 2\n")
        ticks_until(ticker, lambda: module in notified)
    finally:
        ticker.close()


@pytest.mark.timeout(60)
def test_under_relaunch_the_first_look_notifies_what_was_edited_since_the_start(
    tmp_path: Path, notified: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under relaunch the first look at the registered folders waits for runserver to
    serve and answer, so a request may have read a template that was edited before that
    look: whatever was written since the process started is notified then."""
    from relaunch.integrations.django import serving

    conf = tmp_path / "conf"
    conf.mkdir()
    old, edited = conf / "old.ini", conf / "edited.ini"
    old.write_text("[a]\n")
    edited.write_text("[b]\n")
    long_ago = time.time_ns() - 60_000_000_000
    os.utime(old, ns=(long_ago, long_ago))
    reloader = RelaunchReloader()
    monkeypatch.setattr(reloader, "supervised", True)
    monkeypatch.setattr(serving, "serving", threading.Event())
    monkeypatch.setattr(serving, "answered", threading.Event())
    monkeypatch.setattr(serving, "expected", True)
    serving.serving.set()
    serving.answered.set()
    reloader.watch_dir(conf, "*.ini")
    touch(edited)  # after the start: a request may have read the old content
    ticker = reloader.tick()
    try:
        next(ticker)  # the first look
        assert notified == [edited]
    finally:
        ticker.close()


def test_a_file_counts_as_edited_since_a_time_from_its_mtime_on() -> None:
    from relaunch.integrations.django.reloader import edited_since

    assert edited_since(1_000, 1_000) and edited_since(1_001, 1_000)
    assert not edited_since(999, 1_000) and not edited_since(None, 1_000)
