"""Find the application that ``relaunch serve APP`` names, and tell what kind it is.

APP is ``module:NAME``, ``path/to/file.py:NAME``, ``module:factory(ARGS)`` (literal
arguments, as ``flask --app`` takes them) or a bare module (its ``app`` or
``application``, else a ``create_app`` or ``make_app`` factory). NAME may be dotted.

What is found is judged by its call signature, never by a name or a flag:

* a tornado ``Application`` (any ``HTTPServerConnectionDelegate``) is served by tornado;
* a callable taking ``(scope, receive, send)`` (a coroutine function, or exactly three
  required arguments) is ASGI; one taking ``(environ, start_response)`` is WSGI;
* a callable taking no required argument is a factory, as ``flask --app`` and
  ``uvicorn --factory`` treat it: it is called once, and must return an app;
* anything else (``async def main()``, an object that is not callable) is a mistake,
  told as one sentence that says what was found.

:func:`parse` is pure and checks the syntax before anything runs; :func:`judge` is
pure but for reading signatures; :func:`load` imports.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AppError", "AppSpec", "Loaded", "Signature", "judge", "kind_of", "load", "parse"]

log = logging.getLogger("relaunch.serve")

DEFAULT_NAMES = ("app", "application")
DEFAULT_FACTORIES = ("create_app", "make_app")
WSGI_SHAPE = "a WSGI app takes (environ, start_response), an ASGI app (scope, receive, send)"


class AppError(Exception):
    """APP does not name a usable application: a user mistake, told in one line.

    ``watch``: files whose creation or change may fix it (a missing APP file).
    """

    def __init__(self, message: str, *, watch: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.watch = watch


@dataclass(frozen=True)
class AppSpec:
    """APP, parsed. ``module`` is a dotted name; ``file`` is set for the file form."""

    text: str
    module: str
    file: str | None = None
    names: tuple[str, ...] = ()  # the dotted attribute; empty: the defaults
    call: bool = False  # NAME(...) was written: call it with these arguments
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def _dotted(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else (*inner, node.attr)
    return None


def parse(text: str, *, cwd: str) -> AppSpec:
    """Parse APP without importing anything. AppError for a malformed one."""
    # A Windows drive (C:\site\app.py:app) is part of the path, not the separator.
    drive = text[:2] if len(text) > 2 and text[1] == ":" and text[2] in "/\\" else ""
    target, colon, attr = text[len(drive) :].partition(":")
    target = drive + target
    if not target:
        raise AppError(f"APP {text!r}: expected module:name or path/to/file.py:name")
    file = None
    if target.endswith(".py") or "/" in target or os.sep in target:
        file = os.path.normpath(os.path.join(cwd, target))
        module = os.path.splitext(os.path.basename(file))[0]
        if not module.isidentifier():
            raise AppError(f"APP {text!r}: {os.path.basename(file)} is not a valid module name")
    else:
        module = target
        if not all(part.isidentifier() for part in module.split(".")):
            raise AppError(f"APP {text!r}: {module!r} is not a module name")
    if colon and not attr:
        raise AppError(f"APP {text!r}: nothing after ':' (name the app, e.g. {target}:app)")
    if not attr:
        return AppSpec(text, module, file)
    try:
        node = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError:
        raise AppError(f"APP {text!r}: {attr!r} is not a name or a call") from None
    if isinstance(node, ast.Call):
        names = _dotted(node.func)
        if names is None:
            raise AppError(f"APP {text!r}: {attr!r} is not a name or a call")
        try:
            args = tuple(ast.literal_eval(a) for a in node.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except ValueError:
            raise AppError(f"APP {text!r}: a factory's arguments must be literals") from None
        if len(kwargs) != len(node.keywords):
            raise AppError(f"APP {text!r}: a factory's arguments must be literals")
        return AppSpec(text, module, file, names, True, args, kwargs)
    names = _dotted(node)
    if names is None:
        raise AppError(f"APP {text!r}: {attr!r} is not a name or a call")
    return AppSpec(text, module, file, names)


@dataclass(frozen=True)
class Signature:
    """What a callable's signature says about how it can be called."""

    required: int  # positional parameters without a default
    maximum: int  # positional parameters in all
    varargs: bool  # it takes *args
    coroutine: bool  # calling it gives a coroutine (async def, or async __call__)
    keyword_only: bool = False  # it requires a keyword-only argument: no server passes one
    params: tuple[str, ...] = ()


def judge(sig: Signature | None) -> str:
    """ "asgi", "wsgi", "factory" or "none", from a signature; pure.

    None (a signature Python cannot tell, as for some builtins) is taken as WSGI, the
    older and commoner protocol."""
    if sig is None:
        return "wsgi"
    if sig.keyword_only:
        return "none"
    if sig.varargs and sig.required <= 3:
        # A wrapper (*args, **kwargs) that did not keep the signature: only a
        # coroutine says ASGI.
        return "asgi" if sig.coroutine else "wsgi"
    if sig.required == 0:
        return "none" if sig.coroutine else "factory"
    if sig.required <= 3 <= sig.maximum and (sig.coroutine or sig.required == 3):
        return "asgi"
    if sig.required <= 2 <= sig.maximum and not sig.coroutine:
        return "wsgi"
    return "none"


def _signature(obj: Any) -> Signature | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is p.empty]
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj).__call__
    coroutine = inspect.iscoroutinefunction(obj) or (
        not inspect.isclass(obj) and inspect.iscoroutinefunction(call)
    )
    return Signature(
        required=len(required),
        maximum=len(positional),
        varargs=any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()),
        coroutine=coroutine,
        keyword_only=any(
            p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in sig.parameters.values()
        ),
        params=tuple(str(p) for p in sig.parameters.values()),
    )


def _is_tornado(obj: Any) -> bool:
    if "tornado.httputil" not in sys.modules:  # only a program that imported tornado has one
        return False
    from .tornado_app import is_tornado_app

    return is_tornado_app(obj)


def describe(obj: Any) -> str:
    """What ``obj`` is, in a few words, for an error message."""
    if inspect.ismodule(obj):
        return "a module"
    if not callable(obj):
        shown = repr(obj)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        name = type(obj).__name__
        return f"{'an' if name[:1] in 'aeiouAEIOU' else 'a'} {name} ({shown})"
    sig = _signature(obj)
    what = (
        "a class"
        if inspect.isclass(obj)
        else "a coroutine function"
        if (sig is not None and sig.coroutine)
        else "a callable"
    )
    if sig is None:
        return what
    return f"{what} taking ({', '.join(sig.params)})"


def kind_of(obj: Any) -> str:
    """ "tornado", "asgi", "wsgi", "factory" or "none" for this object."""
    if _is_tornado(obj):
        return "tornado"
    if inspect.ismodule(obj) or not callable(obj):
        return "none"
    return judge(_signature(obj))


@dataclass(frozen=True)
class Loaded:
    app: Any
    kind: str  # "wsgi", "asgi" or "tornado"
    name: str  # what was found, e.g. "app:create_app()"


def _import(spec: AppSpec) -> Any:
    if spec.file is not None:
        if not os.path.isfile(spec.file):
            raise AppError(f"APP {spec.text!r}: no such file: {spec.file}", watch=(spec.file,))
        loaded = getattr(sys.modules.get(spec.module), "__file__", None)
        if loaded and os.path.abspath(loaded) != spec.file:
            raise AppError(
                f"APP {spec.text!r}: the name {spec.module!r} is taken by {loaded}, "
                "already imported: rename the file"
            )
        # Import it by name from its folder, as `python file.py` would find its siblings.
        sys.path.insert(0, os.path.dirname(spec.file))
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        parts = spec.module.split(".")
        if exc.name not in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise  # the app's own import of something missing: its traceback tells
        raise AppError(f"APP {spec.text!r}: no module named {exc.name!r}") from exc


def _lookup(module: Any, names: tuple[str, ...]) -> Any:
    obj = module
    for part in names:
        obj = getattr(obj, part)
    return obj


def load(spec: AppSpec) -> Loaded:
    """Import the module, find the app, call a factory. AppError for a mistake in APP;
    the app's own exceptions (at import, in the factory) propagate."""
    module = _import(spec)
    if spec.names:
        candidates = [spec.names]
    else:
        candidates = [(n,) for n in (*DEFAULT_NAMES, *DEFAULT_FACTORIES)]
    for names in candidates:
        try:
            obj = _lookup(module, names)
        except AttributeError:
            continue
        return _resolve(spec, ".".join(names), obj)
    wanted = " or ".join(repr(n[0]) for n in candidates)
    raise AppError(f"APP {spec.text!r}: module {spec.module!r} has no attribute {wanted}")


def _resolve(spec: AppSpec, name: str, obj: Any) -> Loaded:
    label = f"{spec.module}:{name}"
    if spec.call:
        if not callable(obj):
            raise AppError(f"APP {spec.text!r}: {label} is {describe(obj)}: cannot call it")
        log.debug("calling the factory %s()", label)
        return _returned(spec, f"{label}()", obj(*spec.args, **spec.kwargs))
    kind = kind_of(obj)
    if kind == "factory":
        log.debug("%s takes no arguments: calling it as an app factory", label)
        return _returned(spec, f"{label}()", obj())
    if kind == "none":
        raise AppError(f"APP {spec.text!r}: {label} is {describe(obj)}, not an app: {WSGI_SHAPE}")
    return Loaded(obj, kind, label)


def _returned(spec: AppSpec, label: str, app: Any) -> Loaded:
    kind = kind_of(app)
    if kind in ("factory", "none"):
        raise AppError(
            f"APP {spec.text!r}: {label} returned {describe(app)}, not an app: {WSGI_SHAPE}"
        )
    return Loaded(app, kind, label)
