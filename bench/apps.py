"""Generate the benchmark apps and the installed 1500-module library.

Every app directory holds the same entry points, so any reloader can serve any app:

- ``msg.py``: ``VALUE = "..."``, the file the benchmark edits (the Django project's is
  ``catalog/views.py``, see ``djangoproject.py``).
- ``deps.py``: the app's heavy imports (nothing, ``biglib``, ``pandas``, ``pages`` or
  the in-project ``projlib``).
- ``app.py``: WSGI ``app``; ``asgi_app.py``: ASGI ``app``; ``tornado_app.py``: a tornado
  server with ``autoreload=True``; ``serve_waitress.py`` / ``serve_werkzeug.py``: scripts
  serving ``app:app`` on the port given as argv[1] (or ``$BENCH_PORT``).

The edited file appends one line to ``$BENCH_START_LOG`` when it is imported, so the
benchmark can count (re)starts. That file lives outside the app directory, so writing it
never triggers a reload.
"""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import djangoproject

__all__ = [
    "APPS",
    "CHECKOUT_APP",
    "AppSpec",
    "app_has",
    "ensure_biglib",
    "make_app",
    "make_checkout_app",
    "write_value",
]

BIGLIB_PACKAGES = 30
BIGLIB_MODULES_PER_PACKAGE = 50  # 30 * 50 = 1500 modules
BIGLIB_VERSION = "3"  # bump when the generated code changes, to regenerate it
PROJLIB_VERSION = "1"  # the same for the in-project copy (its cache in the bench venv)
PAGES_MODULES = 500


def _msg_source(value: str) -> str:
    return f"VALUE = {value!r}\n"


@dataclass(frozen=True)
class AppSpec:
    name: str
    deps_source: str
    description: str
    kind: str = "plain"  # "django": a Django project (reloaders.py picks its commands by kind)
    edited: str = "msg.py"  # the file the benchmark rewrites, relative to the app directory
    render: Callable[[str], str] = _msg_source  # the edited file's text for a VALUE
    # Adds the app's own files to a fresh directory, before the entry points are written.
    build: Callable[[Path], None] | None = None
    entry_points: dict[str, str] = field(default_factory=dict)  # default: _ENTRY_POINTS


CHECKOUT_APP = AppSpec(
    "checkout",
    "import pages\n\nSIZE = pages.MODULE_COUNT\n",
    f"small app importing a {PAGES_MODULES}-module pages/ package, for the git checkout test",
)

_IMPORTS_SNIPPET = """\
import os as _os
import sys as _sys
"""

# Written at the top of the edited file, which every new process of the app runs (a
# restart by any reloader, or a fork that kept the modules imported before it): each
# start is one line. In an entry point it would miss the forks that keep the entry
# point's module, and, read at import before the edited file, the pid would keep
# relaunch from parking a checkpoint there (a fork would keep the value read).
_START_LOG = """\
import os as _os
import sys as _sys

if _os.environ.get("BENCH_START_LOG"):
    with open(_os.environ["BENCH_START_LOG"], "a") as _log:
        _log.write(f"{_os.getpid()} {__name__} {' '.join(_sys.argv)}\\n")
"""

_PORT_SNIPPET = """\
def _port() -> int:
    return int(_sys.argv[1] if len(_sys.argv) > 1 else _os.environ["BENCH_PORT"])
"""

_ENTRY_POINTS: dict[str, str] = {
    "app.py": f'''\
"""WSGI app: GET / returns msg.VALUE."""
{_IMPORTS_SNIPPET}
import deps  # noqa: F401  (the heavy imports of this app)
import msg


def app(environ, start_response):
    body = msg.VALUE.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
''',
    "asgi_app.py": f'''\
"""ASGI app: GET / returns msg.VALUE."""
{_IMPORTS_SNIPPET}
import deps  # noqa: F401
import msg


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = msg.VALUE.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})
''',
    "tornado_app.py": f'''\
"""Tornado app with autoreload=True: GET / returns msg.VALUE."""
{_IMPORTS_SNIPPET}
import asyncio

import tornado.web

import deps  # noqa: F401
import msg


class Main(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(msg.VALUE)


{_PORT_SNIPPET}

def make_app() -> tornado.web.Application:
    """The same app without tornado's own reloader: what `relaunch serve` is given."""
    return tornado.web.Application([(r"/", Main)])


async def main() -> None:
    application = tornado.web.Application([(r"/", Main)], autoreload=True)
    application.listen(_port(), address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
''',
    "serve_waitress.py": f'''\
"""Serve app:app with waitress on 127.0.0.1:<argv[1] or $BENCH_PORT>."""
import os as _os
import sys as _sys

import waitress

from app import app


{_PORT_SNIPPET}

if __name__ == "__main__":
    waitress.serve(app, host="127.0.0.1", port=_port())
''',
    "serve_werkzeug.py": f'''\
"""Serve app:app with werkzeug's stat reloader on 127.0.0.1:<argv[1] or $BENCH_PORT>."""
import os as _os
import sys as _sys

from werkzeug.serving import run_simple

from app import app


{_PORT_SNIPPET}

if __name__ == "__main__":
    run_simple("127.0.0.1", _port(), app, use_reloader=True, reloader_type="stat")
''',
}


APPS: dict[str, AppSpec] = {
    spec.name: spec
    for spec in (
        AppSpec("small", "", "app.py + msg.py"),
        AppSpec(
            "big",
            "import biglib\n\nSIZE = biglib.MODULE_COUNT\n",
            f"imports the installed {BIGLIB_PACKAGES * BIGLIB_MODULES_PER_PACKAGE}-module biglib",
        ),
        AppSpec(
            "pandas",
            "import pandas\n\nFRAME = pandas.DataFrame({'a': [1, 2, 3]})\n"
            "SIZE = int(FRAME['a'].sum())\n",
            "imports pandas",
        ),
        AppSpec(
            "inproject",
            "import projlib\n\nSIZE = projlib.MODULE_COUNT\n",
            f"imports projlib, the same {BIGLIB_PACKAGES * BIGLIB_MODULES_PER_PACKAGE} modules "
            "as biglib in a package of the project (not installed)",
            build=lambda app_dir: _copy_cached(ensure_projlib(), app_dir / "projlib"),
        ),
        AppSpec(
            "django",
            "",
            djangoproject.DESCRIPTION,
            kind="django",
            edited=djangoproject.EDITED,
            render=djangoproject.views_source,
            build=lambda app_dir: _copy_cached(djangoproject.ensure_project(), app_dir),
            entry_points=djangoproject.entry_points(_ENTRY_POINTS),
        ),
    )
}


def write_value(spec: AppSpec, app_dir: Path, value: str) -> None:
    """Rewrite the app's edited file in place, the way a plain (non-atomic) editor save does."""
    with open(app_dir / spec.edited, "w") as f:
        f.write(_START_LOG + spec.render(value))


def app_has(spec: AppSpec, name: str) -> bool:
    """Whether the app's directory will hold the top-level file ``name`` (say manage.py)."""
    return name in (spec.entry_points or _ENTRY_POINTS) or (
        spec.kind == "django" and name in djangoproject.TOP_LEVEL_FILES
    )


def make_app(spec: AppSpec, app_dir: Path, value: str) -> Path:
    """Create a fresh app directory for one (reloader, app) session."""
    if app_dir.exists():
        shutil.rmtree(app_dir)
    if spec.build is not None:
        spec.build(app_dir)
    app_dir.mkdir(parents=True, exist_ok=True)
    for name, source in (spec.entry_points or _ENTRY_POINTS).items():
        (app_dir / name).write_text(source)
    if spec.kind != "django":
        (app_dir / "deps.py").write_text(
            f'"""Heavy imports: {spec.description}."""\n{spec.deps_source}'
        )
    write_value(spec, app_dir, value)
    return app_dir


def _copy_cached(source: Path, target: Path) -> None:
    # copy2 keeps the modification times, so the cached .pyc files stay valid: the unchanged
    # modules load from bytecode, as in a project whose __pycache__ is already written.
    shutil.copytree(source, target, dirs_exist_ok=True)


def make_checkout_app(app_dir: Path, value: str) -> tuple[str, str]:
    """Create the checkout app as a git repo with two commits differing in all pages.

    Returns the refs (old, new); the work tree is left at ``new``.
    """
    make_app(CHECKOUT_APP, app_dir, value)
    _write_pages(app_dir / "pages", revision=1)
    _git(app_dir, "init", "-q", "-b", "main")
    _git(app_dir, "add", "-A")
    _git(app_dir, "commit", "-q", "-m", "pages r1")
    _git(app_dir, "tag", "r1")
    _write_pages(app_dir / "pages", revision=2)
    _git(app_dir, "commit", "-q", "-am", "pages r2")
    _git(app_dir, "tag", "r2")
    return "r1", "r2"


def _write_pages(pages_dir: Path, revision: int) -> None:
    pages_dir.mkdir(exist_ok=True)
    names = [f"page_{i:03d}" for i in range(PAGES_MODULES)]
    init = "".join(f"from . import {name}\n" for name in names)
    (pages_dir / "__init__.py").write_text(f"{init}\nMODULE_COUNT = {len(names)}\n")
    for name in names:
        (pages_dir / f"{name}.py").write_text(
            f'TITLE = "{name} revision {revision}"\n\n\ndef render():\n    return TITLE\n'
        )


def _git(cwd: Path, *args: str) -> None:
    env_args = [
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run(["git", *env_args, *args], cwd=cwd, check=True)


def _cache_dir() -> Path:
    # Inside the bench venv (sys.prefix: run.py re-runs itself there), so it goes with it.
    return Path(sys.prefix) / "bench-apps"


def ensure_projlib() -> Path:
    """Generate projlib (biglib's code under another name) into the bench's cache, once.

    Each inproject session copies it into its app directory: there it is the project's
    own code, which every reloader watches and relaunch's zygote does not hold.
    """
    target = _cache_dir() / "projlib"
    marker = _cache_dir() / "projlib.version"
    version = f"{PROJLIB_VERSION}-{BIGLIB_VERSION}"
    if marker.exists() and marker.read_text() == version and target.exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    _write_biglib(target, package="projlib")
    compileall.compile_dir(target, quiet=1)
    marker.write_text(version)
    return target


def ensure_biglib() -> Path:
    """Generate biglib into this interpreter's site-packages (the bench venv), once.

    It is installed, not placed in the app, so reloaders that only watch project files
    treat it as third-party. It is byte-compiled here so every start reads .pyc files,
    as with a pip-installed library.
    """
    target = Path(sysconfig.get_paths()["purelib"]) / "biglib"
    marker = target / "_generated_version.txt"
    if marker.exists() and marker.read_text() == BIGLIB_VERSION:
        return target
    if target.exists():
        shutil.rmtree(target)
    _write_biglib(target)
    compileall.compile_dir(target, quiet=1)
    marker.write_text(BIGLIB_VERSION)
    return target


def _write_biglib(root: Path, package: str = "biglib") -> None:
    root.mkdir(parents=True)
    subpackages = [f"sub{p:02d}" for p in range(BIGLIB_PACKAGES)]
    lines = [f"from . import {sub}\n" for sub in subpackages]
    total = BIGLIB_PACKAGES * BIGLIB_MODULES_PER_PACKAGE
    (root / "__init__.py").write_text("".join(lines) + f"\nMODULE_COUNT = {total}\n")
    for sub in subpackages:
        pkg = root / sub
        pkg.mkdir()
        modules = [f"mod{m:02d}" for m in range(BIGLIB_MODULES_PER_PACKAGE)]
        (pkg / "__init__.py").write_text("".join(f"from . import {m}\n" for m in modules))
        for index, module in enumerate(modules):
            (pkg / f"{module}.py").write_text(_biglib_module(package, sub, index))


def _biglib_module(package: str, sub: str, index: int) -> str:
    previous = f"from {package}.{sub} import mod{index - 1:02d} as _previous\n" if index else ""
    base = "_previous.Service" if index else "object"
    source = textwrap.dedent(
        f'''\
        """Generated module {package}.{sub}.mod{index:02d}."""
        from __future__ import annotations

        import dataclasses
        import enum
        import typing
        #PREVIOUS#
        LIMITS = {{"name": "{sub}-{index}", "size": {index}, "tags": ("a", "b", "c")}}


        class Kind(enum.Enum):
            ALPHA = 1
            BETA = 2
            GAMMA = 3


        @dataclasses.dataclass(frozen=True)
        class Record:
            key: str
            value: int = {index}
            kind: Kind = Kind.ALPHA
            extra: typing.Optional[dict] = None

            def scaled(self, factor: int) -> int:
                return self.value * factor


        class Service({base}):
            """Holds records and answers questions about them."""

            def __init__(self, records: list[Record] | None = None) -> None:
                self.records = list(records or [])

            def add(self, record: Record) -> None:
                self.records.append(record)

            def total(self) -> int:
                return sum(r.value for r in self.records)

            def by_kind(self, kind: Kind) -> list[Record]:
                return [r for r in self.records if r.kind is kind]


        def build(n: int = 3) -> Service:
            return Service([Record(str(i), i) for i in range(n)])


        def describe(service: Service) -> str:
            return f"{{LIMITS['name']}}: {{service.total()}}"
        '''
    )
    return source.replace("#PREVIOUS#\n", previous)
