"""Checkpoint restarts end to end: a reload forks a copy of the program parked just
before the edited file ran, and what it prints is what a cold start of the files as
they are now prints."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Proc, Relaunch, pid_alive, wait_until, write
from .test_serve import Polling, free_port, get, wait_body

Start = Callable[..., Relaunch]

# The app prints what a cold start would: the registry that modules fill at import
# (early appends at import, views too, after it), each module's value, whether an
# optional module exists. ONCE=1 (the cold reference run) exits after printing.
APP = """\
import os, sys, time
import registry
import early
{before_views}
try:
    import extra
except ImportError:
    extra = None
import views
print("state", registry.ITEMS, early.X, views.V, getattr(extra, "E", None),
      sorted(m for m in sys.modules if m in ("registry", "early", "views", "extra", "late")),
      "views", views.V, flush=True)
if os.environ.get("ONCE"):
    sys.exit(0)
time.sleep(3600)
"""

PARKED = r"checkpoint (\d+) parked before views\.py"
KEPT = r"reload #{n}: views\.py changed; kept \d+ modules; new process up in \d+ ms"


def make(root: Path, before_views: str = "") -> Path:
    (root / "app.py").write_text(APP.format(before_views=before_views))
    (root / "registry.py").write_text("ITEMS = []\n")
    (root / "early.py").write_text("import registry\nregistry.ITEMS.append('early')\nX = 1\n")
    views(root, 1)
    return root


def views(root: Path, value: int) -> None:
    write(
        root / "views.py",
        f"import registry\nregistry.ITEMS.append('views{value}')\nV = {value}\n",
    )


def cold(root: Path) -> str:
    """What ``python app.py`` prints now, without relaunch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAUNCH", "_RELAUNCH"))}
    out = subprocess.run(
        [sys.executable, "app.py"],
        cwd=root,
        env={**env, "ONCE": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return next(line for line in out.splitlines() if line.startswith("state"))


def start(relaunch: Start, root: Path, *extra: str) -> Relaunch:
    return relaunch(["run", "-v", *extra, "--", sys.executable, "app.py"], root)


def state_after(r: Relaunch, mark: int, value: int) -> str:
    """The state line printed after ``mark`` by a process that ran views.py ``value``."""
    return r.expect(rf"^state .* views {value}$", start=mark).group(0)


# Edits until one is served from a checkpoint: the zygote grows while a served app
# imports more of its libraries (at load, at the first requests), and a checkpoint
# parked before it had them is dropped once (see README, Checkpoints).
MAX_EDITS = 10


def kept(r: Proc, names: str) -> bool:
    return r.err.count(rf"reload #\d+: {names} changed; kept \d+ modules") > 0


def wait_page(port: int, needle: str, path: str = "/", *, of: Proc | None = None) -> None:
    """As test_serve.wait_body, for a server that cuts responses off when it restarts
    (runserver has no hand-over): a cut response is one more try. On a time-out, the
    output of ``of`` (the server) is shown."""
    last: list[str] = []

    def served() -> bool:
        try:
            _status, body = get(port, path)
        except (OSError, http.client.HTTPException) as exc:
            last[:] = [repr(exc)]
            return False
        last[:] = [body[:200]]
        return needle in body

    try:
        wait_until(served, what=f"{needle!r} at {path}")
    except AssertionError as exc:
        shown = f"; last: {last[0] if last else 'nothing'}"
        raise AssertionError(f"{exc}{shown}\n{of.output() if of else ''}") from None


def reach_checkpoint(r: Relaunch, root: Path) -> int:
    """Edit views.py until a checkpoint is parked before it; returns its pid. (Once the
    zygote is ready: one parked by a cold start is dropped once the zygote holds what
    it lacks.)"""
    state_after(r, 0, 1)
    r.expect(r"warm-start process \d+ ready", stream="err")
    views(root, 2)  # the first edit: views.py is hot from now on; this child parks one
    pid = int(r.expect(PARKED, stream="err").group(1))
    state_after(r, 0, 2)
    return pid


def test_second_edit_of_a_file_is_served_from_a_checkpoint_exactly(
    tmp_path: Path, relaunch: Start
) -> None:
    root = make(tmp_path)
    r = start(relaunch, root)
    reach_checkpoint(r, root)
    for value in (3, 4):
        mark = r.out.mark()
        views(root, value)
        r.expect(KEPT.format(n=value - 1), stream="err")
        assert state_after(r, mark, value) == cold(root)
    assert "views4" in cold(root) and "views3" not in cold(root)


def test_a_change_no_event_told_of_keeps_the_checkpoint_from_use(
    tmp_path: Path, relaunch: Start
) -> None:
    """A file that ran before the checkpoint changes with no event for its name: it is
    written in place through a hard link in a folder relaunch does not watch (inotify
    tells a write to the watch on the folder of the name it was opened by). The look
    at every file the checkpoints ran, while the next change settles, finds it: the
    reload does not keep the old code."""
    root = tmp_path / "app"
    root.mkdir()
    make(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.link(root / "early.py", elsewhere / "early.py")
    r = start(relaunch, root)
    reach_checkpoint(r, root)
    with open(elsewhere / "early.py", "r+") as f:  # same inode, same size
        text = f.read()
        f.seek(0)
        f.write(text.replace("X = 1", "X = 2"))
    mark = r.out.mark()
    views(root, 3)
    assert state_after(r, mark, 3) == cold(root)
    assert "X = 2" in (root / "early.py").read_text()
    r.expect(r"checkpoint before views\.py dropped: early\.py changed", stream="err")
    assert r.err.count(r"early\.py changed;") == 0  # no reload for it: no event came


def test_edit_of_a_file_run_before_the_checkpoint_falls_back_exactly(
    tmp_path: Path, relaunch: Start
) -> None:
    root = make(tmp_path)
    r = start(relaunch, root)
    reach_checkpoint(r, root)
    mark, err = r.out.mark(), r.err.mark()
    write(root / "early.py", "import registry\nregistry.ITEMS.append('early2')\nX = 2\n")
    r.expect(r"checkpoint before views\.py dropped: early\.py changed", stream="err", start=err)
    r.expect(r"reload #2: early\.py changed; new process up in", stream="err", start=err)
    assert state_after(r, mark, 2) == cold(root)
    # The new child parks a checkpoint before each hot file; the next views edit uses one.
    r.expect(PARKED, stream="err", start=err)
    mark = r.out.mark()
    views(root, 5)
    r.expect(KEPT.format(n=3), stream="err")
    assert state_after(r, mark, 5) == cold(root)


THREAD = (
    "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()"
)
SOCKET = "import socket\n_held = socket.socket()"


PID = "import os\nPID = os.getpid()"
UUID = "import uuid\nTOKEN = uuid.uuid4()"
RANDOM = "import random\nTOKEN = random.random()"


@pytest.mark.parametrize(
    ("before_views", "why"),
    [
        (THREAD, "the program had started a thread"),
        (SOCKET, "the program had opened a socket"),
        # What a cold start makes anew: a fork would keep the checkpoint's.
        (PID, r"the program had read its process id \(in app\.py\)"),
        (UUID, r"the program had read random bytes \(in app\.py\)"),
        (RANDOM, "the program had drawn random numbers"),
    ],
)
def test_no_checkpoint_after_a_thread_or_a_socket_and_still_exact(
    tmp_path: Path, relaunch: Start, before_views: str, why: str
) -> None:
    root = make(tmp_path, before_views)
    r = start(relaunch, root)
    state_after(r, 0, 1)
    views(root, 2)
    r.expect(rf"no checkpoint before views\.py: {why}$", stream="err")
    state_after(r, 0, 2)
    for value in (3, 4):
        mark = r.out.mark()
        views(root, value)
        r.expect(rf"reload #{value - 1}: views\.py changed; new process up in", stream="err")
        assert state_after(r, mark, value) == cold(root)
    assert r.err.count("kept") == 0
    assert r.err.count(rf"no checkpoint before views\.py: {why}") == 1  # said once


def test_a_new_module_makes_it_fall_back(tmp_path: Path, relaunch: Start) -> None:
    root = make(tmp_path)
    r = start(relaunch, root)
    reach_checkpoint(r, root)
    (root / "extra.py").write_text("E = 'new'\n")
    err, mark = r.err.mark(), r.out.mark()
    views(root, 3)
    r.expect(r"checkpoint before views\.py dropped: a new module appeared", stream="err")
    # (The program looked for extra.py and did not find it: its creation is a change,
    # in the batch of the views edit or in one of its own just before.)
    r.expect(
        r"reload #\d+: (extra\.py, )?views\.py changed; new process up in",
        stream="err",
        start=err,
    )
    state = state_after(r, mark, 3)
    assert state == cold(root) and " new " in state


def test_a_module_run_after_the_checkpoint_is_run_again(tmp_path: Path, relaunch: Start) -> None:
    """views imports late: an edit of late is served from the checkpoint before views."""
    root = make(tmp_path)
    (root / "late.py").write_text("L = 1\n")
    r = start(relaunch, root)
    reach_checkpoint(r, root)
    write(root / "views.py", "import registry, late\nregistry.ITEMS.append(f'v{late.L}')\nV = 9\n")
    r.expect(KEPT.format(n=2), stream="err")
    state_after(r, 0, 9)
    mark = r.out.mark()
    write(root / "late.py", "L = 2\n")
    r.expect(r"reload #3: late\.py changed; kept \d+ modules", stream="err")
    assert state_after(r, mark, 9) == cold(root)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_no_parked_process_is_left_behind(tmp_path: Path, relaunch: Start, how: str) -> None:
    root = make(tmp_path)
    r = start(relaunch, root)
    parked = reach_checkpoint(r, root)
    views(root, 3)
    r.expect(KEPT.format(n=2), stream="err")
    assert pid_alive(parked)
    if how == "stop":
        r.signal(signal.SIGTERM)
        r.wait()
    else:
        r.signal(signal.SIGKILL)
        r.wait()
    # (Killed with relaunch, it may stay a zombie of init's for a while: it runs no more.)
    wait_until(lambda: not pid_alive(parked), what=f"checkpoint {parked} to go")


@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_warm_and_cold_take_no_checkpoint(tmp_path: Path, relaunch: Start, mode: str) -> None:
    root = make(tmp_path)
    r = start(relaunch, root, "--restart", mode)
    state_after(r, 0, 1)
    for value in (2, 3, 4):
        mark = r.out.mark()
        views(root, value)
        r.expect(rf"reload #{value - 1}: views\.py changed; new process up in", stream="err")
        assert state_after(r, mark, value) == cold(root)
    assert r.err.count(r"checkpoint \d+ parked|kept \d+ modules") == 0
    assert f"{mode} restarts" in r.err.text()


FLASK_APP = """\
from flask import Flask
import catalog.models
from catalog import views

app = Flask(__name__)
app.add_url_rule("/", view_func=views.index)
"""


def test_serve_a_view_edit_from_a_checkpoint_with_no_failed_request(
    tmp_path: Path, relaunch: Start
) -> None:
    pytest.importorskip("flask")
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "__init__.py").write_text("")
    (tmp_path / "catalog" / "models.py").write_text("ITEMS = ['tea', 'cake']\n")
    (tmp_path / "catalog" / "views.py").write_text(
        "from . import models\ndef index():\n    return 'v1 ' + ','.join(models.ITEMS)\n"
    )
    (tmp_path / "app.py").write_text(FLASK_APP)
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "-v"], tmp_path)
    wait_body(port, "v1 tea,cake")
    with Polling(port) as polling:
        for n in range(2, 2 + MAX_EDITS):
            write(
                tmp_path / "catalog" / "views.py",
                "from . import models\ndef index():\n"
                f"    return 'v{n} ' + ','.join(models.ITEMS)\n",
            )
            wait_body(port, f"v{n} tea,cake")
            if n >= 4 and kept(r, r"catalog/views\.py"):
                break
        # Three reloads from a checkpoint can take less time than ten polls.
        wait_until(lambda: polling.served > 10, what="ten polls")
    r.expect(r"checkpoint \d+ parked before catalog/views\.py", stream="err")
    r.expect(
        r"reload #\d: catalog/views\.py changed; kept \d+ modules, ran \d+; new process up in",
        stream="err",
    )
    assert polling.served > 10 and polling.failures == []


@pytest.mark.parametrize("how", ["serve", "runserver"])
def test_django_view_edit_is_served_from_a_checkpoint(
    tmp_path: Path, relaunch: Start, how: str
) -> None:
    """Under ``relaunch serve`` and ``manage.py runserver`` with the integration, Django
    loads the URLconf (so the views) in the main thread before serving: a view edit is
    served from a checkpoint parked before the views."""
    pytest.importorskip("django")
    from .djangosite import SHOP_VIEWS, make_site

    site = make_site(tmp_path, integration=how == "runserver")
    port = free_port()
    if how == "serve":
        r: Proc = relaunch(["serve", "mysite.wsgi", "--port", str(port), "-v"], site)
    else:
        # --verbosity 2 makes relaunch verbose too.
        argv = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--verbosity", "2"]
        r = Proc(argv, site, {"DJANGO_RUNSERVER_HIDE_WARNING": "true"})
    try:
        wait_page(port, "value=1 ", "/shop/")
        for n in range(2, 2 + MAX_EDITS):
            write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", f"VALUE = {n}"))
            wait_page(port, f"value={n} ", "/shop/")
            if kept(r, r"shop/views\.py"):
                break
        r.expect(r"checkpoint \d+ parked before shop/views\.py", stream="err")
        r.expect(r"reload #\d: shop/views\.py changed; kept \d+ modules", stream="err")
    finally:
        r.close()


PKG_APP = """\
import os, sys, time
import pkg
from pkg.b import *  # noqa: F403
print("state", pkg.ORDER, pkg.a.X, pkg.b.Y, NAMES, "views", pkg.b.Y, flush=True)
if os.environ.get("ONCE"):
    sys.exit(0)
time.sleep(3600)
"""


def test_a_package_whose_init_imports_its_submodules(tmp_path: Path, relaunch: Start) -> None:
    """pkg/__init__ imports a then b; b reads a's attribute at import and appends to the
    package's list; the app takes b's names with ``import *``. An edit of b goes on
    from inside pkg/__init__ (a checkpoint before b); an edit of a, which ran before,
    falls back; the next edit of a goes on from a checkpoint before a."""
    (tmp_path / "app.py").write_text(PKG_APP)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("ORDER = []\nfrom . import a, b\n")
    (tmp_path / "pkg" / "a.py").write_text("from . import ORDER\nORDER.append('a')\nX = 1\n")

    def edit_b(y: int) -> None:
        write(
            tmp_path / "pkg" / "b.py",
            "from . import ORDER, a\nORDER.append('b')\n"
            f"Y = a.X * 10 + {y}\nNAMES = ['b{y}']\n__all__ = ['NAMES']\n",
        )

    def edit_a(x: int) -> None:
        write(tmp_path / "pkg" / "a.py", f"from . import ORDER\nORDER.append('a{x}')\nX = {x}\n")

    edit_b(1)
    r = start(relaunch, tmp_path)
    state_after(r, 0, 11)
    edit_b(2)
    r.expect(r"checkpoint \d+ parked before pkg/b\.py", stream="err")
    state_after(r, 0, 12)
    mark = r.out.mark()
    edit_b(3)
    r.expect(r"reload #2: pkg/b\.py changed; kept \d+ modules", stream="err")
    assert state_after(r, mark, 13) == cold(tmp_path)
    mark, err = r.out.mark(), r.err.mark()
    edit_a(2)
    r.expect(r"reload #3: pkg/a\.py changed; new process up", stream="err", start=err)
    assert state_after(r, mark, 23) == cold(tmp_path)
    r.expect(r"checkpoint \d+ parked before pkg/a\.py", stream="err", start=err)
    mark = r.out.mark()
    edit_a(3)
    r.expect(r"reload #4: pkg/a\.py changed; kept \d+ modules", stream="err")
    assert state_after(r, mark, 33) == cold(tmp_path)


def test_django_model_edit_is_served_exactly(tmp_path: Path, relaunch: Start) -> None:
    """The app registry never sees a model class twice: a model edit falls back first,
    then goes on from a checkpoint parked before the models, inside django.setup()."""
    pytest.importorskip("django")
    from .djangosite import SHOP_MODELS, make_site

    site = make_site(tmp_path)
    port = free_port()
    r = relaunch(["serve", "mysite.wsgi", "--port", str(port), "-v"], site)
    wait_body(port, "model=product", "/shop/")
    for n in range(1, 1 + MAX_EDITS):
        meta = f"\n    class Meta:\n        verbose_name = 'item {n}'\n"
        write(
            site / "shop" / "models.py",
            SHOP_MODELS.replace("\n    def __str__", meta + "\n    def __str__"),
        )
        wait_body(port, f"model=item {n}", "/shop/")
        if kept(r, r"shop/models\.py"):
            break
    r.expect(r"checkpoint \d+ parked before shop/models\.py", stream="err")
    r.expect(r"reload #\d: shop/models\.py changed; kept \d+ modules", stream="err")
    assert "already registered" not in r.err.text()


def test_a_deleted_module_that_ran_before_falls_back_as_a_cold_start_fails(
    tmp_path: Path, relaunch: Start
) -> None:
    root = make(tmp_path)
    (root / "helper.py").write_text("H = 1\n")
    write(root / "early.py", "import registry, helper\nregistry.ITEMS.append('early')\nX = 1\n")
    r = start(relaunch, root)
    reach_checkpoint(r, root)
    err = r.err.mark()  # before the unlink: its event alone may drop the checkpoint
    (root / "helper.py").unlink()
    views(root, 3)
    r.expect(r"checkpoint before views\.py dropped: helper\.py changed", stream="err", start=err)
    r.expect(r"program exited with code 1", stream="err", start=err)
    assert "ModuleNotFoundError: No module named 'helper'" in r.err.text()
    assert r.err.count(r"kept \d+ modules") == 0


HOOK_APP = """\
import os, sys, time
import relaunch
relaunch.add_reload_hook(lambda: print("hook ran in", os.getpid(), flush=True))
import views
print("state", os.getpid(), "views", views.V, flush=True)
time.sleep(3600)
"""


def test_relaunch_control_thread_is_started_again_after_the_fork(
    tmp_path: Path, relaunch: Start
) -> None:
    """A reload hook starts relaunch's control thread before the hot file: the checkpoint
    is still parked, and the process forked from it runs its hooks when stopped."""
    (tmp_path / "app.py").write_text(HOOK_APP)
    (tmp_path / "registry.py").write_text("ITEMS = []\n")
    views(tmp_path, 1)
    r = start(relaunch, tmp_path)
    state_after(r, 0, 1)
    views(tmp_path, 2)
    r.expect(PARKED, stream="err")
    state_after(r, 0, 2)
    views(tmp_path, 3)
    r.expect(KEPT.format(n=2), stream="err")
    pid = int(state_after(r, 0, 3).split()[1])
    views(tmp_path, 4)
    r.expect(rf"^hook ran in {pid}$")
    r.expect(KEPT.format(n=3), stream="err")
    state_after(r, 0, 4)


def test_runserver_broken_views_are_reported_by_django_then_fixed(tmp_path: Path) -> None:
    """The URLconf imported early, in the main thread, leaves a failure to Django's own
    checks: runserver reports it as always, and the fix is served."""
    pytest.importorskip("django")
    from .djangosite import SHOP_VIEWS, make_site

    site = make_site(tmp_path, integration=True)
    port = free_port()
    argv = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--verbosity", "2"]
    r = Proc(argv, site, {"DJANGO_RUNSERVER_HIDE_WARNING": "true"})
    try:
        wait_page(port, "value=1 ", "/shop/")
        write(site / "shop" / "views.py", SHOP_VIEWS + "\ndef broken(:\n")
        r.expect(r"SyntaxError", stream="err")
        write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 7"))
        wait_page(port, "value=7 ", "/shop/")
    finally:
        r.close()


SHOP_TAGS = """\
from django import template

register = template.Library()


@register.simple_tag
def stamp():
    return "stamp={n}"
"""


def test_django_template_tag_edit_is_served_exactly(tmp_path: Path, relaunch: Start) -> None:
    """The template engines are created before the URLconf, and with them every app's
    template tag library is imported: an edit of one goes on from a checkpoint parked
    before it, and the new tag renders."""
    pytest.importorskip("django")
    from .djangosite import SHOP_INDEX, make_site

    site = make_site(tmp_path)
    (site / "shop" / "templatetags").mkdir()
    (site / "shop" / "templatetags" / "__init__.py").write_text("")
    tags = site / "shop" / "templatetags" / "shop_tags.py"
    tags.write_text(SHOP_TAGS.format(n=1))
    index = SHOP_INDEX.replace(
        '{% extends "base.html" %}', '{% extends "base.html" %}{% load shop_tags %}'
    )
    (site / "shop" / "templates" / "shop" / "index.html").write_text(
        index.replace("</h1>", "{% stamp %}</h1>")
    )
    port = free_port()
    r = relaunch(["serve", "mysite.wsgi", "--port", str(port), "-v"], site)
    wait_body(port, "stamp=1", "/shop/")
    for n in range(2, 2 + MAX_EDITS):
        write(tags, SHOP_TAGS.format(n=n))
        wait_body(port, f"stamp={n}", "/shop/")
        if kept(r, r"shop/templatetags/shop_tags\.py"):
            break
    r.expect(r"checkpoint \d+ parked before shop/templatetags/shop_tags\.py", stream="err")


VIEWS_REGISTERING_A_BROKEN_ADMIN = """
from django.contrib import admin


class BrokenAdmin(admin.ModelAdmin):
    list_display = ["no_such_field"]


admin.site.unregister(Product)
admin.site.register(Product, BrokenAdmin)
"""


# The root URLconf's end, run after a checkpoint before shop/views.py: with the file
# "wrong-view" there, it gives the admin's index (a pattern made before the checkpoint,
# whose check the checkpoint kept) a view class, not a view: urls.E009.
URLS_CHANGING_A_KEPT_PATTERN = """
import os

if os.path.exists("wrong-view"):
    from django.views import View

    urlpatterns[0].url_patterns[0].callback = type("Wrong", (View,), {})
"""


def test_runserver_checks_what_a_view_edit_changes_from_a_checkpoint(tmp_path: Path) -> None:
    """runserver's model and admin checks and the migration modules come before the
    views, so a checkpoint before a view keeps them, with the URL checks of the patterns
    made before it; what the edit changes is checked again: a view that registers a
    broken ModelAdmin gets Django's check error, as does a kept URL pattern changed in
    place since, a migration file created meanwhile counts as unapplied, and the fix is
    served."""
    pytest.importorskip("django")
    from .djangosite import ROOT_URLS, SHOP_VIEWS, make_site

    site = make_site(tmp_path, integration=True)
    (site / "mysite" / "urls.py").write_text(ROOT_URLS + URLS_CHANGING_A_KEPT_PATTERN)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "makemigrations", "shop"], cwd=site, check=True, timeout=120)
    port = free_port()
    argv = [*manage, "runserver", f"127.0.0.1:{port}", "--verbosity", "2"]
    r = Proc(argv, site, {"DJANGO_RUNSERVER_HIDE_WARNING": "true"})
    try:
        wait_page(port, "value=1 ", "/shop/", of=r)
        unapplied = int(r.expect(r"You have (\d+) unapplied migration").group(1))
        for n in range(2, 2 + MAX_EDITS):
            write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", f"VALUE = {n}"))
            wait_page(port, f"value={n} ", "/shop/", of=r)
            if kept(r, r"shop/views\.py"):
                break
        r.expect(r"System check identified no issues", start=r.out.mark() - 12)
        err = r.err.mark()
        write(site / "shop" / "views.py", SHOP_VIEWS + VIEWS_REGISTERING_A_BROKEN_ADMIN)
        r.expect(r"\(admin\.E108\) The value of 'list_display\[0\]'", stream="err", start=err)
        write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 50"))
        wait_page(port, "value=50 ", "/shop/", of=r)
        err = r.err.mark()
        (site / "wrong-view").touch()
        write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 51"))
        r.expect(r"\(urls\.E009\) Your URL pattern '' \[name='index'\]", stream="err", start=err)
        (site / "wrong-view").unlink()
        write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 52"))
        wait_page(port, "value=52 ", "/shop/", of=r)
        assert r.err.count(r"reload #\d+: shop/views\.py changed; kept \d+ modules") >= 3
        subprocess.run(
            [*manage, "makemigrations", "shop", "--empty", "-n", "extra"],
            cwd=site,
            check=True,
            timeout=120,
        )
        out = r.out.mark()
        write(site / "shop" / "views.py", SHOP_VIEWS.replace("VALUE = 1", "VALUE = 99"))
        wait_page(port, "value=99 ", "/shop/", of=r)
        r.expect(rf"You have {unapplied + 1} unapplied migration", start=out)
    finally:
        r.close()


SLOW_EXIT_APP = """\
import atexit, os, time
import msg

def _slow_exit():
    time.sleep(8)  # the old process takes its time to go
    open(f"exited-{os.getpid()}", "w").close()

atexit.register(_slow_exit)

def app(environ, start_response):
    body = f"v={msg.VALUE} pid={os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def test_a_deferred_take_over_does_not_wait_for_the_next_event(
    tmp_path: Path, relaunch: Start
) -> None:
    """A new serve process that loaded a file written just now is let serve once the
    file has been quiet, at that deadline: it waited for the next event instead (here
    the old process's exit, 8 s later)."""
    (tmp_path / "app.py").write_text(SLOW_EXIT_APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    port = free_port()
    relaunch(["serve", "app:app", "--port", str(port), "-v", "--grace", "30"], tmp_path)
    first = wait_body(port, "v=1 ")
    old = first.split("pid=")[1].strip()
    msg = tmp_path / "msg.py"
    msg.write_text("VALUE = 2\n")
    # Written "in the future": the new process loads a file too fresh to trust, and its
    # take-over is deferred until the file has been quiet (about 1 s from now).
    ahead = time.time_ns() + 1_000_000_000
    os.utime(msg, ns=(ahead, ahead))
    wait_body(port, "v=2 ")
    assert not (tmp_path / f"exited-{old}").exists()
