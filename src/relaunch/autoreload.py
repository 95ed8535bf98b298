"""``relaunch.autoreload``: the public name of relaunch's drop-in for ``tornado.autoreload``.

Kept here so ``from relaunch import autoreload`` and ``python -m relaunch.autoreload``
keep working: the drop-in itself (:func:`start`, :func:`wait`, :func:`watch`,
:func:`add_reload_hook`) lives in :mod:`relaunch.integrations.tornado.autoreload`, which
this module re-exports; what is here is the command-line wrapper, :func:`main`, which
hands over to relaunch's CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .integrations.tornado.autoreload import add_reload_hook, start, wait, watch, wrapper_argv

__all__ = ["add_reload_hook", "main", "start", "wait", "watch", "wrapper_argv"]


def _interpreter_flags(orig_argv: Sequence[str]) -> list[str]:
    """The flags this interpreter was started with (``-u``, ``-X dev``...), before ``-m``."""
    from .command import CommandError, parse_python_args

    try:
        invocation = parse_python_args(sys.executable, list(orig_argv[1:]))
    except CommandError:
        return []
    return list(invocation.flags) if invocation is not None else []


def main() -> None:
    """Command-line wrapper: run a script or module, re-run it whenever its source changes.

    ``python -m relaunch.autoreload -m tornado.test.runtests`` or
    ``python -m relaunch.autoreload path/to/script.py``. Unlike tornado's wrapper it
    never imports the program itself: relaunch's supervisor runs it in a child process
    and catches import-time problems (syntax errors) there, waiting for the fix.
    """
    argv, wrong = wrapper_argv(
        sys.argv[1:],
        executable=sys.executable,
        flags=_interpreter_flags(getattr(sys, "orig_argv", [])),
    )
    if wrong:
        print(argv[0], file=sys.stderr)
        sys.exit(1)
    import os
    import shutil
    import tempfile

    from .cli import main as cli_main
    from .integrations.tornado.autoreload_main import ENV_FILE_VARIABLE

    # Where each run leaves its environment for the next (see relaunch.autoreload_main).
    folder = tempfile.mkdtemp(prefix="relaunch-autoreload-")
    os.environ[ENV_FILE_VARIABLE] = os.path.join(folder, "environ")
    try:
        status = cli_main(argv)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
