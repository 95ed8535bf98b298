"""A Django app under ``relaunch serve``: what runserver does that a bare WSGI/ASGI
server does not.

:func:`prepare` is called by the serve worker with the loaded application. For a
Django project (``django.setup()`` done, as ``get_wsgi_application()`` does) it:

* (after the two below, which create the template engines, so that a checkpoint
  before a view keeps them) loads the URLconf, and so every view module it imports,
  now rather than at the first request (runserver's system checks do the same): a
  broken ``views.py`` is a load failure, with relaunch's error page, its files
  watched, and recovery after the fix, not a 500 per request;
* asks relaunch to watch the folders the project declares for templates
  (``TEMPLATES`` ``DIRS``, ``APP_DIRS``) and static files (``STATICFILES_DIRS``, each
  app's ``static/``), so an edit there refreshes open pages, with no ``-w``;
* makes Django read templates from disk at every render: Django 4.1+ keeps the
  cached loader even with ``DEBUG`` (runserver resets it on a change, a plain server
  never does), and relaunch refreshes pages on a template edit without a restart;
* serves static files as runserver does, with ``DEBUG`` and
  ``django.contrib.staticfiles``.

Anything else is returned unchanged. Django itself is imported only once the
program has imported it.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from collections.abc import Iterable
from typing import Any

import relaunch

__all__ = ["asset_folders", "is_django_project", "load_urlconf", "prepare", "read_templates_fresh"]

log = logging.getLogger(__name__)


def is_django_project() -> bool:
    """True once the program has set Django up (its app registry is ready)."""
    if "django.apps" not in sys.modules:
        return False
    from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return bool(apps.ready)


def load_urlconf() -> None:
    """Import the root URLconf and everything it includes (every view module).

    Exceptions propagate: they are the app's load failure."""
    from django.urls import get_resolver  # type: ignore[import-untyped,import-not-found,unused-ignore]

    resolver = get_resolver()
    _ = resolver.url_patterns  # imports the URLconf; include() imports the included ones


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return tuple(os.path.realpath(root) + os.sep for root in roots)


def _folders(candidates: Iterable[object], installed: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for candidate in candidates:
        path = os.path.abspath(os.fspath(candidate))  # type: ignore[call-overload]
        real = os.path.realpath(path) + os.sep
        # Django's own (admin) and other installed packages' folders are not the project's.
        if os.path.isdir(path) and not real.startswith(installed) and path not in found:
            found.append(path)
    return found


def asset_folders() -> list[str]:
    """The project's template and static folders (existing ones, not installed packages')."""
    from django.apps import apps
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.template import engines  # type: ignore[import-untyped,import-not-found,unused-ignore]

    candidates: list[object] = []
    for backend in engines.all():
        candidates.extend(backend.template_dirs)  # DIRS, and the apps' with APP_DIRS
    if "django.contrib.staticfiles" in settings.INSTALLED_APPS:
        for entry in getattr(settings, "STATICFILES_DIRS", ()):
            candidates.append(entry[1] if isinstance(entry, (list, tuple)) else entry)
        for config in apps.get_app_configs():
            candidates.append(os.path.join(config.path, "static"))
    return _folders(candidates, _installed_roots())


def read_templates_fresh() -> None:
    """Have every template engine read templates from disk at each render."""
    from django.forms.renderers import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        get_default_renderer,
    )
    from django.template import engines
    from django.template.backends.django import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        DjangoTemplates,
    )
    from django.template.loaders.cached import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        Loader as CachedLoader,
    )

    backends = list(engines.all())
    renderer_engine = getattr(get_default_renderer(), "engine", None)
    if renderer_engine is not None:
        backends.append(renderer_engine)
    for backend in backends:
        if isinstance(backend, DjangoTemplates):
            engine = backend.engine
            loaders: list[Any] = []
            for loader in engine.template_loaders:
                loaders.extend(loader.loaders if isinstance(loader, CachedLoader) else [loader])
            # template_loaders is a cached_property: this replaces its cached value.
            engine.__dict__["template_loaders"] = loaders
        else:
            env = getattr(backend, "env", None)  # Jinja2: its own cache checks mtimes when told
            if env is not None and hasattr(env, "auto_reload"):
                env.auto_reload = True


def _with_static(app: Any) -> Any:
    """runserver's static serving (DEBUG and django.contrib.staticfiles), else ``app``."""
    from django.conf import settings

    if not (settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS):
        return app
    if not getattr(settings, "STATIC_URL", None):
        return app
    from django.contrib.staticfiles.handlers import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        ASGIStaticFilesHandler,
        StaticFilesHandler,
    )
    from django.core.handlers.asgi import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        ASGIHandler,
    )
    from django.core.handlers.wsgi import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        WSGIHandler,
    )

    # Only Django's own handler: a wrapper (whitenoise) serves static files itself.
    if isinstance(app, WSGIHandler):
        return StaticFilesHandler(app)
    if isinstance(app, ASGIHandler):
        return ASGIStaticFilesHandler(app)
    return app


def prepare(app: Any) -> Any:
    """The application to serve: for a Django project, loaded, watched and served as
    runserver would; anything else unchanged. Raises what loading the URLconf raises."""
    if not is_django_project():
        return app
    # The template engines first (they import every app's template tag libraries),
    # then the views: a checkpoint before a view keeps the engines.
    folders = asset_folders()
    if folders:
        log.debug("watching Django's template and static folders: %s", ", ".join(folders))
        relaunch.watch(*folders)
    read_templates_fresh()
    load_urlconf()
    return _with_static(app)
