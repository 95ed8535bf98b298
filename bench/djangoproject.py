"""Generate the benchmark's Django project: 20 apps x 30 models, shaped like a real one.

``mysite/`` (settings, URLconf, WSGI and ASGI entry points), ``manage.py``, and 20
apps, each with ``models.py`` (30 models: foreign keys to the previous model, to the
same model of the previous app and to ``auth.User``, many-to-many fields on a third of
them, ``Meta`` options, ``__str__``), ``admin.py`` (every model registered with ``list_display``,
``search_fields``, ``list_filter``), ``apps.py``, ``urls.py`` (included from the
project's), ``views.py`` (importing its models: function views and a class-based
view), ``templates/<app>/`` and ``migrations/0001_initial.py`` (made by
``makemigrations``), with the database migrated.

GET / is ``catalog.views.index``, which returns ``catalog/views.py``'s ``VALUE`` as
text: that file is the one the benchmark rewrites. The project is generated once
into the bench venv (``makemigrations`` and ``migrate`` take a while on 600 models)
and byte-compiled, then copied into each session's app directory.
"""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

__all__ = [
    "APP_NAMES",
    "DESCRIPTION",
    "EDITED",
    "MODEL_NAMES",
    "TOP_LEVEL_FILES",
    "ensure_project",
    "entry_points",
    "views_source",
]

VERSION = "3"  # bump when the generated code changes, to regenerate the cached project

APP_NAMES = (
    "catalog",
    "orders",
    "billing",
    "shipping",
    "accounts",
    "reviews",
    "inventory",
    "support",
    "marketing",
    "blog",
    "forum",
    "events",
    "payments",
    "reports",
    "search",
    "media",
    "notifications",
    "analytics",
    "crm",
    "staff",
)
MODEL_NAMES = (
    "Item",
    "Category",
    "Tag",
    "Entry",
    "Note",
    "Attachment",
    "Comment",
    "Rating",
    "Status",
    "Event",
    "Record",
    "Team",
    "Member",
    "Invitation",
    "Preference",
    "Address",
    "Contact",
    "Document",
    "Revision",
    "Schedule",
    "Slot",
    "Ticket",
    "Message",
    "Thread",
    "Subscription",
    "Plan",
    "Price",
    "Discount",
    "Summary",
    "Archive",
)
EDITED = "catalog/views.py"
TOP_LEVEL_FILES = ("manage.py",)
DESCRIPTION = (
    f"a Django project: {len(APP_NAMES)} apps x {len(MODEL_NAMES)} models with admin; "
    f"the edited file is {EDITED}"
)

_IMPORTS = """\
import os as _os
"""


def entry_points(plain: dict[str, str]) -> dict[str, str]:
    """The top-level files every app has, for this project.

    ``app.py`` and ``asgi_app.py`` are the project's own applications under the names
    the generic rows serve (``app:app``), so gunicorn, werkzeug and hupper run on it
    unchanged. There is no ``tornado_app.py``: a Django project is no tornado app.
    Each start is logged by the edited views.py (apps.write_value), which every new
    server process runs, runserver's included.
    """
    return {
        "app.py": '"""The project\'s WSGI application as app:app."""\n'
        "from mysite.wsgi import application as app  # noqa: F401\n",
        "asgi_app.py": '"""The project\'s ASGI application as asgi_app:app."""\n'
        "from mysite.asgi import application as app  # noqa: F401\n",
        "serve_waitress.py": plain["serve_waitress.py"],
        "serve_werkzeug.py": plain["serve_werkzeug.py"],
    }


def views_source(value: str, app: str = APP_NAMES[0]) -> str:
    """An app's views.py; ``value`` is what its index view returns."""
    models = ", ".join(MODEL_NAMES)
    lookup = "".join(f'    "{m.lower()}": {m},\n' for m in MODEL_NAMES)
    first = MODEL_NAMES[0]
    return f'''\
"""Views of {app}."""
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.generic import ListView

from .models import {models}

VALUE = {value!r}

MODELS = {{
{lookup}}}


def index(request):
    return HttpResponse(VALUE, content_type="text/plain")


def summary(request):
    counts = {{name: model.objects.count() for name, model in MODELS.items()}}
    return JsonResponse({{"app": "{app}", "counts": counts}})


def detail(request, model, pk):
    obj = get_object_or_404(MODELS[model], pk=pk)
    return render(request, "{app}/detail.html", {{"object": obj, "model": model}})


class {first}ListView(ListView):
    model = {first}
    paginate_by = 25
    template_name = "{app}/{first.lower()}_list.html"

    def get_queryset(self):
        return super().get_queryset().filter(is_public=True).select_related("owner")
'''


def ensure_project() -> Path:
    """The generated project in the bench venv's cache, made once (about a minute)."""
    import django  # the bench venv has it (requirements.txt); only this app needs it

    cache = Path(sys.prefix) / "bench-apps"
    target = cache / "django"
    marker = cache / "django.version"
    version = f"{VERSION} django {django.__version__}"
    if marker.exists() and marker.read_text() == version and target.exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    _write_project(target)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # Django's own tables are created; the 20 apps' migrations are recorded as applied
    # without running them (a real migrate of 600 models on SQLite takes many minutes, as
    # each operation re-renders the related models). runserver's start then sees a
    # migrated database, as in a real project; the views the benchmark requests use no table.
    commands = [
        ["makemigrations", "--no-header"],
        *(["migrate", app] for app in ("admin", "sessions")),
        ["migrate", "--fake"],
    ]
    for command in commands:
        subprocess.run(
            [sys.executable, "manage.py", *command, "-v", "0"],
            cwd=target,
            env=env,
            check=True,
        )
    compileall.compile_dir(target, quiet=1)
    # The edited file is rewritten at each session's start: its bytecode would never be used.
    for stale in (target / EDITED).parent.glob("__pycache__/views.*.pyc"):
        stale.unlink()
    marker.write_text(version)
    return target


def _write_project(root: Path) -> None:
    files = {
        "manage.py": _MANAGE,
        "mysite/__init__.py": "",
        "mysite/settings.py": _settings(),
        "mysite/settings_relaunch.py": _SETTINGS_RELAUNCH,
        "mysite/urls.py": _root_urls(),
        "mysite/wsgi.py": _WSGI,
        "mysite/asgi.py": _ASGI,
        "templates/base.html": _BASE_HTML,
    }
    for index, app in enumerate(APP_NAMES):
        previous = APP_NAMES[index - 1] if index else None
        files.update(
            {
                f"{app}/__init__.py": "",
                f"{app}/migrations/__init__.py": "",
                f"{app}/apps.py": _app_config(app),
                f"{app}/models.py": _models(app, previous),
                f"{app}/admin.py": _admin(),
                f"{app}/urls.py": _app_urls(app),
                f"{app}/views.py": views_source(app, app),
                f"{app}/templates/{app}/detail.html": _DETAIL_HTML,
                f"{app}/templates/{app}/{MODEL_NAMES[0].lower()}_list.html": _LIST_HTML,
            }
        )
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


_MANAGE = '''\
#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
'''

_WSGI = f'''\
"""WSGI config for mysite."""
{_IMPORTS}
from django.core.wsgi import get_wsgi_application

_os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
'''

_ASGI = f'''\
"""ASGI config for mysite."""
{_IMPORTS}
from django.core.asgi import get_asgi_application

_os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
'''

_SETTINGS_RELAUNCH = '''\
"""mysite.settings with relaunch's runserver integration (README "Django")."""
from .settings import *  # noqa: F403

INSTALLED_APPS = ["relaunch.integrations.django", *INSTALLED_APPS]  # noqa: F405
'''


def _settings() -> str:
    local_apps = "".join(f'    "{app}",\n' for app in APP_NAMES)
    return f'''\
"""Settings for mysite (generated: a development configuration)."""
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "bench-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
{local_apps}]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"

TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {{
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        }},
    }},
]

WSGI_APPLICATION = "mysite.wsgi.application"

DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }}
}}

AUTH_PASSWORD_VALIDATORS = [
    {{"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"}},
    {{"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''


def _root_urls() -> str:
    # catalog last: its URLconf is mounted at the root.
    includes = "".join(f'    path("{app}/", include("{app}.urls")),\n' for app in APP_NAMES[1:])
    return f'''\
"""URL configuration for mysite."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
{includes}    path("", include("{APP_NAMES[0]}.urls")),
]
'''


def _app_config(app: str) -> str:
    return f'''\
from django.apps import AppConfig


class {app.capitalize()}Config(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "{app}"
    verbose_name = "{app.capitalize()}"
'''


def _app_urls(app: str) -> str:
    first = MODEL_NAMES[0]
    return f'''\
from django.urls import path

from . import views

app_name = "{app}"
urlpatterns = [
    path("", views.index, name="index"),
    path("summary/", views.summary, name="summary"),
    path("{first.lower()}s/", views.{first}ListView.as_view(), name="{first.lower()}-list"),
    path("<slug:model>/<int:pk>/", views.detail, name="detail"),
]
'''


def _models(app: str, previous_app: str | None) -> str:
    parts = [
        f'"""Models of {app}."""\n'
        "from django.conf import settings\n"
        "from django.db import models\n"
        "from django.urls import reverse\n"
        "\n\n"
        "class Kind(models.TextChoices):\n"
        '    DRAFT = "draft", "Draft"\n'
        '    ACTIVE = "active", "Active"\n'
        '    ARCHIVED = "archived", "Archived"\n'
    ]
    for index, name in enumerate(MODEL_NAMES):
        parts.append(_model(app, index, name, previous_app))
    return "\n".join(parts)


def _model(app: str, index: int, name: str, previous_app: str | None) -> str:
    relations = [
        "owner = models.ForeignKey(\n"
        "    settings.AUTH_USER_MODEL,\n"
        "    null=True,\n"
        "    blank=True,\n"
        "    on_delete=models.SET_NULL,\n"
        '    related_name="%(app_label)s_%(class)s_owned",\n'
        ")"
    ]
    if index:
        relations.append(
            f'parent = models.ForeignKey("{MODEL_NAMES[index - 1]}", null=True, blank=True, '
            'on_delete=models.CASCADE, related_name="children")'
        )
    if previous_app:
        relations.append(
            f'source = models.ForeignKey("{previous_app}.{name}", null=True, blank=True, '
            'on_delete=models.PROTECT, related_name="%(app_label)s_derived")'
        )
    if index % 3 == 2:
        relations.append(
            f'related = models.ManyToManyField("{MODEL_NAMES[index - 2]}", blank=True, '
            'related_name="%(class)s_related")'
        )
    if index % 10 == 0:
        relations.append(
            "watchers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, "
            'related_name="%(app_label)s_%(class)s_watched")'
        )
    fields = "\n".join(relations)
    body = textwrap.dedent(
        f'''\
        class {name}(models.Model):
            """{name} of {app}."""

            name = models.CharField(max_length=120)
            slug = models.SlugField(max_length=140, unique=True)
            description = models.TextField(blank=True)
            kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DRAFT)
            amount = models.DecimalField(max_digits=10, decimal_places=2, default=0)
            position = models.PositiveIntegerField(default={index})
            is_public = models.BooleanField(default=True)
            created = models.DateTimeField(auto_now_add=True)
            updated = models.DateTimeField(auto_now=True)
            #RELATIONS#

            class Meta:
                ordering = ["position", "name"]
                verbose_name = "{name.lower()}"
                verbose_name_plural = "{_plural(name.lower())}"
                indexes = [models.Index(fields=["kind", "created"])]

            def __str__(self):
                return self.name

            def get_absolute_url(self):
                return reverse("{app}:detail", args=["{name.lower()}", self.pk])
        '''
    )
    return "\n" + body.replace("#RELATIONS#", textwrap.indent(fields, "    ").lstrip())


def _plural(noun: str) -> str:
    if noun.endswith("y"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith("s") else "s")


def _admin() -> str:
    lines = [
        "from django.contrib import admin\n\n",
        f"from .models import {', '.join(MODEL_NAMES)}\n",
    ]
    for index, name in enumerate(MODEL_NAMES):
        raw_ids = ["owner", *(["parent"] if index else [])]
        lines.append(
            textwrap.dedent(
                f"""

                @admin.register({name})
                class {name}Admin(admin.ModelAdmin):
                    list_display = ("name", "kind", "amount", "is_public", "created")
                    list_filter = ("kind", "is_public", "created")
                    search_fields = ("name", "slug", "description")
                    prepopulated_fields = {{"slug": ("name",)}}
                    raw_id_fields = {tuple(raw_ids)!r}
                    date_hierarchy = "created"
                """
            )
        )
    return "".join(lines)


_BASE_HTML = """\
<!doctype html>
<html><head><title>{% block title %}mysite{% endblock %}</title></head>
<body>{% block content %}{% endblock %}</body></html>
"""

_DETAIL_HTML = """\
{% extends "base.html" %}
{% block title %}{{ object }}{% endblock %}
{% block content %}<h1>{{ object }}</h1><p>{{ model }}: {{ object.description }}</p>
{% endblock %}
"""

_LIST_HTML = """\
{% extends "base.html" %}
{% block content %}<ul>{% for object in object_list %}
<li><a href="{{ object.get_absolute_url }}">{{ object }}</a></li>{% endfor %}</ul>
{% endblock %}
"""
