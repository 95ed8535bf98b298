"""What the program's interpreter really is, and where its packages live.

Asked once, when relaunch starts: the answer decides which files are the program's own
(watched) and which are installed (never watched, preloaded for warm restarts).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["BOOTSTRAP", "InterpreterInfo", "interpreter_info"]

log = logging.getLogger(__name__)

BOOTSTRAP = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_inside", "bootstrap.py"
)


@dataclass(frozen=True)
class InterpreterInfo:
    executable: str | None  # the real interpreter behind a launcher (pyenv shim, py.exe...)
    roots: tuple[str, ...]  # its standard library and installed-package folders


def interpreter_info(interpreter: str) -> InterpreterInfo:
    """Ask an interpreter what it really is and where its packages live. Asked once, at start.

    Files under ``roots`` are not watched by default. Running ``executable`` instead of
    a launcher script saves the launcher's start-up on every reload (~70 ms for pyenv).
    The interpreter running relaunch (``manage.py runserver`` handing itself over) is
    asked in-process: a Python start saved on the way to the program's first start.
    """
    if shutil.which(interpreter) == sys.executable:
        from .._inside.bootstrap import installed_roots

        return InterpreterInfo(sys.executable, tuple(installed_roots()))
    try:
        out = subprocess.run(
            [interpreter, "-I", BOOTSTRAP, "--roots"], capture_output=True, timeout=30, check=True
        ).stdout
        data = json.loads(out)
        executable = data["executable"]
        roots = tuple(r for r in data["roots"] if isinstance(r, str))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        log.warning("cannot ask %s where its packages are: watching them too", interpreter)
        return InterpreterInfo(None, ())
    if not (isinstance(executable, str) and os.path.isfile(executable)):
        executable = None
    return InterpreterInfo(executable, roots)
