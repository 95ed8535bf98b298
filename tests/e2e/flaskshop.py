"""A Flask app shaped like real ones, for the end-to-end tests: a package with an app
factory ``create_app()`` and two blueprints, each with its own ``templates/`` and
``static/`` folders (Flask's tutorial layout, plus blueprint assets)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_shop"]

INIT = """\
import logging
import os

from flask import Flask, render_template

from . import version


def create_app(test_config=None):
    app = Flask(__name__)
    print(f"app loaded pid={os.getpid()} version={version.V} "
          f"werkzeug_reloader={os.environ.get('WERKZEUG_RUN_MAIN')}", flush=True)
    from . import admin, blog

    app.register_blueprint(blog.bp)
    app.register_blueprint(admin.bp, url_prefix="/admin")

    @app.route("/")
    def index():
        return render_template("index.html", version=version.V, pid=os.getpid())

    @app.route("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.route("/log")
    def log():
        logging.getLogger("shop.tasks").warning("Task queue depth is 1")
        return "logged"

    return app
"""

BLUEPRINT = """\
from flask import Blueprint, render_template

bp = Blueprint("{name}", __name__, template_folder="templates", static_folder="static",
               static_url_path="/{name}-static")


@bp.route("/{name}")
def page():
    return render_template("{name}/page.html")
"""

PAGE = """\
<!doctype html><html><head>
<link rel="stylesheet" href="{{{{ url_for('{name}.static', filename='{name}.css') }}}}">
</head><body><h1 id="v">{name} v1</h1></body></html>
"""


def make_shop(root: Path) -> Path:
    """Write the ``shop`` package under ``root``; returns the package folder."""
    shop = root / "shop"
    (shop / "templates").mkdir(parents=True)
    (shop / "static").mkdir()
    (shop / "__init__.py").write_text(INIT)
    (shop / "version.py").write_text("V = 1\n")
    (shop / "templates" / "index.html").write_text(
        "<html><body><h1>shop {{ version }} pid={{ pid }}</h1></body></html>"
    )
    (shop / "static" / "site.css").write_text("body { margin: 0 }\n")
    for name in ("blog", "admin"):
        package = shop / name
        (package / "templates" / name).mkdir(parents=True)
        (package / "static").mkdir()
        (package / "__init__.py").write_text(BLUEPRINT.format(name=name))
        (package / "templates" / name / "page.html").write_text(PAGE.format(name=name))
        (package / "static" / f"{name}.css").write_text("h1 { color: rgb(255, 0, 0) }\n")
    return shop
