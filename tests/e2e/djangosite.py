"""A Django project shaped like a real one, for the end-to-end tests.

Made by ``django-admin startproject`` and ``startapp`` (Django's own settings, with
the cached template loader Django uses by default), then filled in: two apps with
models registered in the admin, each with ``templates/<app>/`` and ``static/<app>/``,
a project ``templates/`` folder in ``DIRS``, a root URLconf that includes each app's,
views that import their models and render templates extending the project's base.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
TIMEOUT = 60

BASE_HTML = """\
<!doctype html>
<html><head><title>site</title>{% load static %}
<link rel="stylesheet" href="{% static 'shop/shop.css' %}">
</head><body>{% block content %}{% endblock %}</body></html>
"""

SHOP_MODELS = """\
from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)

    def __str__(self):
        return self.name
"""

SHOP_VIEWS = """\
import os

from django.shortcuts import render

from .models import Product

VALUE = 1


def index(request):
    context = {"value": VALUE, "pid": os.getpid(), "model": Product._meta.verbose_name}
    return render(request, "shop/index.html", context)
"""

SHOP_INDEX = """\
{% extends "base.html" %}
{% block content %}<h1 id="v">shop template=1</h1>
<p>value={{ value }} pid={{ pid }} model={{ model }}</p>{% endblock %}
"""

SHOP_URLS = """\
from django.urls import path

from . import views

app_name = "shop"
urlpatterns = [path("", views.index, name="index")]
"""

BLOG_MODELS = """\
from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField()
    published = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.title
"""

BLOG_VIEWS = """\
from django.views.generic import TemplateView

from .models import Post


class PostList(TemplateView):
    template_name = "blog/post_list.html"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "model": Post._meta.verbose_name}
"""

BLOG_URLS = """\
from django.urls import path

from . import views

app_name = "blog"
urlpatterns = [path("", views.PostList.as_view(), name="list")]
"""

ROOT_URLS = """\
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("shop/", include("shop.urls")),
    path("blog/", include("blog.urls")),
]
"""

SHOP_CSS = "h1 { color: rgb(255, 0, 0) }\n"


def admin_for(model: str) -> str:
    return (
        f"from django.contrib import admin\n\nfrom .models import {model}\n\n"
        f"admin.site.register({model})\n"
    )


def make_site(root: Path, *, integration: bool = False) -> Path:
    """Create the project in ``root / "site"``; returns that folder (manage.py's).

    ``integration``: put ``relaunch.integrations.django`` in ``INSTALLED_APPS`` (for
    ``manage.py runserver``)."""
    site = root / "site"
    site.mkdir()
    django_admin = str(BIN / "django-admin")
    subprocess.run([django_admin, "startproject", "mysite", str(site)], check=True, timeout=TIMEOUT)
    for app in ("shop", "blog"):
        subprocess.run([django_admin, "startapp", app], cwd=site, check=True, timeout=TIMEOUT)
    settings = site / "mysite" / "settings.py"
    text = settings.read_text()
    apps = '    "shop",\n    "blog",\n'
    if integration:
        apps = '    "relaunch.integrations.django",\n' + apps
    text = text.replace("INSTALLED_APPS = [\n", "INSTALLED_APPS = [\n" + apps, 1)
    text = re.sub(r"""["']DIRS["']: \[\]""", '"DIRS": [BASE_DIR / "templates"]', text)
    assert '"shop"' in text and 'BASE_DIR / "templates"' in text and "APP_DIRS" in text
    settings.write_text(text)
    (site / "mysite" / "urls.py").write_text(ROOT_URLS)
    (site / "templates").mkdir()
    (site / "templates" / "base.html").write_text(BASE_HTML)
    files = {
        "shop/models.py": SHOP_MODELS,
        "shop/admin.py": admin_for("Product"),
        "shop/views.py": SHOP_VIEWS,
        "shop/urls.py": SHOP_URLS,
        "shop/templates/shop/index.html": SHOP_INDEX,
        "shop/static/shop/shop.css": SHOP_CSS,
        "blog/models.py": BLOG_MODELS,
        "blog/admin.py": admin_for("Post"),
        "blog/views.py": BLOG_VIEWS,
        "blog/urls.py": BLOG_URLS,
        "blog/templates/blog/post_list.html": (
            '{% extends "base.html" %}{% block content %}<h1>posts: {{ model }}</h1>'
            "{% endblock %}\n"
        ),
        "blog/static/blog/blog.js": "console.log('blog');\n",
    }
    for name, content in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return site
