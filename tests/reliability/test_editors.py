"""How editors and tools really write files, replayed against `relaunch run`.

Each editor's save is reproduced system call by system call (probe files, backups,
swap and lock files, temp-then-rename), on a module the program imports. Every save
that changes the content must give exactly one reload; a save that changes nothing
must give none. "None" is proved the house way: a later real change must be the
expected next reload number, with nothing else named in its line.

Each editor runs twice: watching only the program's imports, and with ``-w .`` on
top, where every file the editor writes next to the module is in a watched folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from relaunch import oslayer

from ..e2e.harness import Relaunch
from .support import PY, Start, make_app, reload_line, reloads, replace, wait_watching

Save = Callable[[Path, str], None]

MODES = {"imports": [], "watch-folder": ["-w", "."]}


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> list[str]:
    return MODES[request.param]


def _create(path: Path, text: str, *, exclusive: bool = True) -> None:
    """Write a new file as editors do: open, write, fsync, close."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_in_place(path: Path, text: str) -> None:
    """Truncate and rewrite the same inode, in two writes (as a buffered writer may)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        half = len(data) // 2
        os.write(fd, data[:half])
        os.write(fd, data[half:])
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the editors ----------------------------------------------------------------------


def vim_save(path: Path, text: str, *, backupcopy: str = "auto") -> None:
    """Vim's :w. First a probe file "4913" to learn whether the folder is writable (and
    whether a new file would keep the owner); then with the default backupcopy=auto
    (a file with one link): rename the original to ``file~``, write a new file, delete
    the backup. With backupcopy=yes: copy to ``file~``, rewrite the original in place."""
    probe = path.parent / "4913"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.close(fd)
    os.unlink(probe)
    backup = path.with_name(path.name + "~")
    if backupcopy == "yes":
        shutil.copy2(path, backup)
        _write_in_place(path, text)
    else:
        mode = path.stat().st_mode
        os.rename(path, backup)
        _create(path, text)
        os.chmod(path, mode)
    os.unlink(backup)  # 'nobackup' + 'writebackup': the backup only lives during the write


@contextmanager
def vim_session(path: Path) -> Iterator[None]:
    """Vim editing ``path``: its swap file ``.file.swp`` exists, and is written as the
    user types (updatetime), until vim quits."""
    swap = path.with_name(f".{path.name}.swp")
    _create(swap, "b0VIM 9.0\0" + "\0" * 4086)
    try:
        for block in range(3):  # typing: the swap file grows
            with open(swap, "r+b") as f:
                f.seek(4096 * (block + 1))
                f.write(b"\0" * 4096)
        yield
    finally:
        swap.unlink()


def emacs_save(path: Path, text: str, *, first_save: bool = True) -> None:
    """Emacs: a modified buffer holds a lock, the dangling symlink ``.#file``, and an
    auto-save file ``#file#``. The first save of a session renames the original to
    ``file~`` (kept) and writes a new file; later saves write in place."""
    lock = path.with_name(".#" + path.name)
    os.symlink(f"dev@host.{os.getpid()}:1700000000", lock)
    autosave = path.with_name(f"#{path.name}#")
    _create(autosave, text, exclusive=False)
    if first_save:
        os.rename(path, path.with_name(path.name + "~"))
        _create(path, text)
    else:
        _write_in_place(path, text)
    autosave.unlink()
    lock.unlink()


def jetbrains_save(path: Path, text: str) -> None:
    """JetBrains "safe write": ``file___jb_tmp___`` written, the original renamed to
    ``file___jb_old___``, the temp renamed over the file, the old one deleted."""
    tmp = path.with_name(path.name + "___jb_tmp___")
    old = path.with_name(path.name + "___jb_old___")
    _create(tmp, text)
    os.rename(path, old)
    os.rename(tmp, path)
    old.unlink()


def vscode_save(path: Path, text: str) -> None:
    """VS Code's default save: Node's writeFile, truncating and writing in place."""
    _write_in_place(path, text)


def vscode_atomic_save(path: Path, text: str) -> None:
    """VS Code's atomic save (``{atomic: {postfix: '.vsctmp'}}``): ``file.vsctmp``
    written, then renamed over the file."""
    tmp = path.with_name(path.name + ".vsctmp")
    _create(tmp, text, exclusive=False)
    os.replace(tmp, path)


EDITORS: dict[str, Save] = {
    "vim": vim_save,
    "vim-backupcopy-yes": lambda p, t: vim_save(p, t, backupcopy="yes"),
    "emacs-first-save": emacs_save,
    "emacs-later-save": lambda p, t: emacs_save(p, t, first_save=False),
    "jetbrains-safe-write": jetbrains_save,
    "vscode": vscode_save,
    "vscode-atomic": vscode_atomic_save,
}


def _start(relaunch: Start, mode: list[str], files: int = 2) -> Relaunch:
    r = relaunch(["run", "-v", *mode, "--", PY, "app.py"])
    r.expect(r"value=1$")
    wait_watching(r, files)
    return r


def _noop_then_sentinel(r: Relaunch, msg: Path, save: Save, number: int) -> None:
    """A save that leaves the content as it is gives no reload: the next real change is
    reload ``number``, naming only msg.py."""
    mark = r.err.mark()
    save(msg, msg.read_text())
    # Either the no-op was looked at and dropped, or (wrongly) reloaded: wait for either.
    seen = r.expect(r"no content changed in |\] reload #", stream="err", start=mark)
    assert "no content changed" in seen.group(0), r.output()
    replace(msg, "VALUE = 99\n")
    r.expect(reload_line(number), stream="err", start=mark)
    r.expect(r"value=99$")
    assert reloads(r) == number, r.output()


@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_editor_save_gives_one_reload_and_noop_save_none(
    tmp_path: Path, relaunch: Start, mode: list[str], editor: str
) -> None:
    msg = make_app(tmp_path) / "msg.py"
    save = EDITORS[editor]
    r = _start(relaunch, mode)
    save(msg, "VALUE = 2\n")
    r.expect(reload_line(1), stream="err")
    r.expect(r"value=2$")
    _noop_then_sentinel(r, msg, save, 2)


def test_vim_swap_file_activity_and_save_in_one_session(
    tmp_path: Path, relaunch: Start, mode: list[str]
) -> None:
    msg = make_app(tmp_path) / "msg.py"
    r = _start(relaunch, mode)
    with vim_session(msg):
        # The swap file was created and written while "typing": that reloaded nothing,
        # so the save is reload #1.
        vim_save(msg, "VALUE = 2\n")
        r.expect(reload_line(1), stream="err")
        r.expect(r"value=2$")
        vim_save(msg, "VALUE = 3\n")
        r.expect(reload_line(2), stream="err")
        r.expect(r"value=3$")
    # Quitting vim deleted the swap file: nothing to reload for.
    replace(msg, "VALUE = 4\n")
    r.expect(reload_line(3), stream="err")
    r.expect(r"value=4$")
    assert reloads(r) == 3, r.output()


# -- tools --------------------------------------------------------------------------------


def test_formatter_rewriting_identical_content_gives_no_reload(
    tmp_path: Path, relaunch: Start, mode: list[str]
) -> None:
    mods = [f"m{i:02d}" for i in range(20)]
    for name in mods:
        (tmp_path / f"{name}.py").write_text(f"X = {name!r}\n")
    make_app(tmp_path)
    (tmp_path / "app.py").write_text(
        "import " + ", ".join(mods) + "\n" + "import os, sys, time\nimport msg\n"
        'print(f"start pid={os.getpid()} value={msg.VALUE}", flush=True)\ntime.sleep(3600)\n'
    )
    r = _start(relaunch, mode, files=len(mods) + 2)
    mark = r.err.mark()
    # black writes each file in place; others write a temp file and rename it over.
    for name in mods[:10]:
        path = tmp_path / f"{name}.py"
        _write_in_place(path, path.read_text())
    for name in mods[10:]:
        path = tmp_path / f"{name}.py"
        fd, tmp = tempfile.mkstemp(dir=tmp_path)  # "tmpXXXXXXXX", as Python tools do
        os.write(fd, path.read_bytes())
        os.close(fd)
        os.replace(tmp, path)
    r.expect(r"no content changed in |\] reload #", stream="err", start=mark)
    replace(tmp_path / "msg.py", "VALUE = 2\n")
    r.expect(reload_line(1), stream="err", start=mark)
    r.expect(r"value=2$")
    assert reloads(r) == 1, r.output()


@pytest.mark.skipif(not oslayer.HAS_INOTIFY, reason="needs inotify: the only source of closes")
def test_in_place_write_paused_before_its_content_gives_one_reload(
    tmp_path: Path, relaunch: Start
) -> None:
    """inotify only: the watcher waits for the file's close (IN_CLOSE_WRITE). Polling
    and watchfiles cannot see a close; there only the settle period covers a pause."""
    msg = make_app(tmp_path) / "msg.py"
    r = _start(relaunch, [])
    fd = os.open(msg, os.O_WRONLY | os.O_TRUNC)
    try:
        # An in-place save that takes a moment between truncating and writing: a large
        # buffer, a slow disk, or only a loaded machine descheduling the editor (seen in
        # these tests under load). The pause is the writer's, not a wait for relaunch.
        time.sleep(0.2)
        os.write(fd, b"VALUE = 2\n")
    finally:
        os.close(fd)  # only now is the save complete (IN_CLOSE_WRITE)
    r.expect(r"value=2$")
    replace(msg, "VALUE = 3\n")
    r.expect(reload_line(2), stream="err")
    r.expect(r"value=3$")
    # One reload for the save: none started on the empty, truncated module.
    assert r.err.count(r"reload #1: msg\.py changed; new process up") == 1, r.output()
    assert "has no attribute 'VALUE'" not in r.err.text(), r.output()
    assert reloads(r) == 2, r.output()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


PAGES_APP = """\
import os, time, pages
total = sum(getattr(pages, n).V for n in pages.NAMES)
print(f"start total={total}", flush=True)
time.sleep(3600)
"""


def _pages_repo(root: Path, count: int) -> list[str]:
    """A package of ``count`` modules the program imports, committed to git (V = 1)."""
    pages = root / "pages"
    pages.mkdir()
    names = [f"p{i:03d}" for i in range(count)]
    (pages / "__init__.py").write_text(
        f"NAMES = {names!r}\n" + "".join(f"from . import {n}\n" for n in names)
    )
    for name in names:
        (pages / f"{name}.py").write_text("V = 1\n")
    (root / "app.py").write_text(PAGES_APP)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "v1")
    return names


def _set_all(root: Path, names: list[str], value: int) -> None:
    for name in names:
        (root / "pages" / f"{name}.py").write_text(f"V = {value}\n")


def test_git_checkout_back_and_forth_gives_one_reload_each(tmp_path: Path, relaunch: Start) -> None:
    names = _pages_repo(tmp_path, 300)
    _git(tmp_path, "checkout", "-q", "-b", "two")
    _set_all(tmp_path, names, 2)
    _git(tmp_path, "commit", "-q", "-am", "v2")
    _git(tmp_path, "checkout", "-q", "main")
    r = relaunch(["run", "-v", "--", PY, "app.py"])
    r.expect("start total=300$")
    wait_watching(r, 302)
    _git(tmp_path, "checkout", "-q", "two")
    r.expect("start total=600$")
    _git(tmp_path, "checkout", "-q", "main")
    r.expect("start total=300$", start=2)
    replace(tmp_path / "pages" / "p000.py", "V = 301\n")
    r.expect("start total=600$", start=3)
    r.expect(reload_line(1, r"pages/p\d+\.py, .* \(\+297 more\)"), stream="err")
    r.expect(reload_line(2, r"pages/p\d+\.py, .* \(\+297 more\)"), stream="err")
    r.expect(reload_line(3, r"pages/p000\.py"), stream="err")
    assert reloads(r) == 3, r.output()


def test_git_rebase_of_hundreds_of_files_gives_one_reload(tmp_path: Path, relaunch: Start) -> None:
    names = _pages_repo(tmp_path, 300)
    # A feature branch of three commits, each rewriting 200 modules, rebased onto a main
    # that changed one more: the rebase checks out main, then replays the three commits.
    _git(tmp_path, "checkout", "-q", "-b", "feature")
    for value in (2, 3, 4):
        _set_all(tmp_path, names[:200], value)
        _git(tmp_path, "commit", "-q", "-am", f"v{value}")
    _git(tmp_path, "checkout", "-q", "main")
    (tmp_path / "pages" / "p299.py").write_text("V = 100\n")
    _git(tmp_path, "commit", "-q", "-am", "main moved on")
    _git(tmp_path, "checkout", "-q", "feature")
    r = relaunch(["run", "-v", "--", PY, "app.py"])
    r.expect("start total=900$")
    wait_watching(r, 302)
    # `git rebase -x CMD` runs a check after each replayed commit (`make test`, a linter):
    # index.lock is released meanwhile, but the rebase is not over (.git/rebase-merge/).
    # The pause is the check's run time, not a wait for relaunch.
    _git(tmp_path, "rebase", "-q", "-x", "sleep 0.3", "main")
    r.expect("start total=999$")
    # Compared with before the rebase, only p299 differs (the feature's modules end as
    # they began): relaunch compares content, so that is the one file it names.
    r.expect(reload_line(1, r"pages/p299\.py"), stream="err")
    replace(tmp_path / "pages" / "p000.py", "V = 5\n")
    r.expect("start total=1000$")
    r.expect(reload_line(2, r"pages/p000\.py"), stream="err")
    # The program never ran on a half-rebased tree.
    assert r.out.count("^start") == 3, r.output()
    assert reloads(r) == 2, r.output()


def test_slow_checkout_holding_index_lock_gives_one_reload(tmp_path: Path, relaunch: Start) -> None:
    names = _pages_repo(tmp_path, 300)
    r = relaunch(["run", "-v", "--", PY, "app.py"])
    r.expect("start total=300$")
    wait_watching(r, 302)
    lock = tmp_path / ".git" / "index.lock"
    lock.write_text("")
    try:
        # A slow checkout: files rewritten in groups, with pauses longer than relaunch's
        # quiet period (10 ms, 100 ms for bursts) between them. The pauses are the tool's
        # slowness, not waits for relaunch.
        for start in range(0, len(names), 60):
            _set_all(tmp_path, names[start : start + 60], 2)
            time.sleep(0.3)
        assert reloads(r) == 0, r.output()
    finally:
        lock.unlink()
    r.expect("start total=600$")
    r.expect(reload_line(1, r"pages/p\d+\.py, .* \(\+297 more\)"), stream="err")
    replace(tmp_path / "pages" / "p000.py", "V = 3\n")
    r.expect("start total=601$")
    r.expect(reload_line(2, r"pages/p000\.py"), stream="err")
    assert r.out.count("^start") == 3, r.output()


# -- files going away and coming back -------------------------------------------------------


def test_deleted_module_fails_then_recreated_recovers(
    tmp_path: Path, relaunch: Start, mode: list[str]
) -> None:
    msg = make_app(tmp_path) / "msg.py"
    r = _start(relaunch, mode)
    msg.unlink()
    r.expect(reload_line(1), stream="err")
    r.expect("ModuleNotFoundError: No module named 'msg'", stream="err")
    r.expect(r"error: program exited with code 1", stream="err")
    msg.write_text("VALUE = 2\n")
    r.expect(reload_line(2), stream="err")
    r.expect(r"value=2$")
    replace(msg, "VALUE = 3\n")
    r.expect(reload_line(3), stream="err")
    r.expect(r"value=3$")
    assert reloads(r) == 3, r.output()


# The watch request goes to relaunch on the pipe the import reports went on before it:
# once relaunch watches that one more file, it has the package's modules as imported
# (with -w ., the folder's files alone already make three).
PKG_APP = """\
import os, time
from pkg import mod
import relaunch
relaunch.watch(os.environ["PKG_APP_MARK"])
print(f"start value={mod.VALUE}", flush=True)
time.sleep(3600)
"""
PKG_FILES = 4  # app.py, pkg/__init__.py, pkg/mod.py and the mark


def _pkg_app(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("VALUE = 1\n")
    (root / "app.py").write_text(PKG_APP)
    mark = root.parent / f"{root.name}-mark.txt"  # outside the project: never touched
    mark.write_text("")
    monkeypatch.setenv("PKG_APP_MARK", str(mark))
    return pkg


def test_package_folder_renamed_away_and_back(
    tmp_path: Path, relaunch: Start, mode: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _pkg_app(tmp_path, monkeypatch)
    r = _start(relaunch, mode, files=PKG_FILES)
    away = tmp_path / "pkg_away"
    pkg.rename(away)
    # With -w ., the files now under pkg_away/ are new watched files and are named too.
    r.expect(reload_line(1, r"pkg/__init__\.py, pkg/mod\.py(, pkg_away/.*)?"), stream="err")
    r.expect("ModuleNotFoundError: No module named 'pkg'", stream="err")
    r.expect(r"error: program exited with code 1", stream="err")
    away.rename(pkg)
    r.expect(reload_line(2, r"pkg/__init__\.py, pkg/mod\.py"), stream="err")
    r.expect(r"value=1$")
    # The folder is watched again where it is now, not where it went.
    replace(pkg / "mod.py", "VALUE = 2\n")
    r.expect(reload_line(3, r"pkg/mod\.py"), stream="err")
    r.expect(r"value=2$")
    assert reloads(r) == 3, r.output()


def test_package_folder_renamed_away_and_straight_back_changes_nothing(
    tmp_path: Path, relaunch: Start, mode: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _pkg_app(tmp_path, monkeypatch)
    r = _start(relaunch, mode, files=PKG_FILES)
    away = tmp_path / "pkg_away"
    mark = r.err.mark()
    pkg.rename(away)
    away.rename(pkg)  # e.g. a tool's backup-and-restore: same files, same inodes
    # The files were looked at and found unchanged (or, wrongly, reloaded for).
    seen = r.expect(r"no content changed in |\] reload #", stream="err", start=mark)
    assert "no content changed" in seen.group(0), r.output()
    # The folder is still watched: the next edit in it is seen, and is reload #1.
    replace(pkg / "mod.py", "VALUE = 2\n")
    r.expect(r"value=2$")
    r.expect(reload_line(1, r"pkg/mod\.py"), stream="err")
    assert reloads(r) == 1, r.output()


def test_package_folder_deleted_and_recreated(
    tmp_path: Path, relaunch: Start, mode: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _pkg_app(tmp_path, monkeypatch)
    r = _start(relaunch, mode, files=PKG_FILES)
    shutil.rmtree(pkg)
    r.expect(reload_line(1, r"pkg/__init__\.py, pkg/mod\.py"), stream="err")
    r.expect(r"error: program exited with code 1", stream="err")
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("VALUE = 2\n")
    r.expect(r"value=2$")
    # The new folder (a new inode) is watched: an edit in it reloads.
    replace(pkg / "mod.py", "VALUE = 3\n")
    r.expect(r"value=3$")
    r.expect(reload_line(3, r"pkg/mod\.py"), stream="err")
    assert reloads(r) == 3, r.output()


CONF_APP = """\
import os, time
try:
    text = open("site/conf/settings.txt").read().strip()
except OSError:
    text = "missing"
print(f"start conf={text}", flush=True)
time.sleep(3600)
"""


def test_watched_folder_deleted_and_recreated(tmp_path: Path, relaunch: Start) -> None:
    # The --watch folder's parent holds nothing else that is watched: once the folder
    # is gone, only relaunch's handling of the entry itself can notice it coming back
    # (as when a build step or `git checkout` deletes and recreates it).
    conf = tmp_path / "site" / "conf"
    conf.mkdir(parents=True)
    (conf / "settings.txt").write_text("one\n")
    (tmp_path / "app.py").write_text(CONF_APP)
    r = relaunch(["run", "-v", "-w", "site/conf", "--", PY, "app.py"])
    r.expect("start conf=one$")
    wait_watching(r, 2)
    shutil.rmtree(conf)
    r.expect(reload_line(1, r"site/conf/settings\.txt"), stream="err")
    r.expect("start conf=missing$")
    conf.mkdir()
    (conf / "settings.txt").write_text("two\n")
    r.expect("start conf=two$")
    r.expect(reload_line(2, r"site/conf/settings\.txt"), stream="err")
    # The recreated folder is watched: an edit in it reloads.
    replace(conf / "settings.txt", "three\n")
    r.expect("start conf=three$")
    r.expect(reload_line(3, r"site/conf/settings\.txt"), stream="err")
    assert reloads(r) == 3, r.output()


def test_mtime_moving_backwards_gives_one_reload(
    tmp_path: Path, relaunch: Start, mode: list[str]
) -> None:
    msg = make_app(tmp_path) / "msg.py"
    saved = tmp_path.parent / f"{tmp_path.name}-backup-msg.py"
    shutil.copy2(msg, saved)  # the version to restore later, with its mtime
    r = _start(relaunch, mode)
    replace(msg, "VALUE = 2\n")
    r.expect(reload_line(1), stream="err")
    r.expect(r"value=2$")
    # An older version restored with its old mtime (cp -p, an unpack, a backup tool).
    shutil.copy2(saved, msg)
    saved.unlink()
    r.expect(reload_line(2), stream="err")
    r.expect(r"value=1$")
    # The same bytes, the mtime going back once more: the user went back on purpose.
    st = msg.stat()
    os.utime(msg, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    r.expect(reload_line(3), stream="err")
    replace(msg, "VALUE = 4\n")
    r.expect(reload_line(4), stream="err")
    r.expect(r"value=4$")
    assert reloads(r) == 4, r.output()
