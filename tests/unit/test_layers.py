"""The package's layout, checked: imports point down the layers, no import cycles, no
private name crosses modules, and the code that runs inside other processes
(``relaunch/_inside/``) keeps to what it may load there.

Every module of ``src/relaunch`` is parsed with ``ast`` (nothing is imported); both
module-level imports and imports inside functions (lazy ones) are read.

Layers, low to high; a module may import from its own layer and the ones below:

0. ``base``: helpers that import nothing of relaunch above them (``oslayer``,
   ``pathtext``, ``command``, ``pycache``, ``config``, ``preflight``, ``state``,
   ``held``) and the standard-library-only code run in other processes (bootstrap,
   zygote server, Werkzeug hook, guardian), which the run layer imports
   (``installed_roots``) or runs by path.
1. ``watch``: what is watched, the events, settling.
2. ``run``: the supervisor, the child, warm restarts, releases; beside it the other
   loops built on the watch layer: ``inprocess`` (a program reloading itself) and
   ``production`` (``relaunch watch``'s monitor and actions).
3. ``api``: the public API, ``relaunch/__init__.py`` (it starts ``inprocess``).
4. ``serve`` / ``integrations``: what ``serve`` adds, the servers and frameworks, and
   the serve worker (it loads them in the app's process).
5. ``subcommands``: each builds its supervisor and wires the collaborators in.
6. ``cli``: the entry points (``cli``, ``__main__``, ``autoreload``, which hands over to
   the CLI, and ``autoreload_main``).

A cycle is any cycle of the module graph, lazy imports included: a lazy import only
hides a cycle from Python's import machinery, not from a reader. The implicit import
of a module's parent packages is not an edge (every module would then depend on
``relaunch/__init__.py``); an import written as ``from pkg import sub`` is an edge to
the submodule ``sub``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import relaunch

SRC = Path(relaunch.__file__).resolve().parent

LAYERS = ["base", "watch", "run", "api", "serve/integrations", "subcommands", "cli"]

# Module name (or package prefix, ending in ".") to layer; the longest match wins.
LAYER_OF = {
    "relaunch.oslayer": "base",
    "relaunch.pathtext": "base",
    "relaunch.command": "base",
    "relaunch.pycache": "base",
    "relaunch.config": "base",
    "relaunch.preflight": "base",
    "relaunch.state": "base",
    "relaunch.held": "base",
    "relaunch._inside": "base",
    "relaunch._inside.bootstrap": "base",
    "relaunch._inside.zygote_server": "base",
    "relaunch._inside.forkserver": "base",
    "relaunch._inside.guardian": "base",
    "relaunch._inside.werkzeug_child": "base",
    "relaunch.watch": "watch",
    "relaunch.watch.": "watch",
    "relaunch.run": "run",
    "relaunch.run.": "run",
    "relaunch.inprocess": "run",
    "relaunch.inprocess.": "run",
    "relaunch.production": "run",
    "relaunch.production.": "run",
    "relaunch": "api",
    "relaunch.serve": "serve/integrations",
    "relaunch.serve.": "serve/integrations",
    "relaunch.integrations": "serve/integrations",
    "relaunch.integrations.": "serve/integrations",
    "relaunch._inside.serve_worker": "serve/integrations",
    "relaunch.subcommands": "subcommands",
    "relaunch.subcommands.": "subcommands",
    "relaunch.cli": "cli",
    "relaunch.__main__": "cli",
    "relaunch.autoreload": "cli",
    "relaunch.autoreload_main": "cli",
}

# What relaunch may load in the program's process from the serve worker: the public
# API and the helpers that serve the app there. Anything else is the supervisor side.
CHILD_SIDE = {
    "relaunch",
    "relaunch.state",
    "relaunch.watch",  # the package alone: relaunch/__init__.py imports it for its name
    "relaunch.command",
    "relaunch.pathtext",
    "relaunch.oslayer",  # standard library only, every OS-specific call (sockets here)
    "relaunch._inside",
    "relaunch.serve",
    "relaunch.serve.accesslog",
    "relaunch.serve.asgi_handoff",
    "relaunch.serve.handoff",  # both ends of the keep-alive hand-over, stdlib + oslayer
    "relaunch.serve.appload",
    "relaunch.serve.inject",
    "relaunch.serve.tornado_app",
    "relaunch.integrations",
    "relaunch.integrations.django",
    "relaunch.integrations.django.devserver",
    "relaunch.integrations.flask",
}

# Run before and beside the program in its interpreter: standard library only.
STDLIB_ONLY = [
    "relaunch._inside.bootstrap",
    "relaunch._inside.werkzeug_child",  # loaded by path by the bootstrap
    "relaunch._inside.zygote_server",
    "relaunch._inside.forkserver",  # loaded by path by the bootstrap and the zygote
]
# ... but for the framework a hook wraps, imported only once the program has imported it.
HOOKED = {"relaunch._inside.werkzeug_child": {"werkzeug"}}
# Runs beside the supervisor (``-m``): standard library, and the OS layer, which is
# itself standard-library only (every OS-specific call lives there).
GUARDIAN = "relaunch._inside.guardian"


@dataclass(frozen=True)
class Import:
    target: str  # the relaunch module imported, or a top-level name outside relaunch
    names: tuple[str, ...]  # the names taken from it (``from x import a, b``)
    line: int
    lazy: bool  # not run when the module is imported (see _import_statements)

    def __str__(self) -> str:
        return f"line {self.line}: {self.target}" + (
            f" ({', '.join(self.names)})" * bool(self.names)
        )


def _module_names() -> dict[str, Path]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = ["relaunch", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _module_names()


def _imports(module: str) -> list[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node, lazy in _import_statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(_known(alias.name), (), node.lineno, lazy))
        else:
            source = _source(node, package)
            names = tuple(alias.name for alias in node.names)
            submodules = [n for n in names if f"{source}.{n}" in MODULES]
            for name in submodules:
                found.append(Import(f"{source}.{name}", (), node.lineno, lazy))
            rest = tuple(n for n in names if n not in submodules)
            if rest or not submodules:
                found.append(Import(_known(source), rest, node.lineno, lazy))
    return found


def _import_statements(
    node: ast.AST, lazy: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``node``, and whether it is lazy: inside a function,
    or under ``if TYPE_CHECKING:`` (never run). Module-level ``try``/``if`` blocks and
    class bodies run at import: not lazy."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, lazy
            continue
        deferred = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
            yield from _import_statements(ast.Module(body=child.body, type_ignores=[]), True)
            yield from _import_statements(ast.Module(body=child.orelse, type_ignores=[]), lazy)
            continue
        yield from _import_statements(child, lazy or deferred)


def test_lazy_means_not_run_at_import() -> None:
    tree = ast.parse(
        "import a\n"
        "try:\n    import b\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import c\n"
        "def f():\n    import d\n"
        "class K:\n    import e\n"
    )
    lazy = {node.names[0].name: is_lazy for node, is_lazy in _import_statements(tree)}
    assert lazy == {"a": False, "b": False, "c": True, "d": True, "e": False}


def _source(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _known(name: str) -> str:
    """A relaunch module's full name; anything else by its top-level name."""
    if name == "relaunch" or name.startswith("relaunch."):
        while name not in MODULES:
            name = name.rpartition(".")[0]
        return name
    return name.partition(".")[0]


IMPORTS = {module: _imports(module) for module in MODULES}


def _relaunch_imports(module: str) -> list[Import]:
    return [i for i in IMPORTS[module] if i.target in MODULES and i.target != module]


def layer_of(module: str) -> str:
    if module in LAYER_OF:
        return LAYER_OF[module]
    prefixes = [p for p in LAYER_OF if p.endswith(".") and module.startswith(p)]
    if not prefixes:
        raise AssertionError(f"{module} has no layer: add it to LAYER_OF in {__file__}")
    return LAYER_OF[max(prefixes, key=len)]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        assert layer_of(module) in LAYERS


def test_imports_point_down_the_layers() -> None:
    upward = []
    for module in MODULES:
        rank = LAYERS.index(layer_of(module))
        for imp in _relaunch_imports(module):
            if LAYERS.index(layer_of(imp.target)) > rank:
                upward.append(
                    f"{module} ({layer_of(module)}) imports {layer_of(imp.target)}: {imp}"
                )
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as the path of modules that closes it), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = todo.pop()
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, sorted(graph.get(nxt, ()))))
                path.append(nxt)
                on_path.add(nxt)
    return None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_lazy_imports_included() -> None:
    graph = {m: {i.target for i in _relaunch_imports(m)} for m in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_crossings(module: str, source: str) -> list[str]:
    """``from x import _name`` and ``x._name`` in ``module``'s ``source``, where ``x`` is
    another relaunch module."""
    package = (
        module if MODULES.get(module, Path()).name == "__init__.py" else module.rpartition(".")[0]
    )
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local dotted name -> the relaunch module it names
    crossing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _known(alias.name) in MODULES:
                    if alias.asname:
                        bound[alias.asname] = _known(alias.name)
                        continue
                    parts = alias.name.split(".")
                    for n in range(1, len(parts) + 1):
                        bound[".".join(parts[:n])] = _known(".".join(parts[:n]))
        elif isinstance(node, ast.ImportFrom):
            origin = _source(node, package)
            for alias in node.names:
                full = f"{origin}.{alias.name}"
                if full in MODULES:
                    bound[alias.asname or alias.name] = full
                elif _is_private(alias.name) and _known(origin) in set(MODULES) - {module}:
                    crossing.append(
                        f"{module}: line {node.lineno}: from {origin} import {alias.name}"
                    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = ast.unparse(node.value)
            if bound.get(base, module) != module:
                crossing.append(f"{module}: line {node.lineno}: {base}.{node.attr}")
    return crossing


def test_no_private_name_is_imported_across_modules() -> None:
    crossing = []
    for module, path in MODULES.items():
        crossing += private_crossings(module, path.read_text(encoding="utf-8"))
    assert not crossing, "private names used across modules:\n" + "\n".join(crossing)


def test_the_private_name_check_sees_both_forms() -> None:
    source = (
        "import relaunch\n"
        "from relaunch import inprocess as ip\n"
        "from ..inprocess import _build_watchset\n"
        "relaunch._channel()\n"
        "ip._helper()\n"
        "_own()\n"
    )
    assert len(private_crossings("relaunch.integrations.flask", source)) == 3


# -- relaunch/_inside/ ---------------------------------------------------------------


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def loaded_by(module: str) -> dict[str, str]:
    """The relaunch modules that running ``module`` loads, each with why: all its own
    imports (lazy ones run too), then the module-level imports of what they load, and
    every parent package on the way. Lazy imports of a dependency are not followed: the
    public API starts in-process mode lazily, which the serve worker never asks for."""
    why = {parent: f"parent package of {module}" for parent in _parents(module)}
    todo = [(imp.target, f"{module} {imp}") for imp in _relaunch_imports(module)]
    todo += [(parent, reason) for parent, reason in why.items()]
    seen: dict[str, str] = {}
    while todo:
        name, reason = todo.pop()
        if name in seen or name == module:
            continue
        seen[name] = reason
        todo += [(p, f"parent package of {name}") for p in _parents(name)]
        todo += [(i.target, f"{name} {i}") for i in _relaunch_imports(name) if not i.lazy]
    return seen


INSIDE = sorted(m for m in MODULES if m.startswith("relaunch._inside."))


def test_the_inside_modules_are_the_expected_ones() -> None:
    assert INSIDE == [
        "relaunch._inside.bootstrap",
        "relaunch._inside.forkserver",
        "relaunch._inside.guardian",
        "relaunch._inside.serve_worker",
        "relaunch._inside.werkzeug_child",
        "relaunch._inside.zygote_server",
    ]


@pytest.mark.parametrize("module", INSIDE)
def test_inside_code_loads_nothing_of_the_supervisor_side(module: str) -> None:
    supervisor_side = {m: why for m, why in loaded_by(module).items() if m not in CHILD_SIDE}
    assert not supervisor_side, f"{module} loads the supervisor side:\n" + "\n".join(
        f"{m} (via {why})" for m, why in sorted(supervisor_side.items())
    )


def _outside_stdlib(module: str) -> list[str]:
    return [
        f"{module} {imp}"
        for imp in IMPORTS[module]
        if imp.target not in MODULES
        and imp.target not in HOOKED.get(module, ())
        and imp.target not in sys.stdlib_module_names
        and imp.target != "__future__"
    ]


@pytest.mark.parametrize("module", STDLIB_ONLY)
def test_the_program_side_scripts_import_the_standard_library_only(module: str) -> None:
    # Run by file path, before the program: not even relaunch itself.
    assert _outside_stdlib(module) == []
    assert _relaunch_imports(module) == []
    hooked = [i for i in IMPORTS[module] if i.target in HOOKED.get(module, ())]
    assert all(i.lazy for i in hooked), "imported before the program did: " + ", ".join(
        str(i) for i in hooked if not i.lazy
    )


def test_guardian_imports_the_standard_library_and_the_os_layer_only() -> None:
    loaded = loaded_by(GUARDIAN)
    assert "relaunch.oslayer" in loaded
    for name in [GUARDIAN, *loaded]:
        assert _outside_stdlib(name) == [], name
    assert set(loaded) <= {
        "relaunch",
        "relaunch.state",
        "relaunch.watch",
        "relaunch._inside",
        "relaunch.oslayer",
    }


def test_the_inside_checks_catch_an_import_of_the_supervisor_side() -> None:
    # The serve worker's own imports include integrations.django, whose package loads
    # at module level: were it to import run/, the check above must see it.
    loaded = loaded_by("relaunch._inside.serve_worker")
    assert "relaunch.integrations" in loaded and "relaunch.serve.appload" in loaded
    assert "relaunch.run.child" in loaded_by("relaunch.run.supervisor")
