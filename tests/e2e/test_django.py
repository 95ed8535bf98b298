"""A real Django project (two apps, models, admin, templates, static files) under
``relaunch serve``, under ``manage.py runserver`` with relaunch's integration, and
under gunicorn with ``relaunch run``: as Django users run it."""

from __future__ import annotations

import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .djangosite import BLOG_URLS, BLOG_VIEWS, SHOP_INDEX, SHOP_VIEWS, make_site
from .harness import Proc, Relaunch, wait_until, write
from .prodharness import find_server
from .test_frameworks import run, runserver, wait_for_body
from .test_serve import Polling, free_port, get, wait_body

django = pytest.importorskip("django")

Start = Callable[..., Relaunch]
PY = sys.executable
__all__ = ["run"]  # the fixture, shared with test_frameworks


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


def serve(relaunch: Start, site: Path, *extra: str) -> tuple[Relaunch, int]:
    port = free_port()
    r = relaunch(["serve", "mysite.wsgi", "--port", str(port), *extra], site)
    return r, port


def pid_of(body: str) -> int:
    match = re.search(r"pid=(\d+)", body)
    assert match, body
    return int(match.group(1))


# -- relaunch serve -------------------------------------------------------------------


def test_serve_template_edits_show_with_django_default_cached_loader(
    site: Path, relaunch: Start
) -> None:
    """Django 4.1+ caches templates even with DEBUG: the edit must show anyway, in the
    same process, with no -w (the project's template folders are watched)."""
    r, port = serve(relaunch, site)
    pid = pid_of(wait_body(port, "shop template=1", "/shop/"))
    app_template = site / "shop" / "templates" / "shop" / "index.html"
    write(app_template, SHOP_INDEX.replace("template=1", "template=2"))
    r.expect(r"shop/index.html changed: pages refreshed, no restart needed", stream="err")
    assert pid_of(wait_body(port, "shop template=2", "/shop/")) == pid
    # The project's DIRS folder too: the base template every page extends.
    base = site / "templates" / "base.html"
    write(base, base.read_text().replace("<title>site</title>", "<title>edited base</title>"))
    assert pid_of(wait_body(port, "edited base", "/shop/")) == pid
    assert r.err.count("reload #") == 0


@pytest.mark.parametrize("app", ["mysite.wsgi", "mysite.asgi"])
def test_serve_serves_static_files_as_runserver(site: Path, relaunch: Start, app: str) -> None:
    if app.endswith("asgi"):
        pytest.importorskip("uvicorn")
    port = free_port()
    relaunch(["serve", app, "--port", str(port)], site)
    wait_body(port, "shop template=1", "/shop/")
    assert get(port, "/static/shop/shop.css") == (200, "h1 { color: rgb(255, 0, 0) }\n")
    assert get(port, "/static/blog/blog.js") == (200, "console.log('blog');\n")
    # Django's own apps' files, as runserver serves them.
    status, body = get(port, "/static/admin/css/base.css")
    assert status == 200 and "DJANGO Admin styles" in body
    assert get(port, "/static/shop/missing.css")[0] == 404


def test_serve_broken_views_is_a_load_failure_with_error_page_and_recovery(
    site: Path, relaunch: Start
) -> None:
    views = site / "shop" / "views.py"
    write(views, SHOP_VIEWS + "\ndef broken(:\n")
    r, port = serve(relaunch, site)

    def error_page(path: str = "/shop/") -> bool:
        try:
            status, body = get(port, path)
        except OSError:
            return False
        return status == 500 and "SyntaxError" in body and "views.py" in body

    # Before any request: the URLconf was loaded with the app, so the start failed.
    r.expect(r"program exited with code 1; watching the files of its traceback", stream="err")
    wait_until(error_page, what="relaunch's error page for the broken views.py")
    assert error_page("/blog/")  # every page says what is wrong, not only the broken one
    write(views, SHOP_VIEWS)
    wait_body(port, "shop template=1", "/shop/")
    # Broken again while it serves: a restart that fails, then the fix.
    write(site / "blog" / "views.py", BLOG_VIEWS + "\nimport no_such_module_here\n")
    wait_until(lambda: error_page("/blog/") or "No module named" in get(port, "/blog/")[1])
    assert "no_such_module_here" in get(port, "/shop/")[1]
    write(site / "blog" / "views.py", BLOG_VIEWS)
    wait_body(port, "posts: post", "/blog/")


# -- manage.py runserver with the integration ------------------------------------------

BLOG_APPS = """\
import os

from django.apps import AppConfig
from django.utils.autoreload import file_changed


def on_file_changed(sender, file_path, **kwargs):
    print(f"file_changed {file_path.name} pid={os.getpid()}", flush=True)
    # A receiver that handles some files itself vetoes the restart, as Django allows.
    return file_path.name == "handled.py" or None


class BlogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "blog"

    def ready(self):
        file_changed.connect(on_file_changed)
"""


def test_runserver_sends_file_changed_for_python_files_and_honours_a_veto(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    site = make_site(tmp_path, integration=True)
    (site / "blog" / "apps.py").write_text(BLOG_APPS)
    (site / "blog" / "handled.py").write_text("VALUE = 1\n")
    write(site / "blog" / "views.py", "from . import handled  # noqa: F401\n" + BLOG_VIEWS)
    port = free_port()
    p = runserver(run, site, port)
    pid = int(wait_for_body(port, r"value=1 pid=(\d+)", "/shop/").group(1))
    p.expect("Watching for file changes with RelaunchReloader", stream="err")
    # A receiver returned True: no restart, as runserver.
    mark = p.err.mark()
    write(site / "blog" / "handled.py", "VALUE = 2\n")
    p.expect(rf"file_changed handled.py pid={pid}")
    p.expect(r"handled.py changed; handled by the program", stream="err", start=mark)
    assert int(wait_for_body(port, r"value=1 pid=(\d+)", "/shop/").group(1)) == pid
    assert p.err.count(r"reload #\d+") == 0
    # No receiver handles views.py: file_changed, then the restart.
    write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 2"))
    p.expect(rf"file_changed views.py pid={pid}")
    assert int(wait_for_body(port, r"value=2 pid=(\d+)", "/shop/").group(1)) != pid
    p.expect(r"reload #1: shop/views.py changed; new process up", stream="err")


def test_runserver_template_edit_shows_without_restart(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    site = make_site(tmp_path, integration=True)
    port = free_port()
    p = runserver(run, site, port)
    pid = int(wait_for_body(port, r"template=1</h1>\s*<p>value=1 pid=(\d+)", "/shop/").group(1))
    write(
        site / "shop" / "templates" / "shop" / "index.html",
        SHOP_INDEX.replace("template=1", "template=2"),
    )
    wait_for_body(port, "template=2", "/shop/")
    assert int(wait_for_body(port, r"pid=(\d+)", "/shop/").group(1)) == pid
    assert get(port, "/static/shop/shop.css")[0] == 200
    assert p.err.count(r"reload #\d+") == 0


SLOW_VIEWS = (
    SHOP_VIEWS
    + """

def slow(request):
    import time

    from django.http import HttpResponse

    print("slow view started", flush=True)
    time.sleep(1.5)
    return HttpResponse(f"slow value={VALUE} pid={os.getpid()}")
"""
)

SLOW_URLS = """\
from django.urls import path

from . import views

app_name = "shop"
urlpatterns = [path("", views.index, name="index"), path("slow/", views.slow, name="slow")]
"""


def test_runserver_keeps_its_socket_no_request_fails_and_one_in_flight_finishes(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    """runserver under relaunch serves on the socket relaunch keeps: across reloads
    (forked from a checkpoint) no connection is refused or fails, and a request in
    flight at a reload is answered by the old process, while the new one serves."""
    site = make_site(tmp_path, integration=True)
    (site / "shop" / "urls.py").write_text(SLOW_URLS)
    write(site / "shop" / "views.py", SLOW_VIEWS)
    port = free_port()
    p = runserver(run, site, port, "--verbosity", "2")
    first = pid_of(wait_for_body(port, r"value=1 pid=\d+", "/shop/").group(0))
    p.expect(r"keeping the listening socket tcp/\d+ 127\.0\.0\.1 \d+ across restarts", stream="err")
    slow: list[tuple[int, str]] = []
    asker = threading.Thread(target=lambda: slow.append(get(port, "/shop/slow/")))
    with Polling(port, "/shop/") as polling:
        for n in (2, 3, 4):
            if n == 3:
                asker.start()
                p.expect("slow view started")
            write(site / "shop" / "views.py", SLOW_VIEWS.replace("VALUE = 1", f"VALUE = {n}"))
            wait_for_body(port, rf"value={n} pid=\d+", "/shop/")
        asker.join(timeout=30)
    assert slow and slow[0][0] == 200 and "slow value=2" in slow[0][1], slow
    assert polling.served > 10 and polling.failures == []
    p.expect(r"reload #3: shop/views.py changed", stream="err")
    # Each process is a new one: the socket was handed on, not served by one process.
    assert pid_of(get(port, "/shop/")[1]) != first
    assert p.err.count("Error: That port is already in use") == 0


# In the main thread once runserver's reloader runs there (the program's other threads
# exist by then, and keep SIGTERM open): the kernel then always gives SIGTERM to another
# thread, as it may at random, and Python runs the handler only when the main thread's
# wait between two looks ends.
SIGTERM_TO_ANOTHER_THREAD = """
import signal
from django.utils.autoreload import autoreload_started

def _block_sigterm_here(sender, **kwargs):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

autoreload_started.connect(_block_sigterm_here)
"""


def test_runserver_stopped_for_a_reload_serves_no_more_whichever_thread_gets_sigterm(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    """Once a reload's new code has served, the old process answers no request: it
    stopped accepting when relaunch told it to stop, not only once its main thread ran
    the SIGTERM handler (up to a second later when the signal went to another thread:
    meanwhile it served the old code beside the new, and kept the port)."""
    site = make_site(tmp_path, integration=True)
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + SIGTERM_TO_ANOTHER_THREAD)
    port = free_port()
    p = runserver(run, site, port, "--verbosity", "2")
    wait_for_body(port, r"value=1 pid=\d+", "/shop/")
    p.expect(r"keeping the listening socket", stream="err")
    for n in (2, 3, 4):
        write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", f"VALUE = {n}"))
        seen: list[str] = []
        deadline, new_since = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            try:
                _status, body = get(port, "/shop/")
            except OSError:
                continue
            found = re.search(r"value=(\d+) pid=\d+", body)
            assert found, body
            seen.append(found.group(0))
            if int(found.group(1)) == n and new_since is None:
                new_since = time.monotonic()
            if new_since is not None and time.monotonic() > new_since + 1.5:
                break  # past the old process's wait between two looks
        assert new_since is not None, seen
        first_new = next(i for i, s in enumerate(seen) if s.startswith(f"value={n} "))
        stale = [s for s in seen[first_new:] if not s.startswith(f"value={n} ")]
        assert stale == [], seen[first_new - 1 : first_new + 5]
    assert p.err.count("Error: That port is already in use") == 0


def test_runserver_whose_new_code_fails_refuses_then_serves_the_fix(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    """When the new code cannot start, relaunch lets go of the kept socket: clients are
    refused, as without relaunch, rather than left waiting; the fix binds it again."""
    site = make_site(tmp_path, integration=True)
    port = free_port()
    p = runserver(run, site, port, "--verbosity", "2")
    wait_for_body(port, r"value=1 pid=\d+", "/shop/")
    write(site / "shop" / "views.py", SHOP_VIEWS + "\nVALUE = (\n")
    p.expect(r"SyntaxError", stream="err")
    p.expect(r"let go of the listening socket .*: its new process failed", stream="err")

    def refused() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                return False
        except ConnectionRefusedError:
            return True

    wait_until(refused)
    write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 2"))
    wait_for_body(port, r"value=2 pid=\d+", "/shop/")
    assert p.err.count("keeping the listening socket") == 2


# -- gunicorn under relaunch run: the preflight loads the URLconf ----------------------

GUNICORN = find_server("gunicorn")
DJANGO_PATH = str(Path(django.__file__).parent.parent)


@pytest.mark.skipif(GUNICORN is None, reason="gunicorn is not installed")
def test_gunicorn_preflight_refuses_a_broken_views_module(site: Path, relaunch: Start) -> None:
    port = free_port()
    assert GUNICORN is not None
    proc = relaunch(
        ["run", "--", GUNICORN, "-w", "2", "-b", f"127.0.0.1:{port}", "mysite.wsgi"],
        site,
        # The servers' interpreter has no Django: it finds this one's.
        env={"XDG_RUNTIME_DIR": str(site), "PYTHONPATH": DJANGO_PATH},
    )
    # Each worker imports the views at its first request, from whatever is on disk then:
    # let both have served before breaking the code.
    pids: set[int] = set()
    wait_until(lambda: pids.add(pid_of(wait_body(port, "value=1", "/shop/"))) or len(pids) == 2)
    views = site / "shop" / "views.py"
    mark = proc.err.mark()
    write(views, SHOP_VIEWS.replace("VALUE = 1", "VALUE = (") + "\n")
    proc.expect(r"preflight failed: .*SyntaxError", stream="err", start=mark, timeout=60)
    # Refused: every worker still serves the previous version, no 500s.
    for _ in range(10):
        assert "value=1" in get(port, "/shop/")[1]
    write(views, SHOP_VIEWS.replace("VALUE = 1", "VALUE = 3"))
    proc.expect(r"reload #\d+: .*graceful", stream="err", start=mark, timeout=60)
    wait_body(port, "value=3", "/shop/")


def test_serve_prints_djangos_log_lines_once(site: Path, relaunch: Start) -> None:
    r, port = serve(relaunch, site)
    wait_body(port, "shop template=1", "/shop/")
    assert get(port, "/first-missing")[0] == 404
    assert get(port, "/second-missing")[0] == 404
    # Django's logger writes both; a duplicate of the first would come before the second.
    r.expect("Not Found: /second-missing", stream="err")
    assert r.err.count("Not Found: /first-missing") == 1, r.output()


def test_preflight_loads_the_urlconf_of_a_django_application(site: Path) -> None:
    """The throwaway import uWSGI, mod_wsgi and ``relaunch watch --preflight`` use."""
    from relaunch.preflight import AppSpec, run_preflight

    spec = AppSpec("module", "mysite.wsgi", "application")
    good = run_preflight(spec, cwd=str(site), timeout=60)
    assert good.ok, good.output
    assert str(site / "shop" / "views.py") in good.files  # watched from the first reload
    write(site / "blog" / "views.py", BLOG_VIEWS + "\ndef broken(:\n")
    bad = run_preflight(spec, cwd=str(site), timeout=60)
    assert not bad.ok and "SyntaxError" in bad.summary, bad


# -- runserver's checks, run early (relaunch.integrations.django.early) ----------------

CHECKS_SCRIPT = """\
import json, os, sys
import django

os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
django.setup()
from django.core import checks
from django.urls import resolvers

reran = []
after = [a for a in sys.argv[2:] if not a.startswith("pkg:")]  # code run after "K"
if sys.argv[1] == "early":
    from relaunch.integrations.django import devserver, early, urlchecks

    for stand_in in early.check_models_early():
        def counted(*args, _check=stand_in.check, _name=stand_in.__name__, **kwargs):
            reran.append(_name)
            return _check(*args, **kwargs)

        stand_in.check = counted
    early.import_migrations_early()
    urlchecks.install()
    devserver.load_urlconf()
    urlchecks.check_kept_patterns()  # as a checkpoint parked here does
    for arg in sys.argv[2:]:  # written after the early checks (a package each)
        if arg.startswith("pkg:"):
            path = arg[len("pkg:"):]
            os.makedirs(path, exist_ok=True)
            for name in ("__init__.py", "tags.py"):
                with open(os.path.join(path, name), "w") as f:
                    f.write("from django import template\\nregister = template.Library()\\n")
else:  # Django's own run, every check after the URLconf (its own order is a set's)
    from django.urls import get_resolver

    get_resolver().url_patterns
for code in after:  # what code run after the checkpoint does (both runs do it)
    exec(code)
# The URL patterns Django's own check looks at (not one given the kept messages).
checked_patterns = []
callback_check = resolvers.URLPattern._check_callback
def _counted(self):
    checked_patterns.append(str(self.pattern))
    return callback_check(self)
resolvers.URLPattern._check_callback = _counted
import re  # an object's address differs between two processes

messages = sorted(
    re.sub(" at 0x[0-9a-f]+", "", f"{m.id} {m.obj} {m.msg}") for m in checks.run_checks()
)
print(json.dumps({"messages": messages, "reran": sorted(reran), "checked": checked_patterns}))
"""

# A model warning (fields.W342) and an admin error (admin.E108) for the checks to find.
WARNED_MODEL = """\
from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    owner = models.ForeignKey("auth.User", on_delete=models.CASCADE, unique=True)
"""

BROKEN_ADMIN_IN_URLCONF = """\
from django.contrib import admin
from shop.models import Product


class BrokenAdmin(admin.ModelAdmin):
    list_display = ["no_such_field"]


admin.site.unregister(Product)
admin.site.register(Product, BrokenAdmin)
"""


def run_script(site: Path, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` in the project with ``args``; what its last line says (JSON)."""
    import json
    import subprocess

    done = subprocess.run(
        [PY, "-c", script, *args], cwd=site, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def as_djangos(site: Path, after: str) -> dict[str, Any]:
    """runserver's checks under relaunch with ``after`` run once the URLconf loaded (as
    by code run after a checkpoint), having found Django's own run's messages."""
    ours = run_checks(site, "early", after)
    assert ours["messages"] == run_checks(site, "django", after)["messages"], ours
    return ours


def run_checks(site: Path, how: str, *after: str) -> dict[str, Any]:
    """The checks' messages, in Django's own run or runserver's under relaunch; each of
    ``after`` (``pkg:PATH``, a tag library package to create, or code to run) is done
    once the URLconf loaded, as by code run after a checkpoint."""
    return run_script(site, CHECKS_SCRIPT, how, *after)


TAGS = "from django import template\n\nregister = template.Library()\n"


def test_the_early_template_check_finds_what_djangos_own_run_finds(site: Path) -> None:
    """Two apps with a tag library of the same name: the template check's warning, from
    the early run as from Django's own. A tag library package created after the early
    checks (here, in the same process) has the template check run again."""
    for app in ("shop", "blog"):
        (site / app / "templatetags").mkdir()
        (site / app / "templatetags" / "__init__.py").write_text("")
        (site / app / "templatetags" / "tags.py").write_text(TAGS)
    djangos = run_checks(site, "django")
    ours = run_checks(site, "early")
    assert any("templates.W003" in m for m in djangos["messages"]), djangos
    assert ours["messages"] == djangos["messages"] and ours["reran"] == []
    # Another app's tag library, created once the early checks ran: found.
    shutil.rmtree(site / "shop" / "templatetags")
    assert not any("templates.W003" in m for m in run_checks(site, "early")["messages"])
    later = run_checks(site, "early", f"pkg:{site / 'shop' / 'templatetags'}")
    assert any("templates.W003" in m for m in later["messages"]), later
    assert "check_templates" in later["reran"] or (
        "check_for_template_tags_with_the_same_name" in later["reran"]
    )


DROP_MESSAGES_MIDDLEWARE = (
    "from django.conf import settings\n"
    "settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if 'messages' not in m]"
)


def test_the_early_settings_checks_find_what_djangos_own_run_finds(site: Path) -> None:
    """The checks of the settings (the admin's dependencies, the static file finders...)
    run early give Django's messages; a setting changed after them (as the URLconf or a
    view might), or a folder a setting names created since, has them run again."""
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + '\nSTATICFILES_DIRS = [BASE_DIR / "assets"]\n')
    djangos = run_checks(site, "django")
    ours = run_checks(site, "early")
    assert any("staticfiles.W004" in m for m in ours["messages"]), ours
    assert ours["messages"] == djangos["messages"] and ours["reran"] == []
    # A setting changed once the early checks ran: the admin's check finds it.
    ours = as_djangos(site, DROP_MESSAGES_MIDDLEWARE)
    assert any("admin.E409" in m for m in ours["messages"]), ours
    assert "check_dependencies" in ours["reran"]
    ours = as_djangos(
        site, "from django.conf import settings; del settings.STORAGES['staticfiles']"
    )
    assert any("staticfiles.E005" in m for m in ours["messages"]), ours
    # The folder STATICFILES_DIRS names, created once the early checks ran: no warning.
    ours = as_djangos(site, "import os; os.makedirs('assets', exist_ok=True)")
    assert not any("staticfiles.W004" in m for m in ours["messages"]), ours
    assert "check_finders" in ours["reran"]


SLASHED_BLOG_URLS = BLOG_URLS.replace(
    "urlpatterns = [", 'urlpatterns = [path("/slashed", views.PostList.as_view()), '
)
# Code run after the checkpoint that changes a kept pattern in place: the admin's index
# given a view class, not a view (urls.E009).
WRONG_ADMIN_VIEW = (
    "from django.urls import get_resolver\n"
    "from django.views import View\n"
    "get_resolver().url_patterns[0].url_patterns[0].callback = type('Wrong', (View,), {})"
)


def test_the_kept_url_patterns_get_djangos_messages_unless_changed_since(site: Path) -> None:
    """The URL patterns a checkpoint holds are checked there once: a process forked from
    it gives their messages without checking them again, and Django's own run gives the
    same. A pattern changed in place since (its view replaced), a pattern added to or
    taken out of a kept URLconf's list, or a setting the check reads, has Django check
    it again."""
    (site / "blog" / "urls.py").write_text(SLASHED_BLOG_URLS)
    djangos = run_checks(site, "django")
    ours = run_checks(site, "early")
    assert any("urls.W002" in m for m in ours["messages"]), ours
    assert ours["messages"] == djangos["messages"]
    assert ours["checked"] == [] and len(djangos["checked"]) > 20  # the admin's, and ours
    # A kept pattern's view replaced after the checkpoint: that one is checked again.
    ours = as_djangos(site, WRONG_ADMIN_VIEW)
    assert any("urls.E009" in m for m in ours["messages"]) and ours["checked"] == [""], ours
    # A pattern added to a kept URLconf's list since: its resolver is checked again.
    late = (
        "import blog.urls\nfrom django.urls import path\n"
        "blog.urls.urlpatterns.append(path('/late', blog.urls.views.PostList.as_view()))"
    )
    ours = as_djangos(site, late)
    assert sum("urls.W002" in m for m in ours["messages"]) == 2, ours
    assert ours["checked"] == ["/late"]
    # The pattern with the warning taken out of its kept list since: no warning.
    ours = as_djangos(site, "import blog.urls\nblog.urls.urlpatterns.pop(0)")
    assert not any("urls.W002" in m for m in ours["messages"]), ours
    # A kept resolver's namespace changed in place since: the namespace check sees it.
    twice = (
        "from django.urls import get_resolver\nget_resolver().url_patterns[2].namespace = 'shop'"
    )
    ours = as_djangos(site, twice)
    assert any("urls.W005" in m for m in ours["messages"]), ours
    # APPEND_SLASH turned off since: every pattern is checked again, and no W002.
    ours = as_djangos(site, "from django.conf import settings; settings.APPEND_SLASH = False")
    assert not any("urls.W002" in m for m in ours["messages"]), ours
    assert len(ours["checked"]) == len(djangos["checked"])


MIGRATIONS_SCRIPT = """\
import json, os, sys
import django

os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

if sys.argv[1] == "early":
    from relaunch.integrations.django import early

    early.import_migrations_early()
if len(sys.argv) > 2:  # a migration file written after the early import
    with open(sys.argv[2], "w") as f:
        f.write(sys.argv[3])
# What runserver's migration check does.
executor = MigrationExecutor(connection)
plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
import shop.migrations

print(json.dumps({
    "disk": sorted(f"{app}.{name}" for app, name in executor.loader.disk_migrations),
    "unmigrated": sorted(executor.loader.unmigrated_apps),
    "plan": [f"{migration.app_label}.{migration.name}" for migration, _ in plan],
    "runs": shop.migrations.RUNS,
}))
"""

# Counts its runs: importlib.reload() runs it again in the same module namespace.
COUNTING_MIGRATIONS_INIT = "RUNS = globals().get('RUNS', 0) + 1\n"

SECOND_MIGRATION = """\
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = []
"""


def run_migration_check(site: Path, how: str, *write: str) -> dict[str, Any]:
    return run_script(site, MIGRATIONS_SCRIPT, how, *write)


def test_the_migration_check_takes_what_the_early_import_found_unless_it_changed(
    site: Path,
) -> None:
    """runserver's migration check, after the early import of the migrations, finds
    what Django's own check finds, without looking at the disk again (the packages run
    once, as in a plain runserver); a migration file written after the early import is
    found, as Django's own look would (and the packages are reloaded, as Django does)."""
    import subprocess

    subprocess.run(
        [PY, "manage.py", "makemigrations", "shop"],
        cwd=site,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (site / "shop" / "migrations" / "__init__.py").write_text(COUNTING_MIGRATIONS_INIT)
    djangos = run_migration_check(site, "django")
    ours = run_migration_check(site, "early")
    assert "shop.0001_initial" in djangos["disk"] and "shop.0001_initial" in djangos["plan"]
    assert ours == djangos
    assert ours["runs"] == 1
    second = str(site / "shop" / "migrations" / "0002_more.py")
    later = run_migration_check(site, "early", second, SECOND_MIGRATION)
    assert "shop.0002_more" in later["disk"] and "shop.0002_more" in later["plan"]
    assert later["runs"] == 2  # looked again, as Django does: reloaded
    assert later == run_migration_check(site, "django") | {"runs": 2}


@pytest.mark.parametrize("urlconf_registers", [False, True])
def test_early_model_and_admin_checks_find_what_djangos_own_run_finds(
    site: Path, urlconf_registers: bool
) -> None:
    """The model and admin checks runserver runs before the URLconf give the messages
    Django's own check run gives with every check after the URLconf. When the URLconf
    registers a ModelAdmin of its own, the admin check runs again, at runserver's time,
    and finds its error; otherwise the early messages are reused. (Django runs its
    checks in a set's order: without the URLconf loaded first, its own run may check
    the admin before the URLconf registers anything, and miss the error.)"""
    (site / "shop" / "models.py").write_text(WARNED_MODEL)
    if urlconf_registers:
        urls = site / "mysite" / "urls.py"
        urls.write_text(BROKEN_ADMIN_IN_URLCONF + urls.read_text())
    djangos = run_checks(site, "django")
    ours = run_checks(site, "early")
    assert ours["messages"] == djangos["messages"]
    assert any("fields.W342" in m for m in ours["messages"]), ours
    assert any("admin.E108" in m for m in ours["messages"]) is urlconf_registers
    assert ours["reran"] == (["check_admin_app"] if urlconf_registers else [])
