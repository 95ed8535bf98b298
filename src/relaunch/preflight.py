"""Preflight: import the new code in a throwaway process before a server is told to reload.

A production reload (gunicorn HUP, uWSGI chain reload, mod_wsgi touch) replaces
working workers with new ones; if the new code does not even import, the server
halts or serves errors. The preflight imports the application the way the server
would (``module:attr`` or a WSGI script file) in a separate interpreter, with the
server's interpreter, working folder and ``sys.path`` additions, bounded by a
timeout, and checks that the result is callable. It never starts a server: the
module is imported under its own name, not as ``__main__``, and the process is
killed (with its whole process group) when the timeout passes.

On success it also says which module files the import loaded, so a caller can
watch exactly those. Parsing and judging are pure (:func:`parse_app_spec`,
:func:`preflight_argv`, :func:`judge`); :func:`run_preflight` is the thin
process plumbing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "LOAD_LAZY",
    "MARKER",
    "SCRIPT",
    "AppSpec",
    "PreflightResult",
    "describe_failure",
    "judge",
    "parse_app_spec",
    "preflight_argv",
    "run_preflight",
    "run_probe",
]

log = logging.getLogger(__name__)

#: Starts the one line of machine-readable output a preflight script prints last; an
#: application's own prints come before it and are left alone.
MARKER = "@@relaunch-preflight@@ "

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class AppSpec:
    """What to import: a module (``pkg.app``) or a script file (``app.wsgi``), and the
    attribute that holds the WSGI callable (a name, or a call with literal arguments
    such as ``create_app()``, as gunicorn accepts)."""

    kind: str  # "module" or "script"
    target: str
    attr: str = "application"

    def __str__(self) -> str:
        return f"{self.target}:{self.attr}"


def parse_app_spec(text: str, *, default_attr: str = "application", cwd: str = ".") -> AppSpec:
    """``module:attr``, ``module`` (attr defaults), or a script file, ``path[:attr]``.

    A script is a spec whose path part names an existing file or holds a ``/``
    (``site.wsgi``, ``/srv/app.wsgi:app``); anything else is a module, so Django's
    ``mysite.wsgi`` stays a module. Raises ValueError.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty application spec")
    for candidate, attr in ((text, ""), (*text.rsplit(":", 1),) if ":" in text else ("", "")):
        if candidate and (os.sep in candidate or os.path.isfile(os.path.join(cwd, candidate))):
            if ":" in text and candidate == text and not os.path.isfile(os.path.join(cwd, text)):
                continue
            path = os.path.abspath(os.path.join(cwd, candidate))
            return AppSpec("script", path, attr or default_attr)
    module, colon, attr = text.partition(":")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"not a module:attribute application spec: {text!r}")
    if colon and not attr:
        raise ValueError(f"no attribute after ':' in {text!r}")
    return AppSpec("module", module, attr or default_attr)


# Runs in the throwaway interpreter after the application is loaded: what a framework
# imports only at the first request, and that a worker would then fail on. Django
# imports the URLconf (and so every view module) lazily; runserver's checks load it.
LOAD_LAZY = r"""
def _relaunch_load_lazy():
    if "django.apps" not in sys.modules:
        return
    from django.apps import apps
    if apps.ready:
        from django.urls import get_resolver
        get_resolver().url_patterns
"""

# Runs in the throwaway interpreter: standard library only, any Python 3.
SCRIPT = r"""
import ast, json, os, sys
def _resolve(ns, expr):
    node = ast.parse(expr, mode="eval").body
    args, kwargs = None, None
    if isinstance(node, ast.Call):
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError("not an attribute name or call: %r" % expr)
    if node.id not in ns:
        raise AttributeError("no attribute %r in the application module" % node.id)
    obj = ns[node.id]
    for name in reversed(names):
        obj = getattr(obj, name)
    if args is not None:
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise TypeError("%r is not callable (got %s)" % (expr, type(obj).__name__))
    return obj
def _main():
    kind, target, attr, paths = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    if kind == "module":
        import importlib
        ns = vars(importlib.import_module(target))
    else:
        target = os.path.abspath(target)
        ns = {"__name__": "_relaunch_preflight_script", "__file__": target}
        with open(target, "rb") as f:
            code = compile(f.read(), target, "exec")
        exec(code, ns)
    _resolve(ns, attr)
    _relaunch_load_lazy()
    files = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                    if isinstance(getattr(m, "__file__", None), str)})
    if kind == "script":
        files.append(target)
    sys.stdout.flush()
    sys.stdout.write("\n" + MARKER + json.dumps({"files": files}) + "\n")
    sys.stdout.flush()
MARKER = MARKER_TEXT
LOAD_LAZY
_main()
""".replace("MARKER_TEXT", repr(MARKER)).replace("LOAD_LAZY", LOAD_LAZY)


@dataclass(frozen=True)
class PreflightResult:
    """``ok``: the application imported and is callable. ``summary``: one line (the
    exception, or "timed out after N s"); ``output``: the full stderr (traceback);
    ``files``: module files it loaded (on success); ``info``: anything else the probe
    reported (a server's effective settings)."""

    ok: bool
    summary: str
    output: str = ""
    seconds: float = 0.0
    files: tuple[str, ...] = ()
    info: Mapping[str, object] = field(default_factory=dict)


def preflight_argv(python: str, spec: AppSpec, paths: Sequence[str] = ()) -> list[str]:
    """The command that imports ``spec`` with ``paths`` put first on ``sys.path``."""
    return [python, "-c", SCRIPT, spec.kind, spec.target, spec.attr, json.dumps(list(paths))]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def judge(returncode: int | None, stdout: str, stderr: str, *, timeout: float) -> PreflightResult:
    """What a finished (or timed-out: ``returncode`` None) preflight process means."""
    if returncode is None:
        return PreflightResult(
            False, f"timed out after {timeout:g} s (does importing it start a server?)", stderr
        )
    report: dict[str, object] = {}
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            try:
                loaded = json.loads(line[len(MARKER) :])
            except ValueError:
                continue
            if isinstance(loaded, dict):
                report = loaded
    if returncode != 0 or "files" not in report:
        summary = _last_line(stderr) or f"exited with code {returncode}"
        return PreflightResult(False, summary, stderr, info=report)
    files_value = report.pop("files")
    files = (
        tuple(f for f in files_value if isinstance(f, str)) if isinstance(files_value, list) else ()
    )
    return PreflightResult(True, "ok", stderr, files=files, info=report)


def run_probe(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> PreflightResult:
    """Run a preflight-style command (prints :data:`MARKER` + JSON with ``files`` on
    success) in its own session; kill its whole group at ``timeout``. Blocks."""
    started = time.monotonic()
    full_env = dict(env if env is not None else os.environ)
    if cwd is not None:
        full_env["PWD"] = cwd  # keep a symlinked working folder's logical name
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        code = None
    finally:
        # Whatever it started (a server after all, a pool) goes with it.
        _kill_group(proc.pid)
    result = judge(
        code,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        timeout=timeout,
    )
    return PreflightResult(
        result.ok,
        result.summary,
        result.output,
        time.monotonic() - started,
        result.files,
        result.info,
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def run_preflight(
    spec: AppSpec,
    *,
    python: str | None = None,
    cwd: str | None = None,
    paths: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> PreflightResult:
    """Import ``spec`` in a throwaway ``python`` (default: this one) in ``cwd``, with
    ``paths`` first on ``sys.path`` (the working folder is on it too, as for ``-c``).
    Blocks for at most ``timeout`` seconds (plus the kill)."""
    argv = preflight_argv(python or sys.executable, spec, paths)
    result = run_probe(argv, cwd=cwd, env=env, timeout=timeout)
    log.debug("preflight of %s: %s in %.0f ms", spec, result.summary, result.seconds * 1000)
    return result


def describe_failure(result: PreflightResult) -> str:
    """The log text for a failed preflight: the summary line, then the traceback."""
    output = result.output.rstrip()
    text = f"preflight failed: {result.summary}"
    if output and output.strip() != result.summary:
        text += "\n" + output
    return text
