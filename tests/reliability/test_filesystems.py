"""File-system conditions: forced polling, unreadable folders, symlink loops, huge trees."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.harness import Relaunch, wait_until, write
from .support import (
    PY,
    Start,
    make_app,
    no_traceback_of_relaunch,
    reload_line,
    reloads,
    replace,
    wait_watching,
)

POLL = ["--poll", "--poll-interval", "0.05"]


def test_polling_sees_edits_creation_and_deletion(tmp_path: Path, relaunch: Start) -> None:
    make_app(
        tmp_path,
        app=(
            "import os, time\nimport msg, later\n"
            'print(f"start value={msg.VALUE} later={later.X}", flush=True)\ntime.sleep(3600)\n'
        ),
    )
    r = relaunch(["run", "-v", *POLL, "--", PY, "app.py"])
    r.expect("ModuleNotFoundError: No module named 'later'", stream="err")
    r.expect(r"error: program exited with code 1", stream="err")
    line = r.expect(r"watching [1-9]\d* file\(s\): .*", stream="err").group(0)
    assert "by polling every 0.05s" in line and "events" not in line, r.output()
    # Creation: the module the program could not import appears.
    (tmp_path / "later.py").write_text("X = 1\n")
    r.expect(r"start value=1 later=1$")
    r.expect(reload_line(1, r"later\.py"), stream="err")
    wait_watching(r, 3)
    # An edit.
    write(tmp_path / "msg.py", "VALUE = 2\n")
    r.expect(r"start value=2 later=1$")
    r.expect(reload_line(2), stream="err")
    # Deletion: the program fails, and says so.
    mark = r.err.mark()
    (tmp_path / "later.py").unlink()
    r.expect(reload_line(3, r"later\.py"), stream="err")
    r.expect("ModuleNotFoundError: No module named 'later'", stream="err", start=mark)
    r.expect(r"error: program exited with code 1", stream="err", start=mark)
    # And back.
    (tmp_path / "later.py").write_text("X = 2\n")
    r.expect(r"start value=2 later=2$")
    r.expect(reload_line(4, r"later\.py"), stream="err")
    assert reloads(r) == 4, r.output()


DATA_READER = """\
import os, time
print("data=" + ",".join(
    f"{n}:{open(os.path.join('data', n)).read()}" for n in sorted(os.listdir("data"))
), flush=True)
time.sleep(3600)
"""


def test_polling_follows_a_file_created_after_start(tmp_path: Path, relaunch: Start) -> None:
    """A file created in a polled --watch folder joins what the poller stats: not only
    its creation reloads, every later edit does too."""
    make_app(tmp_path, app=DATA_READER)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "old.txt").write_text("1")
    r = relaunch(["run", "-v", *POLL, "-w", "data", "--", PY, "app.py"])
    r.expect(r"^data=old.txt:1$")
    wait_watching(r, 1)
    replace(tmp_path / "data" / "new.txt", "1")  # complete when it appears
    r.expect(r"^data=new.txt:1,old.txt:1$")
    for value in (2, 3):
        replace(tmp_path / "data" / "new.txt", f"{value}")
        r.expect(rf"^data=new.txt:{value},old.txt:1$")
        r.expect(reload_line(value, r"data/new\.txt"), stream="err")
    assert reloads(r) == 3, r.output()


def test_a_newline_in_a_file_name_stays_on_one_log_line(tmp_path: Path, relaunch: Start) -> None:
    make_app(tmp_path)
    (tmp_path / "data").mkdir()
    odd = tmp_path / "data" / "a\n[relaunch] b.txt"
    odd.write_text("1")
    r = relaunch(["run", "-v", "-w", "data", "--", PY, "app.py"])
    r.expect(r"value=1$")
    wait_watching(r, 3)
    replace(odd, "2")
    r.expect(reload_line(1, re.escape(repr("data/a\n[relaunch] b.txt"))), stream="err")
    assert not any(line.startswith(" b.txt") for line in r.err.lines), r.output()


# -- unreadable folders -----------------------------------------------------------------------


def _unprivileged_prefix(tmp_path: Path) -> list[str]:
    """What to run relaunch under so that file permissions apply to it: nothing for a
    normal user; for root, setpriv without the capabilities that bypass them. Skips
    the test if permissions would still not apply."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and no setpriv to drop the override capabilities")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0)
    try:
        seen = subprocess.run(
            [*prefix, PY, "-c", "import os, sys; os.listdir(sys.argv[1])", str(probe)],
            capture_output=True,
            timeout=30,
        )
    finally:
        probe.chmod(0o755)
        probe.rmdir()
    if seen.returncode == 0:
        pytest.skip("chmod 000 has no effect here: nothing to test")
    return prefix


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[tuple[list[str], list[Relaunch]]]:
    started: list[Relaunch] = []
    yield _unprivileged_prefix(tmp_path), started
    for proc in started:
        proc.close()


PKG_APP = """\
import os, time
from pkg import mod
print(f"start value={mod.VALUE}", flush=True)
time.sleep(3600)
"""


def test_folder_of_watched_module_made_unreadable_mid_run(
    tmp_path: Path, unprivileged: tuple[list[str], list[Relaunch]]
) -> None:
    prefix, started = unprivileged
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("VALUE = 1\n")
    (tmp_path / "app.py").write_text(PKG_APP)
    r = Relaunch(["run", "-v", "--", PY, "app.py"], tmp_path, prefix=prefix)
    started.append(r)
    r.expect(r"start value=1$")
    wait_watching(r, 3)
    mark = r.err.mark()
    pkg.chmod(0)
    try:
        # relaunch can no longer read the files: whatever it makes of that (a reload that
        # fails is fair), it must keep running.
        r.expect(r"\] reload #1: ", stream="err", start=mark)
        r.expect(r"error: program exited", stream="err", start=mark)
        assert r.proc.poll() is None, r.output()
    finally:
        pkg.chmod(0o755)
    r.expect(r"start value=1$", start=1)
    replace(pkg / "mod.py", "VALUE = 2\n")
    r.expect(r"start value=2$")
    assert r.proc.poll() is None, r.output()
    no_traceback_of_relaunch(r)


def test_chmod_alone_reloads_nothing(
    tmp_path: Path, unprivileged: tuple[list[str], list[Relaunch]]
) -> None:
    """A watched module made unreadable, then readable again: its content never
    changed, so nothing reloads; the next real edit does."""
    prefix, started = unprivileged
    make_app(tmp_path)
    r = Relaunch(["run", "-v", "--", PY, "app.py"], tmp_path, prefix=prefix)
    started.append(r)
    r.expect(r"value=1$")
    wait_watching(r, 2)
    msg = tmp_path / "msg.py"
    for mode in (0, 0o600, 0o644):
        mark = r.err.mark()
        msg.chmod(mode)
        r.expect(r"no content changed in msg\.py$", stream="err", start=mark)
    assert reloads(r) == 0, r.output()
    replace(msg, "VALUE = 2\n")
    r.expect(r"value=2$")
    r.expect(reload_line(1), stream="err")
    no_traceback_of_relaunch(r)


def test_unreadable_folder_inside_watch_tree(
    tmp_path: Path, unprivileged: tuple[list[str], list[Relaunch]]
) -> None:
    prefix, started = unprivileged
    make_app(tmp_path)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "inner.txt").write_text("1")
    (data / "top.txt").write_text("1")
    r = Relaunch(["run", "-v", "-w", "data", "--", PY, "app.py"], tmp_path, prefix=prefix)
    started.append(r)
    r.expect(r"value=1$")
    wait_watching(r, 4)
    (data / "sub").chmod(0)
    try:
        # A new folder appears (relaunch re-walks the tree and meets the unreadable one),
        # then a real change next to it.
        (data / "new").mkdir()
        replace(data / "top.txt", "2")
        r.expect(r"\] reload #\d+: .*data/top\.txt", stream="err")
        replace(tmp_path / "msg.py", "VALUE = 2\n")
        r.expect(r"value=2$")
        assert r.proc.poll() is None, r.output()
    finally:
        (data / "sub").chmod(0o755)
    no_traceback_of_relaunch(r)


# -- symlink loops -------------------------------------------------------------------------


def test_symlink_loops_in_watch_folder(tmp_path: Path, relaunch: Start) -> None:
    make_app(tmp_path)
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "data.txt").write_text("1")
    (tree / "a" / "b" / "deep.txt").write_text("1")
    os.symlink(".", tree / "here")  # tree/here -> tree
    os.symlink("../..", tree / "a" / "b" / "up")  # back to tree
    os.symlink(str(tmp_path), tree / "a" / "root")  # the project that holds the tree
    os.symlink("self", tree / "self")  # ELOOP
    os.symlink("ping", tree / "pong")
    os.symlink("pong", tree / "ping")
    r = relaunch(["run", "-v", "-w", "tree", "--", PY, "app.py"])
    r.expect(r"value=1$")  # start-up finished: the loops were not followed forever
    wait_watching(r, 4)
    replace(tree / "a" / "b" / "deep.txt", "2")
    r.expect(reload_line(1, r"tree/a/b/deep\.txt"), stream="err")
    # A new loop made while relaunch runs, then a real change.
    os.symlink("../../a", tree / "a" / "b" / "again")
    (tree / "c").mkdir()
    os.symlink("../c", tree / "c" / "c")
    replace(tree / "data.txt", "2")
    r.expect(reload_line(r"\d+", r"(.*, )?tree/data\.txt(, .*)?"), stream="err")
    replace(tmp_path / "msg.py", "VALUE = 2\n")
    r.expect(r"value=2$")
    assert r.proc.poll() is None, r.output()
    no_traceback_of_relaunch(r)


# -- a huge tree ------------------------------------------------------------------------------


def _make_tree(root: Path, folders: int, files: int) -> None:
    for d in range(folders):
        folder = root / f"d{d:04d}"
        folder.mkdir(parents=True)
        for f in range(files):
            fd = os.open(folder / f"f{f:03d}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"x")
            os.close(fd)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_100k_file_tree_under_watch(tmp_path: Path, relaunch: Start) -> None:
    make_app(tmp_path)
    made = time.monotonic()
    _make_tree(tmp_path / "big", 1000, 100)
    made = time.monotonic() - made
    started = time.monotonic()
    r = relaunch(["run", "-v", "-w", "big", "--", PY, "app.py"])
    r.expect(r"value=1$", timeout=600)
    first_line = time.monotonic() - started
    wait_watching(r, 100_002, timeout=600)
    watch_line = [line for line in r.err.lines if re.search(r"watching 1\d{5} file", line)][-1]
    by_events = re.search(r"(\d+) folder\(s\) by inotify events", watch_line)
    assert by_events is not None, r.output()
    folders = int(by_events.group(1))
    watched = time.monotonic() - started
    print(
        f"\n100k tree: generated in {made:.1f} s; first program line {first_line:.2f} s "
        f"after start; watch set complete after {watched:.2f} s: {watch_line.strip()}"
    )
    # One OS watch per folder that holds watched files (1000 + big/ + the project).
    assert folders <= 1003, watch_line
    replace(tmp_path / "big" / "d0500" / "f050.txt", "y")
    r.expect(reload_line(1, r"big/d0500/f050\.txt"), stream="err", timeout=60)
    changed = time.monotonic()
    replace(tmp_path / "msg.py", "VALUE = 2\n")
    r.expect(r"value=2$", timeout=60)
    r.expect(reload_line(2), stream="err")
    took = time.monotonic() - changed
    print(f"100k tree: an edit in the tree reloaded; the next reload took {took:.2f} s")
    assert reloads(r) == 2, r.output()


def test_no_watch_from_the_file_system_root_is_refused(relaunch: Start) -> None:
    """A command that is not Python, no -w, run from /: the default tree would be the
    whole file system (minutes of reading, Ctrl-C ignored meanwhile): a one-line error."""
    r = relaunch(["run", "--", "sleep", "3600"], cwd=Path("/"))
    assert r.wait(timeout=30) == 2, r.output()
    assert r.err.lines == [
        "relaunch: error: no --watch given, and the current folder is /, the root of the "
        "file system: watching it would read every file on the machine; give -w with what "
        "to watch, or run relaunch from the project's folder"
    ], r.output()


def test_default_tree_is_capped(tmp_path: Path, relaunch: Start) -> None:
    """A command that is not Python, no -w, from a folder holding more files than the
    default tree takes: relaunch says so, watches the first ones, and keeps working."""
    _make_tree(tmp_path / "big", 210, 100)
    (tmp_path / "a.txt").write_text("1")
    r = relaunch(["run", "-v", "--", "sh", "-c", "cat a.txt; echo; sleep 3600"])
    r.expect(r"^1$")
    r.expect(
        r"warning: no --watch given: the current folder holds more than 20000 files and "
        r"folders; watching only the first 20000 \(give -w with what to watch\)$",
        stream="err",
    )
    wait_watching(r, 19_000, timeout=60)
    counts = [int(n) for n in re.findall(r"watching (\d+) file\(s\)", r.err.text())]
    assert max(counts) <= 20_000, r.output()
    replace(tmp_path / "a.txt", "2")
    r.expect(r"^2$")
    no_traceback_of_relaunch(r)


TREE_READER = """\
import time
print("config=" + open("big/d0010/f005.txt").read(), flush=True)
time.sleep(3600)
"""


def test_edit_while_a_big_tree_is_being_read_is_not_lost(tmp_path: Path, relaunch: Start) -> None:
    """The program starts before relaunch has read a big --watch tree: an edit made at
    once, whatever relaunch is doing then, still reloads."""
    make_app(tmp_path, app=TREE_READER)
    _make_tree(tmp_path / "big", 100, 100)
    r = relaunch(["run", "-w", "big", "--", PY, "app.py"])
    r.expect(r"^config=x$")
    replace(tmp_path / "big" / "d0010" / "f005.txt", "y")
    r.expect(r"^config=y$")
    time.sleep(0.5)
    assert r.out.count("config=") == 2, r.output()


# -- the OS watch limit, for real ---------------------------------------------------------

# A user namespace has its own inotify limit (/proc/sys/user/max_inotify_watches, Linux
# 4.9+), which its root may lower: the limit is really hit, without touching the
# machine's own setting that other tests share.
LOW_LIMIT = 12


def _limited(setting: str, value: int) -> list[str]:
    """The prefix that runs a command in a user namespace with ``setting`` (a file of
    /proc/sys/user) set to ``value``."""
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        f'echo {value} > /proc/sys/user/{setting} && exec "$@"',
        "sh",
    ]


IN_LOW_LIMIT = _limited("max_inotify_watches", LOW_LIMIT)


def _limit_available(setting: str = "max_inotify_watches", value: int = LOW_LIMIT) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [*_limited(setting, value), "cat", f"/proc/sys/user/{setting}"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == str(value)


def _low_limit_available() -> bool:
    return _limit_available()


def test_os_watch_limit_really_exhausted_falls_back_to_polling(tmp_path: Path) -> None:
    if not _low_limit_available():
        pytest.skip("cannot lower the inotify limit here (needs unprivileged user namespaces)")
    make_app(tmp_path)
    tree = tmp_path / "tree"
    for n in range(3 * LOW_LIMIT):
        (tree / f"d{n:02d}").mkdir(parents=True)
        (tree / f"d{n:02d}" / "data.txt").write_text("1")
    r = Relaunch(
        ["run", "-v", "-w", "tree", "--poll-interval", "0.1", "--", PY, "app.py"],
        tmp_path,
        prefix=IN_LOW_LIMIT,
    )
    try:
        r.expect(r"value=1$")
        # The limit hit is named, with its value: the namespace's, not the machine's.
        r.expect(
            r"limit on watched folders was reached: polling \d+ folder\(s\) instead; "
            rf"user\.max_inotify_watches is {LOW_LIMIT} \(this user namespace's limit\); "
            r"raise it with 'sudo sysctl user\.max_inotify_watches=524288'$",
            stream="err",
        )
        # Changes are seen in every folder: those watched by events and those polled.
        for number, folder in enumerate(("d00", f"d{3 * LOW_LIMIT - 1:02d}"), start=1):
            replace(tree / folder / "data.txt", f"{number + 1}")
            r.expect(reload_line(number, rf"tree/{folder}/data\.txt"), stream="err")
        replace(tmp_path / "msg.py", "VALUE = 2\n")
        r.expect(r"value=2$")
        assert r.proc.poll() is None, r.output()
        no_traceback_of_relaunch(r)
    finally:
        r.close()


def _files_reloaded_for(r: Relaunch, start: int) -> int:
    """How many files the reload lines from stderr line ``start`` on name in all (each
    file is reported by one batch only: a second look finds it unchanged)."""
    total = 0
    for line in r.err.lines[start:]:
        match = re.search(r"\] reload #\d+: (.*) changed; ", line)
        if match:
            names = match.group(1)
            more = re.search(r" \(\+(\d+) more\)$", names)
            if more:
                names = names[: more.start()]
            total += len(names.split(", ")) + (int(more.group(1)) if more else 0)
    return total


def _wait_files_reloaded(r: Relaunch, start: int, count: int) -> None:
    try:
        wait_until(lambda: _files_reloaded_for(r, start) >= count, what=f"{count} files reloaded")
    except AssertionError as exc:
        seen = _files_reloaded_for(r, start)
        raise AssertionError(f"{exc}: {seen} seen\n{r.output()}") from None


def test_files_created_in_folders_past_the_watch_limit_are_followed(tmp_path: Path) -> None:
    """Files created after start, in folders watched by events and in folders polled
    because the limit was hit: every later edit of each is seen."""
    if not _low_limit_available():
        pytest.skip("cannot lower the inotify limit here (needs unprivileged user namespaces)")
    make_app(tmp_path)
    tree = tmp_path / "tree"
    folders = [tree / f"d{n:02d}" for n in range(3 * LOW_LIMIT)]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "data.txt").write_text("1")
    r = Relaunch(
        ["run", "-v", "-w", "tree", "--poll-interval", "0.05", "--", PY, "app.py"],
        tmp_path,
        prefix=IN_LOW_LIMIT,
    )
    try:
        r.expect(r"value=1$")
        r.expect(r"limit on .* was reached: polling \d+ folder", stream="err")
        wait_watching(r, len(folders) + 2)
        mark = r.err.mark()
        for folder in folders:
            replace(folder / "new.txt", "1")
        _wait_files_reloaded(r, mark, len(folders))  # the creations
        mark = r.err.mark()
        for folder in folders:
            replace(folder / "new.txt", "2")
        _wait_files_reloaded(r, mark, len(folders))  # the edits
        assert r.proc.poll() is None, r.output()
        no_traceback_of_relaunch(r)
    finally:
        r.close()


def test_inotify_instance_limit_hit_is_named_and_polling_works(tmp_path: Path) -> None:
    if not _limit_available("max_inotify_instances", 0):
        pytest.skip("cannot lower the inotify limit here (needs unprivileged user namespaces)")
    make_app(tmp_path)
    r = Relaunch(
        ["run", "--poll-interval", "0.05", "--", PY, "app.py"],
        tmp_path,
        prefix=_limited("max_inotify_instances", 0),
    )
    try:
        r.expect(r"value=1$")
        r.expect(
            r"cannot start native file events \(.*\): polling instead; "
            r"user\.max_inotify_instances is 0 \(this user namespace's limit\); "
            r"raise it with 'sudo sysctl user\.max_inotify_instances=1024'$",
            stream="err",
        )
        replace(tmp_path / "msg.py", "VALUE = 2\n")
        r.expect(r"value=2$")
        r.expect(reload_line(1), stream="err")
        no_traceback_of_relaunch(r)
    finally:
        r.close()
