"""Warm restarts end to end, with "installed" packages in a real throwaway virtualenv."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Relaunch, pid_alive, wait_until, write

Start = Callable[..., Relaunch]
READY = r"warm-start process (\d+) ready"

APP = """\
import random, sys, time
preloaded = "mylib" in sys.modules  # True only if the zygote imported it first
import mylib
import msg
if __name__ == "__main__":
    print(f"run value={msg.VALUE} lib={mylib.VERSION} preloaded={preloaded} "
          f"threaded={'threaded' in sys.modules} random={random.random()}", flush=True)
    time.sleep(3600)
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv (no pip: fast) whose site-packages we fill by hand."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return root


def site_packages(venv: Path) -> Path:
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    return Path(purelib)


@pytest.fixture
def project(tmp_path: Path, venv: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(app folder, the venv's python, the installed mylib package folder)."""
    lib = site_packages(venv) / f"mylib_{os.getpid()}_{tmp_path.name}"
    # Each test gets its own copy of the library under a unique folder on sys.path.
    lib.mkdir(parents=True)
    (lib / "mylib").mkdir()
    (lib / "mylib" / "__init__.py").write_text("VERSION = 1\n")
    (lib / "threaded.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
    )
    pth = site_packages(venv) / f"{lib.name}.pth"
    pth.write_text(str(lib) + "\n")
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(APP)
    (app / "msg.py").write_text("VALUE = 1\n")
    yield app, venv / "bin" / "python", lib
    pth.unlink()


def start(relaunch: Start, project: tuple[Path, Path, Path], *extra: str) -> Relaunch:
    app, python, _lib = project
    return relaunch(["run", "-v", "--restart", "warm", *extra, "--", str(python), "app.py"], app)


def test_warm_reload_runs_new_code_with_libraries_preloaded(
    project: tuple[Path, Path, Path], relaunch: Start
) -> None:
    app, _python, _lib = project
    r = start(relaunch, project)
    r.expect("run value=1 lib=1 preloaded=False")  # the first start is cold
    r.expect(READY, stream="err")
    write(app / "msg.py", "VALUE = 2\n")
    r.expect("run value=2 lib=1 preloaded=True")
    write(app / "msg.py", "VALUE = 3\n")
    r.expect("run value=3 lib=1 preloaded=True")


def test_main_block_runs_and_random_differs_between_warm_children(
    project: tuple[Path, Path, Path], relaunch: Start
) -> None:
    app, _python, _lib = project
    r = start(relaunch, project)
    r.expect(READY, stream="err")
    values = []
    for n in (2, 3):
        write(app / "msg.py", f"VALUE = {n}\n")
        values.append(r.expect(rf"run value={n} .*preloaded=True .*random=(\S+)").group(1))
    assert values[0] != values[1]


def test_editing_a_preloaded_library_rebuilds_the_zygote(
    project: tuple[Path, Path, Path], relaunch: Start
) -> None:
    app, _python, lib = project
    r = start(relaunch, project)
    first = r.expect(READY, stream="err").group(1)
    write(lib / "mylib" / "__init__.py", "VERSION = 2\n")
    r.expect("rebuilding the warm-start process", stream="err")
    mark = r.err.mark()
    second = r.expect(READY, stream="err", start=mark).group(1)
    assert second != first
    write(app / "msg.py", "VALUE = 2\n")
    r.expect("run value=2 lib=2 preloaded=True")


def test_package_install_rebuilds_the_zygote(
    project: tuple[Path, Path, Path], relaunch: Start, venv: Path
) -> None:
    r = start(relaunch, project)
    r.expect(READY, stream="err")
    dist_info = site_packages(venv) / f"newpkg_{os.getpid()}-1.0.dist-info"
    dist_info.mkdir()
    try:
        r.expect("installed packages changed: rebuilding the warm-start process", stream="err")
    finally:
        dist_info.rmdir()


def test_module_starting_a_thread_is_not_preloaded(
    project: tuple[Path, Path, Path], relaunch: Start
) -> None:
    app, _python, _lib = project
    (app / "app.py").write_text(APP.replace("import mylib\n", "import mylib\nimport threaded\n"))
    r = start(relaunch, project)
    r.expect("not preloading threaded for warm restarts: it started a thread", stream="err")
    r.expect(READY, stream="err")
    write(app / "msg.py", "VALUE = 2\n")
    # mylib still comes preloaded; threaded is imported by the program itself, and works.
    r.expect("run value=2 lib=1 preloaded=True threaded=True")


def test_killed_zygote_is_survived(project: tuple[Path, Path, Path], relaunch: Start) -> None:
    app, _python, _lib = project
    r = start(relaunch, project)
    zygote = int(r.expect(READY, stream="err").group(1))
    os.kill(zygote, signal.SIGKILL)
    wait_until(lambda: not pid_alive(zygote), what="the zygote to die")
    mark = r.err.mark()
    write(app / "msg.py", "VALUE = 2\n")
    r.expect("run value=2 lib=1")
    # A new zygote is built, and the next reload is warm again.
    assert int(r.expect(READY, stream="err", start=mark).group(1)) != zygote
    write(app / "msg.py", "VALUE = 3\n")
    r.expect("run value=3 lib=1 preloaded=True")


def test_cold_restart_mode_never_forks(project: tuple[Path, Path, Path], relaunch: Start) -> None:
    app, python, _lib = project
    r = relaunch(["run", "-v", "--restart", "cold", "--", str(python), "app.py"], app)
    r.expect("run value=1")
    write(app / "msg.py", "VALUE = 2\n")
    r.expect("run value=2 lib=1 preloaded=False")
    assert "warm-start" not in r.err.text()


def test_no_preload_option_leaves_a_package_out(
    project: tuple[Path, Path, Path], relaunch: Start
) -> None:
    app, _python, _lib = project
    r = start(relaunch, project, "--no-preload", "mylib")
    r.expect(READY, stream="err")
    write(app / "msg.py", "VALUE = 2\n")
    r.expect("run value=2 lib=1 preloaded=False")


def test_warm_child_keeps_interpreter_flags(tmp_path: Path, relaunch: Start) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """\
            import sys, time
            preloaded = "json" in sys.modules
            import json, msg
            print("flags", sys.flags.optimize, sys.flags.dev_mode, sys.argv[1:], msg.V,
                  preloaded, flush=True)
            time.sleep(3600)
            """
        )
    )
    (tmp_path / "msg.py").write_text("V = 1\n")
    r = relaunch(["run", "-v", "--", sys.executable, "-O", "-X", "dev", "app.py", "x"])
    r.expect(r"flags 1 True \['x'\] 1 False")
    r.expect(READY, stream="err")
    write(tmp_path / "msg.py", "V = 2\n")
    r.expect(r"flags 1 True \['x'\] 2 True")


def test_reload_after_a_rebuild_does_not_wait_out_the_grace(
    project: tuple[Path, Path, Path], relaunch: Start, venv: Path
) -> None:
    """The running child was forked by the zygote that a rebuild discards: from then on
    relaunch is its parent and must reap it, or its zombie keeps its group "alive" and
    the next reload waits out the whole grace period (twice)."""
    app, _python, _lib = project
    r = start(relaunch, project, "--grace", "30")
    r.expect(READY, stream="err")
    write(app / "msg.py", "VALUE = 2\n")
    r.expect("run value=2 lib=1 preloaded=True")  # forked by the first zygote
    mark = r.err.mark()
    dist_info = site_packages(venv) / f"newpkg_{os.getpid()}_{app.parent.name}-1.0.dist-info"
    dist_info.mkdir()
    try:
        r.expect("installed packages changed: rebuilding", stream="err", start=mark)
        r.expect(READY, stream="err", start=mark)
        mark = r.err.mark()
        write(app / "msg.py", "VALUE = 3\n")
        # The new zygote preloads what the old one had (its warm child never reported it).
        r.expect("run value=3 lib=1 preloaded=True")
        took = int(
            r.expect(
                r"reload #\d+: msg\.py changed; new process up in (\d+) ms",
                stream="err",
                start=mark,
            ).group(1)
        )
    finally:
        dist_info.rmdir()
    print(f"\nreload after a zygote rebuild: new process up in {took} ms")
    assert took < 15_000, r.output()  # grace 30 s: it did not wait it out
