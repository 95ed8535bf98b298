"""The reloaders compared, as one table of commands.

Each command runs with the app directory as its working directory. Placeholders:
``{port}``, ``{python}`` (the bench venv's interpreter) and ``{bin}`` (its scripts dir).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RELOADERS", "Reloader", "command_for"]


@dataclass(frozen=True)
class Reloader:
    name: str
    command: str  # shell-like template, split with shlex before the placeholders are filled
    label: str
    needs_relaunch: bool = False


_WAITRESS_SCRIPT = "{python} serve_waitress.py {port}"

RELOADERS: dict[str, Reloader] = {
    r.name: r
    for r in (
        Reloader(
            "relaunch-warm",
            f"{{bin}}/relaunch run --restart warm -- {_WAITRESS_SCRIPT}",
            "relaunch run --restart warm + waitress",
            needs_relaunch=True,
        ),
        Reloader(
            "relaunch-cold",
            f"{{bin}}/relaunch run --restart cold -- {_WAITRESS_SCRIPT}",
            "relaunch run --restart cold + waitress",
            needs_relaunch=True,
        ),
        Reloader(
            "relaunch-serve",
            "{bin}/relaunch serve app:app --port {port}",
            "relaunch serve",
            needs_relaunch=True,
        ),
        Reloader(
            "relaunch-serve-tornado",
            "{bin}/relaunch serve tornado_app:make_app --port {port}",
            "relaunch serve (the tornado app)",
            needs_relaunch=True,
        ),
        Reloader(
            "watchfiles",
            "{bin}/watchfiles '{bin}/waitress-serve --listen=127.0.0.1:{port} app:app' .",
            "watchfiles CLI + waitress",
        ),
        Reloader(
            "uvicorn",
            "{bin}/uvicorn asgi_app:app --reload --host 127.0.0.1 --port {port}",
            "uvicorn --reload (ASGI app)",
        ),
        Reloader(
            "tornado",
            "{python} tornado_app.py {port}",
            "tornado autoreload=True",
        ),
        Reloader(
            "gunicorn",
            "{bin}/gunicorn --reload -w 1 -k sync -b 127.0.0.1:{port} app:app",
            "gunicorn --reload (sync, 1 worker)",
        ),
        Reloader(
            "werkzeug",
            "{python} serve_werkzeug.py {port}",
            "werkzeug run_simple(reloader_type='stat')",
        ),
        Reloader(
            "hupper",
            "{bin}/hupper -m waitress --listen=127.0.0.1:{port} app:app",
            "hupper + waitress",
        ),
    )
}


def command_for(reloader: Reloader, *, port: int, python: Path) -> list[str]:
    """The argv for one run of ``reloader`` on ``port``."""
    values = {"port": str(port), "python": str(python), "bin": str(python.parent)}
    return [part.format(**values) for part in shlex.split(reloader.command)]
