"""relaunch serve's APP: parsing, signature-based kind detection, factories, mistakes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaunch.serve.appload import AppError, AppSpec, Signature, judge, kind_of, load, parse


@pytest.mark.parametrize(
    ("text", "module", "names", "call", "args", "kwargs"),
    [
        ("app", "app", (), False, (), {}),
        ("app:app", "app", ("app",), False, (), {}),
        ("pkg.web:server.app", "pkg.web", ("server", "app"), False, (), {}),
        ("pkg:create_app()", "pkg", ("create_app",), True, (), {}),
        ("pkg:create_app('dev', debug=True)", "pkg", ("create_app",), True, ("dev",),
         {"debug": True}),
    ],
)  # fmt: skip
def test_parse_module_forms(
    text: str, module: str, names: tuple[str, ...], call: bool, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:  # fmt: skip
    assert parse(text, cwd="/srv") == AppSpec(text, module, None, names, call, args, kwargs)


def test_parse_file_form_is_anchored_at_cwd() -> None:
    spec = parse("site/app.py:app", cwd="/srv")
    assert (spec.file, spec.module, spec.names) == ("/srv/site/app.py", "app", ("app",))


def test_parse_keeps_a_windows_drive_in_the_path() -> None:
    spec = parse("C:/site/app.py:create_app()", cwd="/srv")
    assert (spec.module, spec.names, spec.call) == ("app", ("create_app",), True)
    assert spec.file is not None and spec.file.endswith("C:/site/app.py")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (":app", "expected module:name"),
        ("app:", "nothing after ':'"),
        ("my-app:app", "is not a module name"),
        ("app:1x", "is not a name or a call"),
        ("app:a b", "is not a name or a call"),
        ("app:f(x)", "arguments must be literals"),
        ("app:f(**kw)", "arguments must be literals"),
        ("app:f()()", "is not a name or a call"),
        ("my-site.py:app", "not a valid module name"),
    ],
)
def test_parse_refuses_malformed_app_in_one_sentence(text: str, says: str) -> None:
    with pytest.raises(AppError, match=says):
        parse(text, cwd="/srv")


def sig(required: int, maximum: int | None = None, *, varargs: bool = False,
        coroutine: bool = False, keyword_only: bool = False) -> Signature:  # fmt: skip
    return Signature(
        required, required if maximum is None else maximum, varargs, coroutine, keyword_only
    )


@pytest.mark.parametrize(
    ("signature", "kind"),
    [
        (None, "wsgi"),  # a builtin Python cannot introspect
        (sig(2), "wsgi"),  # (environ, start_response)
        (sig(2, 3), "wsgi"),  # (environ, start_response, extra=None)
        (sig(3), "asgi"),  # (scope, receive, send), even not async
        (sig(3, coroutine=True), "asgi"),
        (sig(1, 3, coroutine=True), "asgi"),  # (scope, receive=None, send=None)
        (sig(0), "factory"),  # create_app()
        (sig(0, 1), "factory"),  # create_app(test_config=None), Flask's tutorial
        (sig(0, coroutine=True), "none"),  # async def main()
        (sig(2, coroutine=True), "none"),  # async (environ, start_response): neither
        (sig(1), "none"),  # (request)
        (sig(4), "none"),
        (sig(0, varargs=True), "wsgi"),  # a wrapper that lost the signature
        (sig(0, varargs=True, coroutine=True), "asgi"),
        (sig(2, keyword_only=True), "none"),
    ],
)
def test_judge_by_signature(signature: Signature | None, kind: str) -> None:
    assert judge(signature) == kind


def wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


async def asgi(scope: Any, receive: Any, send: Any) -> None:
    pass


async def main() -> None:
    pass


class ASGIApp:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class WSGIApp:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


def test_kind_of_real_objects() -> None:
    assert kind_of(wsgi) == "wsgi"
    assert kind_of(WSGIApp()) == "wsgi"
    assert kind_of(asgi) == "asgi"
    assert kind_of(ASGIApp()) == "asgi"
    assert kind_of(functools.partial(asgi)) == "asgi"
    assert kind_of(main) == "none"
    assert kind_of(lambda: wsgi) == "factory"
    assert kind_of(WSGIApp) == "factory"  # a class whose instances are apps
    assert kind_of(3) == "none"
    assert kind_of(sys) == "none"


def test_kind_of_real_frameworks() -> None:
    flask = pytest.importorskip("flask")
    tornado_web = pytest.importorskip("tornado.web")
    assert kind_of(flask.Flask("x")) == "wsgi"
    assert kind_of(tornado_web.Application([])) == "tornado"


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]


SHAPES = """\
calls = []

def app(environ, start_response):
    return []

def create_app(config=None):
    calls.append(config)
    return app

async def main():
    pass

def make_none():
    return None

def make_factory():
    return create_app

value = 3
"""


def test_load_finds_apps_and_calls_factories(modules: Path) -> None:
    (modules / "shapes1.py").write_text(SHAPES)
    loaded = load(parse("shapes1:app", cwd=str(modules)))
    assert (loaded.kind, loaded.name) == ("wsgi", "shapes1:app")
    loaded = load(parse("shapes1:create_app", cwd=str(modules)))
    assert (loaded.kind, loaded.name) == ("wsgi", "shapes1:create_app()")
    assert loaded.app.__name__ == "app"
    load(parse("shapes1:create_app('prod')", cwd=str(modules)))
    assert sys.modules["shapes1"].calls == [None, "prod"]  # one call per load


def test_load_without_a_name_falls_back_to_a_factory(modules: Path) -> None:
    (modules / "factoryonly.py").write_text("def create_app():\n    return lambda e, s: []\n")
    loaded = load(parse("factoryonly", cwd=str(modules)))
    assert (loaded.kind, loaded.name) == ("wsgi", "factoryonly:create_app()")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("shapes2:main", "shapes2:main is a coroutine function taking (), not an app: a WSGI "
         "app takes (environ, start_response), an ASGI app (scope, receive, send)"),
        ("shapes2:value", "shapes2:value is an int (3), not an app"),
        ("shapes2:make_none", "shapes2:make_none() returned a NoneType (None), not an app"),
        ("shapes2:make_factory", "make_factory() returned a callable taking (config=None), "
         "not an app"),
        ("shapes2:nothing", "module 'shapes2' has no attribute 'nothing'"),
        ("shapes2:value()", "shapes2:value is an int (3): cannot call it"),
        ("shapes2", "module 'shapes2' has no attribute 'app' or 'application' or 'create_app'"),
    ],
)  # fmt: skip
def test_load_mistakes_say_what_was_found(modules: Path, text: str, says: str) -> None:
    source = SHAPES if text != "shapes2" else "x = 1\n"
    (modules / "shapes2.py").write_text(source)
    with pytest.raises(AppError) as caught:
        load(parse(text, cwd=str(modules)))
    assert says in str(caught.value)


def test_missing_module_or_file_is_a_mistake_but_a_missing_import_is_not(modules: Path) -> None:
    with pytest.raises(AppError, match="no module named 'nosuchmod1'"):
        load(parse("nosuchmod1:app", cwd=str(modules)))
    with pytest.raises(AppError, match="no module named 'nosuchpkg1'"):
        load(parse("nosuchpkg1.web:app", cwd=str(modules)))
    with pytest.raises(AppError, match="no such file") as caught:
        load(parse("gone/site.py:app", cwd=str(modules)))
    assert caught.value.watch == (str(modules / "gone" / "site.py"),)
    # The app's own import of a missing module is the app's error, with its traceback.
    (modules / "needsmissing.py").write_text("import nosuchdependency1\n")
    with pytest.raises(ModuleNotFoundError):
        load(parse("needsmissing:app", cwd=str(modules)))


def test_file_whose_name_is_taken_by_an_imported_module(modules: Path) -> None:
    (modules / "site.py").write_text("app = None\n")
    with pytest.raises(AppError, match=r"the name 'site' is taken by .*: rename the file"):
        load(parse("site.py:app", cwd=str(modules)))
