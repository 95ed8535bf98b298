"""What the zygote preloads, and when it must be rebuilt. Pure: no I/O.

The zygote may hold only what cannot change under the program without relaunch
noticing: modules of the standard library and installed packages (never a file in
the watch set), minus modules that proved unsafe to fork and the user's
``--no-preload`` list (a module or a whole package).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable

from ..pathtext import shown

__all__ = ["environment_change", "is_package_change", "preload_candidates", "should_rebuild"]


def _denied(name: str, deny: Collection[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in deny for i in range(1, len(parts) + 1))


def preload_candidates(
    modules: Iterable[tuple[str, str]],
    *,
    installed: Callable[[str], bool],
    deny: Collection[str] = (),
    already: Collection[str] = (),
    main: str | None = None,
) -> list[str]:
    """Module names to import in the zygote, in the order the program imported them.

    ``modules`` are (name, file) pairs the program reported; ``installed(file)`` says
    the file belongs to the standard library or an installed package (and is not
    watched); ``already`` are names the zygote has. ``main`` is the module the program
    runs with ``-m``: runpy executes it as ``__main__`` and must not find it imported
    (when it is a package, its ``__main__`` must not be imported; the package may).
    """
    seen: set[str] = set(already)
    if main:
        seen.add(f"{main}.__main__")
    out: list[str] = []
    for name, path in modules:
        if name in seen or name == "__main__" or name.startswith("_relaunch"):
            continue
        seen.add(name)
        if name == main and os.path.basename(path) != "__init__.py":
            continue
        if not installed(path) or _denied(name, deny):
            continue
        out.append(name)
    return out


def is_package_change(path: str, site_roots: Collection[str]) -> bool:
    """True for a change that means installed packages changed (pip install, uninstall):
    a ``*.dist-info``/``*.egg-info`` entry or a ``.pth`` file directly in site-packages."""
    if os.path.dirname(path) not in site_roots:
        return False
    name = os.path.basename(path)
    return name.endswith((".dist-info", ".egg-info", ".pth", ".egg-link"))


def environment_change(
    path: str, *, site_roots: Collection[str], interpreter: str | None
) -> str | None:
    """Why a change of ``path`` makes every process made before it stale, whatever it
    ran: the interpreter binary, or an installed package (pure)."""
    if interpreter is not None and path == interpreter:
        return "the Python interpreter changed"
    if is_package_change(path, site_roots):
        return "installed packages changed"
    return None


def should_rebuild(
    changed: Iterable[str],
    *,
    zygote_files: Collection[str],
    site_roots: Collection[str],
    interpreter: str | None,
) -> str | None:
    """Why the zygote must be rebuilt after these paths changed, or None."""
    for path in changed:
        if path in zygote_files:
            return f"{shown(path)} changed, and the warm-start process has it loaded"
        why = environment_change(path, site_roots=site_roots, interpreter=interpreter)
        if why:
            return why
    return None
