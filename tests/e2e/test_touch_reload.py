"""Touch to reload end to end: ``--touch-reload FILE`` under ``relaunch run``,
``relaunch serve`` and ``relaunch watch``, from the command line and from
``[tool.relaunch]``; and Django's reloader contract for files registered through its
API (an mtime change alone sends ``file_changed``) under ``manage.py runserver``."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..reliability.support import APP, PY, wait_watching
from .harness import Proc, Relaunch, wait_until, write
from .test_frameworks import run, runserver, wait_for_body
from .test_serve import WSGI_APP, free_port, get, wait_body

Start = Callable[..., Relaunch]
__all__ = ["run"]  # the fixture, shared with test_frameworks

RELOAD = r"\] reload #\d+:"


def touch(path: Path) -> None:
    """What ``touch`` does: the mtime moves, the content stays. The new time is taken
    past the old one, so it moves even within the file system's time granularity."""
    before = path.stat().st_mtime_ns
    now = max(time.time_ns(), before + 10_000_000)
    os.utime(path, ns=(now, now))


def pid_of(text: str) -> int:
    match = re.search(r"pid=(\d+)", text)
    assert match, text
    return int(match.group(1))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    return tmp_path


# -- relaunch run ----------------------------------------------------------------------


def test_run_touch_of_touch_reload_file_reloads_once_a_touch_of_code_does_not(
    app: Path, relaunch: Start
) -> None:
    (app / "restart.txt").write_text("")
    r = relaunch(["run", "-v", "--touch-reload", "restart.txt", "--", PY, "app.py"])
    first = pid_of(r.expect(r"start pid=\d+ value=1").group(0))
    wait_watching(r, 3)  # app.py, msg.py, restart.txt: baselines taken
    mark = r.out.mark()
    touch(app / "msg.py")  # an ordinary watched file: content fingerprints, no reload
    touch(app / "restart.txt")
    r.expect(r"reload #1: restart.txt changed; new process up", stream="err")
    assert pid_of(r.expect(r"start pid=\d+ value=1", start=mark).group(0)) != first
    # Had the touch of msg.py or a second look at restart.txt reloaded, this would
    # not be #2.
    write(app / "msg.py", "VALUE = 2\n")
    r.expect(r"start pid=\d+ value=2")
    r.expect(r"reload #2: msg.py changed", stream="err")
    assert r.err.count(RELOAD) == 2, r.output()
    assert r.err.count(r"reload #\d+: .*msg.py, restart.txt") == 0, r.output()


@pytest.mark.parametrize("how", ["events", "poll"])
def test_run_missing_touch_file_reloads_when_created_and_not_when_removed(
    app: Path, relaunch: Start, how: str
) -> None:
    # tmp/ does not exist yet, and is git-ignored (as tmp/restart.txt usually is).
    (app / ".git").mkdir()
    (app / ".gitignore").write_text("tmp/\n")
    poll = ["--poll", "--poll-interval", "0.1"] if how == "poll" else []
    r = relaunch(["run", "-v", *poll, "--touch-reload", "tmp/restart.txt", "--", PY, "app.py"])
    r.expect(r"start pid=\d+ value=1")
    wait_watching(r, 3)
    (app / "tmp").mkdir()
    (app / "tmp" / "restart.txt").write_text("")
    r.expect(r"reload #1: tmp/restart.txt changed; new process up", stream="err")
    touch(app / "tmp" / "restart.txt")
    r.expect(r"reload #2: tmp/restart.txt changed; new process up", stream="err")
    (app / "tmp" / "restart.txt").unlink()  # removing the trigger reloads nothing
    write(app / "msg.py", "VALUE = 3\n")
    r.expect(r"start pid=\d+ value=3")
    r.expect(r"reload #3: msg.py changed", stream="err")
    assert r.err.count(RELOAD) == 3, r.output()


def test_run_explain_names_the_touch_reload_rule(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "--touch-reload", "tmp/restart.txt", "--explain", "tmp/restart.txt"])
    assert r.wait() == 0
    assert "tmp/restart.txt: watched: --touch-reload 'tmp/restart.txt'" in r.out.text()


def test_touch_reload_folder_is_a_one_line_error(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "--touch-reload", ".", "--", PY, "app.py"])
    assert r.wait() == 2
    assert r.err.text().strip() == (
        "relaunch: error: --touch-reload '.' is a folder: give a file (it need not exist yet)"
    )


# -- relaunch serve, from [tool.relaunch] ---------------------------------------------


def test_serve_touch_reload_from_pyproject_restarts_the_app(
    tmp_path: Path, relaunch: Start
) -> None:
    (tmp_path / "app.py").write_text(
        WSGI_APP.replace("<h1>{msg.VALUE}</h1>", "<h1>{msg.VALUE}</h1> pid={os.getpid()}").replace(
            "import time", "import os, time"
        )
    )
    (tmp_path / "msg.py").write_text("VALUE = 'one'\n")
    # A file that is no code: without touch-reload, a change there would only refresh
    # pages. It does not exist yet.
    (tmp_path / "pyproject.toml").write_text(
        '[tool.relaunch]\ntouch-reload = ["deploy/reload.flag"]\n'
    )
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "-v"], tmp_path)
    first = pid_of(wait_body(port, "one"))
    wait_watching(r, 3)
    touch(tmp_path / "msg.py")  # imported code, touched: nothing
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "reload.flag").write_text("")
    r.expect(r"reload #1: deploy/reload.flag changed; new process up", stream="err")
    wait_until(lambda: pid_of(get(port)[1]) != first, what="the new process serving")
    second = pid_of(get(port)[1])
    touch(tmp_path / "deploy" / "reload.flag")
    r.expect(r"reload #2: deploy/reload.flag changed; new process up", stream="err")
    wait_until(lambda: pid_of(get(port)[1]) not in (first, second), what="a third process")
    write(tmp_path / "msg.py", "VALUE = 'two'\n")
    wait_body(port, "two")
    r.expect(r"reload #3: msg.py changed", stream="err")
    assert r.err.count("pages refreshed") == 0, r.output()
    assert r.err.count(RELOAD) == 3, r.output()


# -- relaunch watch ---------------------------------------------------------------------


def test_watch_touch_reload_file_fires_the_action(tmp_path: Path, relaunch: Start) -> None:
    (tmp_path / "code.py").write_text("X = 1\n")
    (tmp_path / "reload.flag").write_text("")
    r = relaunch(
        ["watch", "-v", "-w", "code.py", "--touch-reload", "reload.flag",
         "--exec", 'echo "$RELAUNCH_CHANGED" >> fired.txt'],
        tmp_path,
    )  # fmt: skip
    r.expect(r"watching 2 file\(s\); on change: run", stream="err")
    touch(tmp_path / "code.py")  # a --watch file touched: no change
    touch(tmp_path / "reload.flag")
    r.expect(r"reload #1: reload.flag changed", stream="err")
    write(tmp_path / "code.py", "X = 2\n")
    r.expect(r"reload #2: code.py changed", stream="err")  # after the command ran
    fired = (tmp_path / "fired.txt").read_text().split()
    assert fired == [str(tmp_path / "reload.flag"), str(tmp_path / "code.py")]


# -- Django: what receivers register keeps Django's mtime contract ----------------------

BLOG_APPS = """\
import os
from pathlib import Path

from django.apps import AppConfig
from django.conf import settings
from django.utils.autoreload import autoreload_started, file_changed


def on_started(sender, **kwargs):
    base = Path(settings.BASE_DIR)
    sender.watch_dir(base / "conf", "*.ini")
    sender.extra_files.add(base / "VERSION")
    print(f"autoreload_started pid={os.getpid()}", flush=True)


def on_file_changed(sender, file_path, **kwargs):
    print(f"file_changed {file_path.name} pid={os.getpid()}", flush=True)


class BlogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "blog"

    def ready(self):
        autoreload_started.connect(on_started)
        file_changed.connect(on_file_changed)
"""


def touch_until(proc: Proc, path: Path, pattern: str, timeout: float = 60.0) -> None:
    """Touch ``path`` until ``pattern`` shows on stdout: the reloader takes its first
    look at the files a moment after ``autoreload_started``, and a touch before that
    look is rightly no change."""
    deadline = time.monotonic() + timeout
    while True:
        touch(path)
        try:
            proc.expect(pattern, timeout=2.0)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def new_pid(port: int, old: set[int]) -> int:
    """Wait until the page is served by a process not in ``old``; its pid."""
    seen: list[int] = []

    def check() -> bool:
        try:
            status, body = get(port, "/shop/")
        except OSError:
            return False  # runserver restarting: nothing listens for a moment
        if "pid=" not in body:
            return False  # runserver stopped mid-response: a close-delimited body, cut short
        if status == 200 and pid_of(body) not in old:
            seen.append(pid_of(body))
        return bool(seen)

    wait_until(check, timeout=60, what=f"a process other than {sorted(old)} serving")
    return seen[0]


def test_runserver_sends_file_changed_for_a_touch_of_registered_files(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    pytest.importorskip("django")
    from .djangosite import make_site

    site = make_site(tmp_path, integration=True)
    (site / "blog" / "apps.py").write_text(BLOG_APPS)
    (site / "conf").mkdir()
    (site / "conf" / "site.ini").write_text("[site]\n")
    (site / "VERSION").write_text("1\n")
    # Plain runserver hands itself to relaunch run, which reads [tool.relaunch].
    (site / "pyproject.toml").write_text('[tool.relaunch]\ntouch-reload = ["restart.txt"]\n')
    (site / "restart.txt").write_text("")
    port = free_port()
    p = runserver(run, site, port)
    pid = int(wait_for_body(port, r"value=1 pid=(\d+)", "/shop/").group(1))
    p.expect(rf"autoreload_started pid={pid}")
    # watch_dir(): a touch alone is a change, as under Django's StatReloader.
    touch_until(p, site / "conf" / "site.ini", rf"file_changed site.ini pid={pid}")
    p.expect(r"site.ini changed, reloading.", stream="err")
    second = new_pid(port, {pid})
    p.expect(r"reload #1: reload requested by the program", stream="err")
    # extra_files: the same.
    p.expect(rf"autoreload_started pid={second}")
    touch_until(p, site / "VERSION", rf"file_changed VERSION pid={second}")
    third = new_pid(port, {pid, second})
    # A --touch-reload file: the supervisor's, asked of the server process as any change.
    p.expect(rf"autoreload_started pid={third}")
    touch(site / "restart.txt")
    p.expect(rf"file_changed restart.txt pid={third}")
    new_pid(port, {pid, second, third})
    p.expect(r"reload #3: restart.txt changed; new process up", stream="err")
