"""Code that runs inside processes other than relaunch's own supervisor.

* ``bootstrap.py``: inside the program's process, before the program (run as a
  script by the program's interpreter; standard library only).
* ``zygote_server.py``: the warm-restart zygote, in the program's interpreter
  (run as a script; standard library only).
* ``forkserver.py``: the fork loop the zygote and checkpoints (parked copies of the
  program's process) share; loaded by path by both (standard library only).
* ``werkzeug_child.py``: in the program's process, loaded by path by the bootstrap
  once Werkzeug is imported (standard library only).
* ``guardian.py``: the clean-up process beside the supervisor (``-m``; standard
  library and :mod:`relaunch.oslayer` only).
* ``serve_worker.py``: the program's process under ``relaunch serve`` (``-m``; its
  server, and the ``serve/`` helpers that run in the app's process).

None of them may import relaunch's supervisor side (``tests/unit/test_layers.py``).
"""
