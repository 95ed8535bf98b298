"""The reloaders compared, as one table of commands.

Each command runs with the app directory as its working directory. Placeholders:
``{port}``, ``{python}`` (the bench venv's interpreter) and ``{bin}`` (its scripts dir).
A row may give another command for one kind of app (``by_kind``: the Django project is
served by its own ``mysite.wsgi``/``mysite.asgi`` or ``manage.py runserver``), and may
need a file only some apps have (``requires``): it is skipped, with the reason, for the
others.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RELOADERS", "Reloader", "command_for"]


@dataclass(frozen=True)
class Reloader:
    name: str
    command: str  # shell-like template, split with shlex before the placeholders are filled
    label: str
    needs_relaunch: bool = False
    by_kind: Mapping[str, str] = field(default_factory=dict)  # app kind -> its command
    requires: str = ""  # a top-level file the app must have (tornado_app.py, manage.py)


_WAITRESS_SCRIPT = "{python} serve_waitress.py {port}"
_RUNSERVER = "{python} manage.py runserver 127.0.0.1:{port}"


def _relaunch_run(restart: str) -> Reloader:
    """``relaunch run --restart RESTART``: the waitress script, or runserver for Django."""
    run = f"{{bin}}/relaunch run --restart {restart} --"
    return Reloader(
        f"relaunch-{restart}",
        f"{run} {_WAITRESS_SCRIPT}",
        f"relaunch run --restart {restart} + waitress (Django: + manage.py runserver)",
        needs_relaunch=True,
        by_kind={"django": f"{run} {_RUNSERVER}"},
    )


RELOADERS: dict[str, Reloader] = {
    r.name: r
    for r in (
        _relaunch_run("checkpoint"),
        _relaunch_run("warm"),
        _relaunch_run("cold"),
        Reloader(
            "relaunch-serve",
            "{bin}/relaunch serve app:app --port {port}",
            "relaunch serve",
            needs_relaunch=True,
            by_kind={"django": "{bin}/relaunch serve mysite.wsgi:application --port {port}"},
        ),
        Reloader(
            "relaunch-serve-tornado",
            "{bin}/relaunch serve tornado_app:make_app --port {port}",
            "relaunch serve (the tornado app)",
            needs_relaunch=True,
            requires="tornado_app.py",
        ),
        Reloader(
            "runserver-relaunch",
            f"{_RUNSERVER} --settings=mysite.settings_relaunch",
            "manage.py runserver, relaunch's integration in INSTALLED_APPS",
            needs_relaunch=True,
            requires="manage.py",
        ),
        Reloader(
            "watchfiles",
            "{bin}/watchfiles '{bin}/waitress-serve --listen=127.0.0.1:{port} app:app' .",
            "watchfiles CLI + waitress",
            by_kind={
                "django": "{bin}/watchfiles "
                "'{bin}/waitress-serve --listen=127.0.0.1:{port} mysite.wsgi:application' ."
            },
        ),
        Reloader(
            "uvicorn",
            "{bin}/uvicorn asgi_app:app --reload --host 127.0.0.1 --port {port}",
            "uvicorn --reload (ASGI app)",
            by_kind={
                "django": "{bin}/uvicorn mysite.asgi:application --reload "
                "--host 127.0.0.1 --port {port}"
            },
        ),
        Reloader(
            "runserver",
            _RUNSERVER,
            "manage.py runserver (Django's StatReloader)",
            requires="manage.py",
        ),
        Reloader(
            "tornado",
            "{python} tornado_app.py {port}",
            "tornado autoreload=True",
            requires="tornado_app.py",
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


def command_for(reloader: Reloader, *, port: int, python: Path, kind: str = "plain") -> list[str]:
    """The argv for one run of ``reloader`` on ``port``, for an app of ``kind``."""
    values = {"port": str(port), "python": str(python), "bin": str(python.parent)}
    template = reloader.by_kind.get(kind, reloader.command)
    return [part.format(**values) for part in shlex.split(template)]
