"""tornado's own autoreload tests (``tornado/test/autoreload_test.py``), adapted to
``relaunch.autoreload`` and relaunch's public API.

The programs, modes and expected outputs are tornado's: the drop-in must give a
program what tornado's wrapper gives it. Two adaptations, both where tornado's test
reaches into tornado's private parts:

* The program reloads itself with ``autoreload.start()`` and ``relaunch.trigger_reload()``
  instead of tornado's private ``_reload()``.
* tornado's program ends its second run with ``os._exit(0)``, which ends tornado's
  wrapper because the wrapper *is* that process. relaunch's wrapper supervises the
  program from another process, so the program exits 0 and the wrapper is run with
  ``--until-success`` (exit once the program exits 0), as in tornado's last test.

The reload carries the environment over (``TESTAPP_STARTED``), as tornado's exec does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from .harness import Proc, stop, write

PY = sys.executable
WRAPPER = [PY, "-m", "relaunch.autoreload"]

# The last line of each program runs this: the first run sets a variable and reloads;
# the run after the reload sees the variable and exits.
RUN_TWICE_MAGIC = """\
import os
import sys
import threading

import relaunch
from relaunch import autoreload

sys.stdout.flush()

if "TESTAPP_STARTED" not in os.environ:
    os.environ["TESTAPP_STARTED"] = "1"
    autoreload.start()  # in-process reloading; under the wrapper the supervisor reloads
    relaunch.trigger_reload()
    threading.Event().wait()
else:
    sys.exit(0)
"""

TESTAPP_MAIN = """\
import sys

# In module mode, the path is set to the parent directory and we can import testapp.
try:
    import testapp
except ImportError:
    print("import testapp failed")
else:
    print("import testapp succeeded")

spec = getattr(sys.modules[__name__], '__spec__', None)
print(f"Starting {__name__=}, __spec__.name={getattr(spec, 'name', None)}")
exec(open("run_twice_magic.py", encoding="utf-8").read())
"""


def write_files(base: Path, tree: dict[str, object]) -> None:
    for name, contents in tree.items():
        if isinstance(contents, dict):
            (base / name).mkdir()
            write_files(base / name, contents)
        else:
            (base / name).write_text(textwrap.dedent(str(contents)), encoding="utf-8")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    write_files(tmp_path, {"run_twice_magic.py": RUN_TWICE_MAGIC})
    return tmp_path


def run_subprocess(args: list[str], cwd: Path, timeout: float = 60) -> str:
    """Run to the end (bounded); its stdout. Everything it started is stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAUNCH_")}
    env.pop("TESTAPP_STARTED", None)
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{args} did not finish\n{out.decode()}\n{err.decode()}") from None
    finally:
        stop(proc)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("wrapper", [False, True], ids=["plain", "wrapper"])
@pytest.mark.parametrize("mode", ["module", "file", "directory", "pyz"])
def test_reload(app: Path, wrapper: bool, mode: str) -> None:
    """The wrapper supports every mode of the interpreter, and changes nothing but
    sys.path: the current folder comes first, as `python -m` puts it there for tornado's."""
    write_files(app, {"testapp": {"__init__.py": "", "__main__.py": TESTAPP_MAIN}})
    base = [*WRAPPER, "--until-success"] if wrapper else [PY]
    if mode == "module":
        # The path is the parent folder: testapp imports; __spec__ is the module's.
        out = run_subprocess([*base, "-m", "testapp"], app)
        assert (
            out
            == (
                "import testapp succeeded\n"
                "Starting __name__='__main__', __spec__.name=testapp.__main__\n"
            )
            * 2
        )
        return
    expect_import = "import testapp succeeded" if wrapper else "import testapp failed"
    if mode == "file":
        # No qualified spec; only the wrapper's `-m` puts the current folder on the path.
        out = run_subprocess([*base, "testapp/__main__.py"], app)
        assert out == f"{expect_import}\nStarting __name__='__main__', __spec__.name=None\n" * 2
        return
    target = "testapp"
    if mode == "pyz":
        # An archive runs like a folder: its __main__.py, with a spec named __main__.
        target = "app.pyz"
        with zipfile.ZipFile(app / target, "w") as archive:
            archive.writestr("__main__.py", TESTAPP_MAIN)
    out = run_subprocess([*base, target], app)
    assert out == f"{expect_import}\nStarting __name__='__main__', __spec__.name=__main__\n" * 2


def test_reload_wrapper_preservation(app: Path) -> None:
    """After the reload the program still runs under the wrapper (relaunch's supervisor)."""
    main = """\
import sys

# This import will fail if path is not set up correctly
import testapp
import relaunch

if not relaunch.is_child():
    raise Exception('started without autoreload wrapper')

print('Starting')
exec(open("run_twice_magic.py", encoding="utf-8").read())
"""
    write_files(app, {"testapp": {"__init__.py": "", "__main__.py": main}})
    out = run_subprocess([*WRAPPER, "--until-success", "-m", "testapp"], app)
    assert out == "Starting\n" * 2


def test_reload_wrapper_args(app: Path) -> None:
    main = """\
import os
import sys

print(os.path.basename(sys.argv[0]))
print(f'argv={sys.argv[1:]}')
exec(open("run_twice_magic.py", encoding="utf-8").read())
"""
    write_files(app, {"main.py": main})
    out = run_subprocess(
        [*WRAPPER, "--until-success", "main.py", "arg1", "--arg2", "-m", "arg3"], app
    )
    assert out == "main.py\nargv=['arg1', '--arg2', '-m', 'arg3']\n" * 2


def test_reload_wrapper_until_success(app: Path) -> None:
    main = """\
import os
import sys

if "TESTAPP_STARTED" in os.environ:
    print("exiting cleanly")
    sys.exit(0)
else:
    print("reloading")
    exec(open("run_twice_magic.py", encoding="utf-8").read())
"""
    write_files(app, {"main.py": main})
    out = run_subprocess([*WRAPPER, "--until-success", "main.py"], app)
    assert out == "reloading\nexiting cleanly\n"


def test_environment_changes_survive_a_reload_for_a_file_change(tmp_path: Path) -> None:
    """Not in tornado's suite, its contract: each run sees the environment the last one
    left (set, changed and removed variables), whatever caused the reload."""
    write_files(
        tmp_path,
        {
            "helper.py": "V = 1\n",
            "main.py": """\
import os, sys, time
import helper
runs = int(os.environ.get("RUNS", "0")) + 1
os.environ["RUNS"] = str(runs)
os.environ.pop("DROP_ME", None)
print(f"run {runs} V={helper.V} drop={os.environ.get('DROP_ME')}", flush=True)
time.sleep(3600)
""",
        },
    )
    proc = Proc([*WRAPPER, "main.py"], tmp_path, {"DROP_ME": "here"})
    try:
        proc.expect("run 1 V=1 drop=None")
        write(tmp_path / "helper.py", "V = 2\n")
        proc.expect("run 2 V=2 drop=None")
    finally:
        proc.close()
