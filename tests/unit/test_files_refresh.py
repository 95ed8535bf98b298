"""The refresh's second look at files the watcher did not cover yet (run/files.py).

Real files, a real watcher: the program reported a module, and the refresh that puts
it under the watcher looks at it again in case an edit landed in between. That look
may come in the middle of a save; it must not become the file's baseline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from relaunch.run.files import WatchedFiles
from relaunch.run.options import Options
from relaunch.watch.watchset import WatchSet


def _files() -> WatchedFiles:
    return WatchedFiles(
        WatchSet(), Options(), on_paths=lambda _paths: None, extra_dirs=set, failed=lambda: False
    )


def test_a_look_in_the_middle_of_an_unchanged_rewrite_is_no_change(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("X = 1\n")
    files = _files()
    try:
        files.add_files([(str(module), module.stat().st_mtime_ns)], "imported by the program")
        # A formatter rewrites it in place with the same text; the refresh looks at it
        # while it is empty.
        fd = os.open(module, os.O_WRONLY | os.O_TRUNC)
        try:
            files.refresh()
            os.write(fd, b"X = 1\n")
        finally:
            os.close(fd)
        taken = files.take(time.monotonic() + 5)
        assert taken is not None, "the look found the file changed: it must be compared"
        changed, _batch = taken
        assert changed == []
    finally:
        files.close()


def test_an_edit_before_the_watcher_covered_the_file_is_a_change(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("X = 1\n")
    files = _files()
    try:
        files.add_files([(str(module), module.stat().st_mtime_ns)], "imported by the program")
        module.write_text("X = 2\n")  # no watcher on its folder yet: no event
        files.refresh()
        taken = files.take(time.monotonic() + 5)
        assert taken is not None
        assert taken[0] == [str(module)]
    finally:
        files.close()
