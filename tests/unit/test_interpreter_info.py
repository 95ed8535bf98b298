"""Unit test for relaunch.run.interpreter.interpreter_info: relaunch's own interpreter is
asked in-process (runserver's hand-over), with the answer a subprocess would give."""

from __future__ import annotations

import json
import subprocess
import sys


def test_relaunchs_own_interpreter_is_asked_in_process_with_the_same_answer() -> None:
    from relaunch.run.interpreter import BOOTSTRAP, interpreter_info

    asked = json.loads(
        subprocess.run(
            [sys.executable, "-I", BOOTSTRAP, "--roots"], capture_output=True, check=True
        ).stdout
    )
    info = interpreter_info(sys.executable)
    assert info.executable == asked["executable"]
    assert list(info.roots) == asked["roots"]
