"""`relaunch run` end to end: real processes, real files, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Relaunch, pid_alive, wait_until, write

PY = sys.executable

APP = """\
import os, sys, time
import msg
print(f"start pid={os.getpid()} value={msg.VALUE}", flush=True)
time.sleep(3600)
"""

Start = Callable[..., Relaunch]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    return tmp_path


def test_edit_of_imported_module_restarts_with_new_code(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect(r"start pid=\d+ value=1")
    write(app / "msg.py", "VALUE = 2\n")
    r.expect(r"start pid=\d+ value=2")
    r.expect(r"reload #1: msg.py changed; new process up in \d+ ms", stream="err")


def test_syntax_error_is_reported_then_fix_is_picked_up(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("value=1")
    write(app / "msg.py", "VALUE = (\n")
    r.expect("SyntaxError", stream="err")
    r.expect(
        r"error: program exited with code 1; watching the files of its traceback", stream="err"
    )
    write(app / "msg.py", "VALUE = 3\n")
    r.expect("value=3")


def test_error_at_first_start_waits_for_the_fix(app: Path, relaunch: Start) -> None:
    write(app / "msg.py", "VALUE = 1 +\n")
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("waiting for a change", stream="err")
    write(app / "msg.py", "VALUE = 4\n")
    r.expect("value=4")


def test_module_created_after_import_error_triggers_reload(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(APP.replace("import msg", "import msg, later"))
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("ModuleNotFoundError", stream="err")
    (app / "later.py").write_text("X = 1\n")
    r.expect("value=1")


def test_lazily_imported_module_is_watched(app: Path, relaunch: Start) -> None:
    (app / "lazy.py").write_text("WORD = 'first'\n")
    (app / "app.py").write_text(
        textwrap.dedent(
            """\
            import os, sys, time
            print("start", flush=True)
            while not os.path.exists("go"):
                time.sleep(0.01)
            import lazy
            print("lazy", lazy.WORD, flush=True)
            time.sleep(3600)
            """
        )
    )
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("^start")
    (app / "go").write_text("")
    r.expect("lazy first")
    write(app / "lazy.py", "WORD = 'second'\n")
    r.expect("lazy second")


def test_interpreter_flags_argv_and_main_semantics_are_kept(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        textwrap.dedent(
            """\
            import sys, time, warnings
            import msg
            def report():
                print("flags", sys.flags.optimize, sys.flags.dev_mode, sys.warnoptions,
                      sys.argv, sys.path[0] == __import__("os").getcwd(), __name__,
                      sys.orig_argv[1:], msg.VALUE, flush=True)
            if __name__ == "__main__":
                report()
                time.sleep(3600)
            """
        )
    )
    r = relaunch(["run", "--", PY, "-O", "-X", "dev", "-W", "error::UserWarning", "app.py", "a1"])
    expected = (
        r"flags 1 True \['default', 'error::UserWarning'\] \['app.py', 'a1'\] True __main__ "
        r"\['-O', '-X', 'dev', '-W', 'error::UserWarning', 'app.py', 'a1'\] {}"
    )
    r.expect(expected.format(1))
    write(app / "msg.py", "VALUE = 2\n")
    r.expect(expected.format(2))


DIR_MAIN = """\
import os, sys, time
import helper
print("main", sys.argv, sys.path[0], __spec__.name, __file__, sys.orig_argv[1:], helper.V,
      flush=True)
if "PROBE" not in os.environ:
    time.sleep(3600)
"""


@pytest.mark.parametrize("restart", ["warm", "cold"])
@pytest.mark.parametrize("kind", ["dir", "pyz"])
def test_python_dir_and_pyz_run_their_main_as_python_does(
    tmp_path: Path, relaunch: Start, kind: str, restart: str
) -> None:
    """`python DIR` and `python app.pyz` run the __main__.py inside, with the folder or
    archive as sys.path[0]; a change inside reloads (and nothing reloads before one)."""
    import zipapp

    src = tmp_path / "app"
    src.mkdir()
    (src / "__main__.py").write_text(DIR_MAIN)
    (src / "helper.py").write_text("V = 1\n")
    target = "app"
    if kind == "pyz":
        target = "app.pyz"
        zipapp.create_archive(src, tmp_path / "app.pyz")

    done = subprocess.run(
        [PY, target, "arg"],
        cwd=tmp_path,
        env={**os.environ, "PROBE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    expected = done.stdout.strip()
    r = relaunch(["run", "--restart", restart, "--", PY, target, "arg"])
    r.expect(re.escape(expected))
    if kind == "dir":
        write(src / "helper.py", "V = 2\n")
        changed = "app/helper.py"
    else:
        (src / "helper.py").write_text("V = 2\n")
        zipapp.create_archive(src, tmp_path / "new.pyz")
        os.replace(tmp_path / "new.pyz", tmp_path / "app.pyz")  # as a build tool replaces it
        changed = "app.pyz"
    r.expect(re.escape(expected[:-1] + "2"))
    # The first reload is the edit's: none fired at start.
    r.expect(rf"reload #1: {re.escape(changed)} changed", stream="err")
    assert "Traceback" not in r.err.text()


def test_python_dash_m_runs_package_main(tmp_path: Path, relaunch: Start) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("N = 1\n")
    (pkg / "__main__.py").write_text(
        "import sys, time\nfrom pkg import util\n"
        "print('main', __name__, sys.argv[1:], util.N, flush=True)\ntime.sleep(3600)\n"
    )
    r = relaunch(["run", "--", PY, "-m", "pkg", "x"])
    r.expect(r"main __main__ \['x'\] 1")
    write(pkg / "util.py", "N = 2\n")
    r.expect(r"main __main__ \['x'\] 2")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_git_checkout_of_500_files_gives_one_reload(tmp_path: Path, relaunch: Start) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    names = [f"p{i:03d}" for i in range(500)]
    (pages / "__init__.py").write_text("".join(f"from . import {n}\n" for n in names))
    (tmp_path / "app.py").write_text(
        "import os, time, pages\nprint('start', pages.p499.V, flush=True)\ntime.sleep(3600)\n"
    )
    _git(tmp_path, "init", "-q", "-b", "main")
    for version in (1, 2):
        for name in names:
            (pages / f"{name}.py").write_text(f"V = {version}\n")
        _git(tmp_path, "add", "-A")
        _git(tmp_path, "commit", "-q", "-m", f"v{version}")
    _git(tmp_path, "checkout", "-q", "HEAD~1")
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("start 1")
    _git(tmp_path, "checkout", "-q", "main")
    r.expect("start 2")
    r.expect(r"reload #1: .*\(\+\d+ more\) changed", stream="err")
    # One more change proves nothing else was pending: it must be reload #2.
    write(pages / "p499.py", "V = 3\n")
    r.expect(r"reload #2: pages/p499.py changed", stream="err")
    r.expect("start 3")
    assert r.out.count("^start") == 3, r.output()


def test_atomic_save_by_rename_reloads(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "-v", "--", PY, "app.py"])
    r.expect("value=1")
    r.expect(r"watching [1-9]\d* file\(s\)", stream="err")
    tmp = app / ".msg.py.tmp1234"
    tmp.write_text("VALUE = 5\n")
    os.replace(tmp, app / "msg.py")
    r.expect("value=5")
    r.expect("reload #1: msg.py changed", stream="err")


def test_noop_save_and_app_written_log_cause_no_reload(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        APP.replace(
            "time.sleep(3600)",
            "for i in range(20):\n"
            "    open('app.log', 'a').write('line\\n'); open('data.sqlite3', 'a').write('x')\n"
            "print('logged', flush=True)\ntime.sleep(3600)",
        )
    )
    r = relaunch(["run", "-v", "--", PY, "app.py"])
    r.expect("logged")
    # Touch files only once relaunch has heard what the program loaded: a file touched
    # before that is rightly taken as changed (its mtime is not what the program saw).
    r.expect(r"watching [1-9]\d* file\(s\)", stream="err")
    write(app / "msg.py", "VALUE = 1\n")  # same content, new mtime
    os.utime(app / "app.py")
    write(app / "msg.py", "VALUE = 6\n")
    r.expect("value=6")
    # The no-op save and the log writes came first; had they reloaded, this would be #2+.
    r.expect(r"reload #1: msg.py changed", stream="err")
    assert r.err.count(r"reload #") == 1, r.output()


def test_mtime_going_backwards_counts_as_change(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("value=1")
    st = (app / "msg.py").stat()
    os.utime(app / "msg.py", ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    r.expect(r"reload #1: msg.py changed", stream="err")


def test_sigkill_of_supervisor_leaves_no_process_behind(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        textwrap.dedent(
            """\
            import os, subprocess, sys, time
            import msg
            grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            print(f"pids {os.getpid()} {grandchild.pid}", flush=True)
            time.sleep(3600)
            """
        )
    )
    r = relaunch(["run", "--", PY, "app.py"])
    match = r.expect(r"pids (\d+) (\d+)")
    pids = [int(match.group(1)), int(match.group(2))]
    assert all(pid_alive(p) for p in pids)
    r.proc.kill()
    r.proc.wait()
    wait_until(lambda: not any(pid_alive(p) for p in pids), what="children to die")


def test_polling_mode_reloads(app: Path, relaunch: Start) -> None:
    r = relaunch(["run", "--poll", "--poll-interval", "0.05", "-v", "--", PY, "app.py"])
    r.expect("value=1")
    r.expect(r"by polling every 0.05s", stream="err")
    write(app / "msg.py", "VALUE = 7\n")
    r.expect("value=7")


def test_non_python_command_watches_current_folder(tmp_path: Path, relaunch: Start) -> None:
    (tmp_path / "data.txt").write_text("one\n")
    r = relaunch(["run", "--", "sh", "-c", "cat data.txt; exec sleep 3600"])
    r.expect("^one$")
    write(tmp_path / "data.txt", "two\n")
    r.expect("^two$")


def test_watch_glob_and_ignore(app: Path, relaunch: Start) -> None:
    (app / "templates").mkdir()
    (app / "templates" / "index.html").write_text("<p>1</p>")
    (app / "templates" / "skip.html").write_text("<p>1</p>")
    r = relaunch(["run", "-w", "templates/*.html", "-i", "skip.*", "--", PY, "app.py"])
    r.expect("value=1")
    write(app / "templates" / "skip.html", "<p>2</p>")
    write(app / "templates" / "index.html", "<p>2</p>")
    r.expect(r"reload #1: templates/index.html changed", stream="err")
    assert r.err.count("reload #") == 1


def test_trigger_reload_watch_and_hooks_from_the_app(app: Path, relaunch: Start) -> None:
    (app / "extra.cfg").write_text("a")
    (app / "app.py").write_text(
        textwrap.dedent(
            """\
            import os, sys, time
            import relaunch
            relaunch.watch("extra.cfg")
            relaunch.add_reload_hook(lambda: print("hook ran", flush=True))
            n = int(os.environ.get("N", "0"))
            print("child", relaunch.is_child(), open("extra.cfg").read(), flush=True)
            if not os.path.exists("asked"):
                open("asked", "w").close()
                relaunch.trigger_reload()
            time.sleep(3600)
            """
        )
    )
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("child True a")
    r.expect("hook ran")
    r.expect(r"reload #1: reload requested by the program", stream="err")
    wait_until(lambda: r.out.count("child True a") == 2, what="the second run")
    mark = r.out.mark()
    write(app / "extra.cfg", "b")
    r.expect("hook ran", start=mark)
    r.expect("child True b", start=mark)


def test_on_exit_exit_mirrors_clean_exit(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text("print('done', flush=True)\n")
    r = relaunch(["run", "--on-exit", "exit", "--", PY, "app.py"])
    assert r.wait() == 0
    r.expect("done")


def test_on_exit_restart_restarts(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        "import os\nn = len(open('runs', 'a+').name) and None\n"
        "open('runs', 'a').write('x')\nprint('run', len(open('runs').read()), flush=True)\n"
    )
    r = relaunch(["run", "--on-exit", "restart", "--", PY, "app.py"])
    r.expect("run 3")


def test_crashing_program_is_not_restarted_in_a_loop(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text("import msg\nprint('boom', flush=True)\nraise SystemExit(3)\n")
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("exited with code 3; waiting for a change", stream="err")
    r.signal(signal.SIGHUP)  # a manual reload runs it exactly once more
    r.expect(r"reload #1: manual reload \(SIGHUP\)", stream="err")
    # Printing is not exiting: edited before the second run is over, it is restarted,
    # not seen to fail.
    wait_until(lambda: r.err.count("exited with code 3") == 2, what="second run's exit")
    write(app / "msg.py", "VALUE = 2\n")
    # Its stdout and relaunch's log are two pipes: wait for each, then count.
    r.expect(r"reload #2: msg\.py changed", stream="err")
    wait_until(lambda: r.err.count("exited with code 3") == 3, what="third run's exit")
    assert r.out.count("boom") == 3, r.output()
    assert r.err.count("reload #") == 2, r.output()


def test_ctrl_c_stops_gracefully(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('got term', flush=True), sys.exit(0)))\n"
        "print('ready', flush=True)\ntime.sleep(3600)\n"
    )
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect("ready")
    r.signal(signal.SIGINT)
    assert r.wait() == 0
    r.expect("got term")


def test_child_ignoring_sigterm_is_killed_after_grace(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        "import os, signal, time\nimport msg\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('pid', os.getpid(), msg.VALUE, flush=True)\ntime.sleep(3600)\n"
    )
    r = relaunch(["run", "--grace", "0.3", "--", PY, "app.py"])
    first = int(r.expect(r"pid (\d+) 1").group(1))
    write(app / "msg.py", "VALUE = 2\n")
    r.expect(r"did not exit 0.3 s after SIGTERM", stream="err")
    r.expect(r"pid \d+ 2")
    assert not pid_alive(first)


def test_console_script_with_python_shebang(app: Path, relaunch: Start) -> None:
    script = app / "bin" / "serve-it"
    script.parent.mkdir()
    script.write_text(
        f"#!{PY}\nimport sys, runpy\nsys.path.insert(0, {str(app)!r})\n"
        "runpy.run_path('app.py', run_name='__main__')\n"
    )
    script.chmod(0o755)
    r = relaunch(["run", "-v", "--", str(script)])
    r.expect("value=1")
    write(app / "msg.py", "VALUE = 8\n")
    r.expect("value=8")


def test_daemon_that_left_the_process_group_is_stopped_too(app: Path, relaunch: Start) -> None:
    (app / "app.py").write_text(
        textwrap.dedent(
            """\
            import subprocess, sys, time
            import msg
            code = "import os, time; os.setsid(); time.sleep(3600)"
            daemon = subprocess.Popen([sys.executable, "-c", code])
            print("daemon", daemon.pid, msg.VALUE, flush=True)
            time.sleep(3600)
            """
        )
    )
    r = relaunch(["run", "--", PY, "app.py"])
    first = int(r.expect(r"daemon (\d+) 1").group(1))
    write(app / "msg.py", "VALUE = 2\n")
    second = int(r.expect(r"daemon (\d+) 2").group(1))
    wait_until(lambda: not pid_alive(first), what="the first daemon to be stopped")
    r.signal(signal.SIGTERM)
    r.wait()
    wait_until(lambda: not pid_alive(second), what="the second daemon to be stopped")


def test_same_size_edits_within_one_second_never_run_stale_bytecode(
    app: Path, relaunch: Start
) -> None:
    # Python trusts a .pyc whose source has the same size and mtime second.
    r = relaunch(["run", "-v", "--", PY, "app.py"], env={"PYTHONDONTWRITEBYTECODE": ""})
    r.expect("value=1")
    r.expect(r"watching [1-9]\d* file\(s\)", stream="err")
    for n in (2, 3, 4):
        write(app / "msg.py", f"VALUE = {n}\n")
        r.expect(rf"value={n}")
    assert (app / "__pycache__").is_dir()  # bytecode was written, and never trusted stale


def test_missing_module_elsewhere_on_sys_path_is_waited_for(
    tmp_path: Path, relaunch: Start
) -> None:
    """The module a ModuleNotFoundError names is watched wherever the import looked,
    not only next to the program's files."""
    (tmp_path / "app").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "app" / "main.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tmp_path / 'lib')!r})\n"
        "import helper\nprint('helper', helper.X, flush=True)\n"
    )
    r = relaunch(["run", "--", PY, "app/main.py"])
    r.expect("ModuleNotFoundError: No module named 'helper'", stream="err")
    r.expect("program exited with code 1", stream="err")
    write(tmp_path / "lib" / "helper.py", "X = 1\n")
    r.expect("helper 1")


EXIT_APP = """\
import atexit, gc, os, sys, threading, time
import msg

# Written at import and never closed nor flushed: Python's shutdown flushes it.
notes = open(f"notes-{os.getpid()}.txt", "w")
notes.write(f"value={msg.VALUE}")

def on_exit():
    # The program's own handler runs, and the collector still works in it.
    print(f"atexit pid={os.getpid()} value={msg.VALUE} gc={gc.isenabled()}", flush=True)

atexit.register(on_exit)

def finish():
    time.sleep(0.3)
    print(f"thread done pid={os.getpid()}", flush=True)

def on_term(*_):
    threading.Thread(target=finish).start()  # not a daemon: joined before exit
    sys.exit(0)

import signal
signal.signal(signal.SIGTERM, on_term)
print(f"start pid={os.getpid()} value={msg.VALUE}", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("restart", ["cold", "warm", "checkpoint"])
def test_a_stopped_program_shuts_down_as_python_does(
    tmp_path: Path, relaunch: Start, restart: str
) -> None:
    """relaunch freezes the collector at exit (the shutdown's collections are most of a
    large program's exit, and a reload waits for it): everything Python's shutdown
    promises still happens, in the process that parked a checkpoint and in one forked
    from it too."""
    (tmp_path / "app.py").write_text(EXIT_APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    r = relaunch(["run", "--restart", restart, "--", PY, "app.py"], tmp_path)
    pids = [r.expect(r"start pid=(\d+) value=1").group(1)]
    for value in (2, 3):
        write(tmp_path / "msg.py", f"VALUE = {value}\n")
        pids.append(r.expect(rf"start pid=(\d+) value={value}").group(1))
    for value, pid in zip((1, 2), pids[:2], strict=True):
        r.expect(rf"^thread done pid={pid}$")
        r.expect(rf"^atexit pid={pid} value={value} gc=True$")
        notes = tmp_path / f"notes-{pid}.txt"
        assert notes.read_text() == f"value={value}"  # written by the time it was gone
