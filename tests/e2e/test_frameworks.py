"""Frameworks end to end: tornado (relaunch.autoreload), Django (runserver), Flask (flask run).

Real frameworks from PyPI, real processes, real HTTP on free ports of 127.0.0.1. Every
wait is for a line, a response or a process state, and is bounded.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from .harness import TIMEOUT, Proc, Relaunch, wait_until, write

PY = sys.executable
BIN = Path(sys.executable).parent
Start = Callable[..., Relaunch]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        # Unbuffered only if the test asks: some check that -u is what unbuffers.
        proc = Proc(argv, cwd or tmp_path, env, unbuffered=False)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str = "/") -> str | None:
    """The response body, or None while nothing answers in full (runserver holds no
    socket across a restart: a response it was writing when stopped is cut short)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode())
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return None


def wait_for_body(port: int, pattern: str, path: str = "/") -> re.Match[str]:
    found: list[re.Match[str]] = []

    def check() -> bool:
        body = get(port, path)
        match = re.search(pattern, body or "")
        if match:
            found.append(match)
        return match is not None

    wait_until(check, what=f"GET {path} matching {pattern!r}")
    return found[0]


# -- tornado -------------------------------------------------------------------------


@pytest.fixture
def tornado() -> None:
    pytest.importorskip("tornado")


TORNADO_APP = """\
import os, sys
import tornado.ioloop, tornado.web
from relaunch import autoreload
import msg

class Handler(tornado.web.RequestHandler):
    def get(self):
        self.write(f"value={msg.VALUE} pid={os.getpid()}")

if "KEEP_FD" not in os.environ:  # first run: one descriptor marked inheritable, one not
    keep, drop = os.pipe()
    os.set_inheritable(keep, True)
    os.environ["KEEP_FD"], os.environ["DROP_FD"] = str(keep), str(drop)

def is_open(fd):
    try:
        os.fstat(int(fd))
        return True
    except OSError:
        return False

print(f"start pid={os.getpid()} value={msg.VALUE} dev={sys.flags.dev_mode} "
      f"unbuffered={sys.stdout.write_through} keep={is_open(os.environ['KEEP_FD'])} "
      f"drop={is_open(os.environ['DROP_FD'])} argv={sys.orig_argv[1:]}")
autoreload.add_reload_hook(lambda: print(f"hook ran value={msg.VALUE}"))
tornado.web.Application([("/", Handler)]).listen(int(sys.argv[1]), "127.0.0.1")
autoreload.start()
tornado.ioloop.IOLoop.current().start()
"""


def test_tornado_in_process_reload_keeps_flags_and_inheritable_fds(
    tmp_path: Path, run: Callable[..., Proc], tornado: None
) -> None:
    (tmp_path / "app.py").write_text(TORNADO_APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    port = free_port()
    p = run([PY, "-u", "-X", "dev", "app.py", str(port)])
    first = p.expect(r"start pid=(\d+) value=1 dev=True unbuffered=True keep=True drop=True")
    wait_for_body(port, "value=1")
    write(tmp_path / "msg.py", "VALUE = 2\n")
    p.expect("hook ran value=1")
    # Same process (exec), same flags and arguments; the non-inheritable pipe end is closed.
    again = p.expect(r"start pid=(\d+) value=2 dev=True unbuffered=True keep=True drop=False")
    assert again.group(1) == first.group(1)
    p.expect(re.escape(f"argv=['-u', '-X', 'dev', 'app.py', '{port}']"))
    wait_for_body(port, "value=2")
    assert p.out.count("start pid=") == 2


def test_tornado_debug_application_reloads_once_through_relaunch(
    tmp_path: Path, run: Callable[..., Proc], tornado: None
) -> None:
    # Application(debug=True) calls tornado.autoreload.start(); importing relaunch.autoreload
    # routes it to relaunch, so tornado's own poller (which drops -X) never re-executes.
    app = TORNADO_APP.replace(
        'tornado.web.Application([("/", Handler)])',
        'tornado.web.Application([("/", Handler)], debug=True)',
    ).replace("autoreload.start()\n", "")
    (tmp_path / "app.py").write_text(app)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    port = free_port()
    p = run([PY, "-u", "-X", "dev", "app.py", str(port)])
    p.expect(r"start pid=\d+ value=1 dev=True")
    wait_for_body(port, "value=1")
    write(tmp_path / "msg.py", "VALUE = 2\n")
    p.expect(r"start pid=\d+ value=2 dev=True")
    wait_for_body(port, "value=2")
    write(tmp_path / "msg.py", "VALUE = 3\n")
    p.expect(r"start pid=\d+ value=3 dev=True")
    wait_for_body(port, "value=3")
    assert p.out.count("start pid=") == 3


MULTI_APP = """\
import os, sys
import tornado.httpserver, tornado.ioloop, tornado.netutil, tornado.process, tornado.web
from relaunch import autoreload
import msg

class Handler(tornado.web.RequestHandler):
    def get(self):
        self.write(f"value={msg.VALUE}")

sockets = tornado.netutil.bind_sockets(int(sys.argv[1]), "127.0.0.1")
autoreload.start()  # in the parent; it stops the workers before re-executing
tornado.process.fork_processes(2)
print(f"worker value={msg.VALUE} task={tornado.process.task_id()}", flush=True)
server = tornado.httpserver.HTTPServer(tornado.web.Application([("/", Handler)]))
server.add_sockets(sockets)
tornado.ioloop.IOLoop.current().start()
"""


def test_tornado_multi_process_server_reloads_in_process(
    tmp_path: Path, run: Callable[..., Proc], tornado: None
) -> None:
    (tmp_path / "app.py").write_text(MULTI_APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    port = free_port()
    p = run([PY, "-u", "app.py", str(port)])
    p.expect("worker value=1 task=0")
    p.expect("worker value=1 task=1")
    wait_for_body(port, "value=1")
    write(tmp_path / "msg.py", "VALUE = 2\n")
    p.expect("worker value=2 task=0")
    p.expect("worker value=2 task=1")
    wait_for_body(port, "value=2")


SCRIPT = """\
import sys, time
import msg
print(f"script value={msg.VALUE} dev={sys.flags.dev_mode}", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("how", ["script", "module"])
def test_tornado_style_wrapper_survives_syntax_error_at_import(
    tmp_path: Path, run: Callable[..., Proc], how: str
) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    (tmp_path / "msg.py").write_text("VALUE = (\n")
    target = ["script.py"] if how == "script" else ["-m", "script"]
    p = run([PY, "-X", "dev", "-m", "relaunch.autoreload", *target])
    p.expect("SyntaxError", stream="err")
    p.expect("waiting for a change", stream="err")
    write(tmp_path / "msg.py", "VALUE = 3\n")
    p.expect("script value=3 dev=True")  # the interpreter flag reached the program
    write(tmp_path / "msg.py", "VALUE = 4\n")
    p.expect("script value=4 dev=True")


def test_tornado_style_wrapper_until_success_stops_after_exit_0(
    tmp_path: Path, run: Callable[..., Proc]
) -> None:
    (tmp_path / "script.py").write_text("import msg\nprint('ran', msg.VALUE, flush=True)\n")
    (tmp_path / "msg.py").write_text("VALUE = (\n")
    p = run([PY, "-m", "relaunch.autoreload", "--until-success", "script.py"])
    p.expect("SyntaxError", stream="err")
    p.expect("waiting for a change", stream="err")
    write(tmp_path / "msg.py", "VALUE = 5\n")
    p.expect("ran 5")
    assert p.proc.wait(timeout=TIMEOUT) == 0


def test_tornado_style_wrapper_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [PY, "-m", "relaunch.autoreload"], cwd=tmp_path, capture_output=True, timeout=TIMEOUT
    )
    assert result.returncode == 1
    assert b"Either -m or a path must be specified" in result.stderr


# -- Django --------------------------------------------------------------------------

VIEWS = """\
import os
from django.http import HttpResponse
from django.shortcuts import render

VALUE = 1

def index(request):
    return HttpResponse(f"value={VALUE} pid={os.getpid()}")

def page(request):
    return render(request, "page.html")
"""

URLS_EXTRA = """\
import os
from django.urls import path
from django.utils.autoreload import file_changed
from . import views

def on_file_changed(sender, file_path, **kwargs):
    print(f"file_changed {file_path} pid={os.getpid()}", flush=True)

file_changed.connect(on_file_changed)
urlpatterns += [path("", views.index), path("page", views.page)]
"""

MANAGE_PREFIX = (
    "import sys; PRELOADED = 'django' in sys.modules\n"
    "print(f'manage.py starts preloaded={PRELOADED}', flush=True)\n"
)


@pytest.fixture
def django_project(tmp_path: Path) -> Path:
    """A project made by django-admin startproject, with the relaunch app, a view, a template."""
    pytest.importorskip("django")
    project = tmp_path / "site"
    project.mkdir()
    subprocess.run(
        [str(BIN / "django-admin"), "startproject", "proj", str(project)],
        check=True,
        timeout=TIMEOUT,
    )
    settings = project / "proj" / "settings.py"
    text = settings.read_text()
    text = text.replace(
        "INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "relaunch.integrations.django",'
    )
    text = re.sub(r"""["']DIRS["']: \[\]""", '"DIRS": [BASE_DIR / "templates"]', text)
    assert "relaunch.integrations.django" in text and "templates" in text
    settings.write_text(text)
    (project / "proj" / "views.py").write_text(VIEWS)
    urls = project / "proj" / "urls.py"
    urls.write_text(urls.read_text() + "\n" + URLS_EXTRA)
    (project / "templates").mkdir()
    (project / "templates" / "page.html").write_text("template=1\n")
    manage = project / "manage.py"
    lines = manage.read_text().splitlines(keepends=True)
    manage.write_text(lines[0] + MANAGE_PREFIX + "".join(lines[1:]))
    return project


def runserver(run: Callable[..., Proc], project: Path, port: int, *extra: str) -> Proc:
    return run(
        [PY, "manage.py", "runserver", f"127.0.0.1:{port}", *extra],
        project,
        env={"PYTHONUNBUFFERED": "1", "DJANGO_RUNSERVER_HIDE_WARNING": "true"},
    )


def test_django_runserver_reloads_view_change_with_warm_restarts(
    django_project: Path, run: Callable[..., Proc]
) -> None:
    port = free_port()
    # --verbosity 2 makes relaunch verbose too: it says when the warm-start process is ready.
    p = runserver(run, django_project, port, "--verbosity", "2")
    p.expect("running .*manage.py runserver .*checkpoint restarts", stream="err")
    p.expect("Watching for file changes with RelaunchReloader", stream="err")
    first = int(wait_for_body(port, r"value=1 pid=(\d+)").group(1))
    p.expect(r"warm-start process \d+ ready", stream="err")
    mark = p.out.mark()
    write(django_project / "proj" / "views.py", VIEWS.replace("VALUE = 1", "VALUE = 2"))
    second = int(wait_for_body(port, r"value=2 pid=(\d+)").group(1))
    assert second != first
    # Forked from the warm-start process: Django was imported before manage.py ran.
    p.expect("manage.py starts preloaded=True", start=mark)
    p.expect(r"reload #1: proj/views.py changed; new process up in \d+ ms", stream="err")
    assert p.err.count(r"Watching for file changes with (StatReloader|WatchmanReloader)") == 0


def test_django_runserver_starts_despite_an_unknown_relaunch_variable(
    django_project: Path, run: Callable[..., Proc]
) -> None:
    """RELAUNCH_FOO=1 in the environment is a warning: runserver still starts and serves."""
    port = free_port()
    p = run(
        [PY, "manage.py", "runserver", f"127.0.0.1:{port}"],
        django_project,
        env={"PYTHONUNBUFFERED": "1", "DJANGO_RUNSERVER_HIDE_WARNING": "true", "RELAUNCH_FOO": "1"},
    )
    wait_for_body(port, r"value=1 pid=\d+")
    p.expect("warning: ignoring unknown environment variable RELAUNCH_FOO", stream="err")


def test_django_settings_change_does_not_wait_out_the_grace(
    django_project: Path, run: Callable[..., Proc]
) -> None:
    """A settings.py edit rebuilds the warm-start process (Django's app registry imported
    the settings while it preloaded): the run it forked must still stop at once."""
    port = free_port()
    p = run(
        [PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--verbosity", "2"],
        django_project,
        env={
            "PYTHONUNBUFFERED": "1",
            "DJANGO_RUNSERVER_HIDE_WARNING": "true",
            "RELAUNCH_GRACE": "30",
        },
    )
    wait_for_body(port, r"value=1 pid=\d+")
    p.expect(r"warm-start process \d+ ready", stream="err")
    write(django_project / "proj" / "views.py", VIEWS.replace("VALUE = 1", "VALUE = 2"))
    wait_for_body(port, r"value=2 pid=\d+")  # forked from the warm-start process
    settings = django_project / "proj" / "settings.py"
    good = settings.read_text()
    took = []
    for n in (1, 2):
        mark = p.err.mark()
        write(settings, good + f"\nEDIT = {n}\n")
        up = p.expect(
            r"reload #\d+: proj/settings.py changed; (?:kept [^;]+; )?new process up in (\d+) ms",
            stream="err",
            start=mark,
        )
        took.append(int(up.group(1)))
        wait_for_body(port, r"value=2 pid=\d+")
        p.expect(r"warm-start process \d+ ready", stream="err", start=mark)
    print(f"\nDjango settings.py edits: new process up in {took} ms")
    assert max(took) < 15_000, p.output()  # grace 30 s: it was not waited out


def test_django_template_change_fires_file_changed_without_restart(
    django_project: Path, run: Callable[..., Proc]
) -> None:
    port = free_port()
    p = runserver(run, django_project, port)
    pid = int(wait_for_body(port, r"value=1 pid=(\d+)").group(1))
    wait_for_body(port, "template=1", "/page")
    template = django_project / "templates" / "page.html"
    write(template, "template=2\n")
    p.expect(rf"file_changed {re.escape(str(template))} pid={pid}")
    # Django's own receiver reset the template loaders: new template, same process.
    wait_for_body(port, "template=2", "/page")
    assert int(wait_for_body(port, r"value=1 pid=(\d+)").group(1)) == pid
    # A no-op save is not a change: one more file_changed, for the real edit only.
    mark = p.out.mark()
    write(template, "template=2\n")
    write(template, "template=3\n")
    p.expect(rf"file_changed {re.escape(str(template))} pid={pid}", start=mark)
    wait_for_body(port, "template=3", "/page")
    assert p.out.count("file_changed") == 2


def test_django_survives_syntax_error_in_settings(
    django_project: Path, run: Callable[..., Proc]
) -> None:
    port = free_port()
    p = runserver(run, django_project, port)
    wait_for_body(port, r"value=1 pid=\d+")
    settings = django_project / "proj" / "settings.py"
    good = settings.read_text()
    write(settings, good + "\nBROKEN = (\n")
    p.expect("SyntaxError", stream="err")
    p.expect("program exited with code 1", stream="err")
    write(settings, good)
    wait_for_body(port, r"value=1 pid=\d+")


def test_django_survives_syntax_error_in_models(
    django_project: Path, run: Callable[..., Proc]
) -> None:
    app = django_project / "shop"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text("from django.db import models\n")
    settings = django_project / "proj" / "settings.py"
    settings.write_text(
        settings.read_text().replace("INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "shop",')
    )
    port = free_port()
    p = runserver(run, django_project, port)
    wait_for_body(port, r"value=1 pid=\d+")
    write(app / "models.py", "from django.db import models\nX = (\n")
    p.expect("SyntaxError", stream="err")
    p.expect("program exited with code 1", stream="err")
    write(app / "models.py", "from django.db import models\nX = 1\n")
    wait_for_body(port, r"value=1 pid=\d+")


# -- Flask ---------------------------------------------------------------------------

FLASK_APP = """\
import os
from flask import Flask
import msg

print(f"app loaded pid={os.getpid()} value={msg.VALUE} "
      f"werkzeug_reloader={os.environ.get('WERKZEUG_RUN_MAIN')}", flush=True)
app = Flask(__name__)

@app.route("/")
def index():
    return f"value={msg.VALUE} pid={os.getpid()}"
"""


def test_flask_run_under_relaunch_reloads_once_per_change(tmp_path: Path, relaunch: Start) -> None:
    pytest.importorskip("flask")
    (tmp_path / "app.py").write_text(FLASK_APP)
    (tmp_path / "msg.py").write_text("VALUE = 1\n")
    port = free_port()
    flask = str(BIN / "flask")
    r = relaunch(["run", "--", flask, "--app", "app", "run", "--debug", "--port", str(port)])
    # Werkzeug's reloader is off: the process relaunch started serves the app itself.
    r.expect(r"app loaded pid=\d+ value=1 werkzeug_reloader=None")
    wait_for_body(port, "value=1")
    for value in (2, 3):
        write(tmp_path / "msg.py", f"VALUE = {value}\n")
        r.expect(rf"app loaded pid=\d+ value={value} werkzeug_reloader=None")
        wait_for_body(port, f"value={value}")
    # One start per change: nothing else (no second reloader) loads the app.
    assert r.out.count("app loaded") == 3
    assert r.err.count(r"reload #\d+") == 2


def test_flask_child_environment_turns_flask_reloader_off() -> None:
    from relaunch.command import Command, PythonInvocation
    from relaunch.integrations import child_environment

    flask = Command(
        ("flask", "run"), "/v/bin/flask", PythonInvocation(PY, (), "script", "/v/bin/flask", ())
    )
    module = Command(
        (PY, "-m", "flask", "run"), PY, PythonInvocation(PY, (), "module", "flask", ("run",))
    )
    other = Command((PY, "app.py"), PY, PythonInvocation(PY, (), "script", "app.py", ()))
    assert child_environment(flask)["FLASK_RUN_RELOAD"] == "false"
    assert child_environment(module)["FLASK_RUN_RELOAD"] == "false"
    assert "FLASK_RUN_RELOAD" not in child_environment(other)
