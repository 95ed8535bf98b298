"""Flask as its users run it, under relaunch: an app factory in a package with two
blueprints (each with templates and static files), ``flask run --debug``,
``app.run(debug=True)``; and gunicorn's own ``--reload`` under relaunch."""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

import pytest

from .flaskshop import make_shop
from .harness import Relaunch, write
from .prodharness import find_server
from .test_serve import Events, Start, events_url, free_port, get, wait_body

pytest.importorskip("flask")

BIN = Path(sys.executable).parent
ORIGIN = "http://127.0.0.1:{port}"


def test_blueprint_templates_and_static_refresh_pages_without_w(
    tmp_path: Path, relaunch: Start
) -> None:
    shop = make_shop(tmp_path)
    port = free_port()
    r = relaunch(["serve", "shop:create_app", "--port", str(port)], tmp_path)
    r.expect(r"serving shop:create_app\(\) \(WSGI app\)", stream="err")
    body = wait_body(port, "blog v1", "/blog")
    events = Events(events_url(body), ORIGIN.format(port=port))
    try:
        # A blueprint's template, in a subfolder of its templates folder.
        write(shop / "blog" / "templates" / "blog" / "page.html", "<h1>blog v2</h1>")
        assert events.wait(1) == ["reload"]
        wait_body(port, "blog v2", "/blog")
        r.expect(r"page\.html changed: pages refreshed, no restart needed", stream="err")
        # The other blueprint's stylesheet: swapped in place.
        write(shop / "admin" / "static" / "admin.css", "h1 { color: rgb(0, 0, 255) }\n")
        assert events.wait(2) == ["reload", "css"]
        wait_body(port, "rgb(0, 0, 255)", "/admin/admin-static/admin.css")
        # The app's own template folder.
        write(shop / "templates" / "index.html", "<html><body><h1>index v2</h1></body></html>")
        assert events.wait(3)[2] == "reload"
        wait_body(port, "index v2")
        assert r.err.count("reload #") == 0  # none of these restarted the app
        # Code still restarts it.
        write(shop / "version.py", "V = 2\n")
        r.expect(r"reload #1: shop/version\.py changed; new process up", stream="err")
    finally:
        events.close()


def test_flask_log_lines_stay_flasks(tmp_path: Path, relaunch: Start) -> None:
    make_shop(tmp_path)
    port = free_port()
    r = relaunch(["serve", "shop:create_app", "--port", str(port)], tmp_path)
    wait_body(port, "shop 1")
    assert get(port, "/boom")[0] == 500
    line = r.expect(r"Exception on /boom \[GET\]", stream="err").string
    assert not line.startswith("[relaunch]") and "ERROR in app" in line  # Flask's own format
    r.expect(r'"GET /boom HTTP/1\.1" 500$', stream="err")
    get(port, "/log")
    # Flask's handler, on the app's logger (waitress may say the same, bare, under load).
    line = r.expect("WARNING in __init__: Task queue depth is 1$", stream="err").string
    assert not line.startswith("[relaunch]")


def unlock_console(port: int, pin: str) -> bool:
    """What a user does in the browser: open Werkzeug's console, enter the PIN."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/console", timeout=10) as response:
        page = response.read().decode()
    secret = re.search(r'SECRET = "([^"]+)"', page)
    assert secret, page[:500]
    query = f"__debugger__=yes&cmd=pinauth&pin={pin}&s={secret.group(1)}"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/console?{query}", timeout=10) as r:
        return bool(json.loads(r.read())["auth"])


def check_one_reloader(r: Relaunch, port: int, shop: Path) -> None:
    """The PIN is printed and unlocks the console; the app runs in the process relaunch
    started (no Werkzeug reloader process), and each change loads it exactly once."""
    pin = r.expect(r"Debugger PIN: (\d{3}-\d{3}-\d{3})", stream="err").group(1)
    loaded = r.expect(r"app loaded pid=(\d+) version=1 werkzeug_reloader=None")
    wait_body(port, f"pid={loaded.group(1)}")  # served by the process that loaded the app
    assert unlock_console(port, pin)
    write(shop / "version.py", "V = 2\n")
    loaded = r.expect(r"app loaded pid=(\d+) version=2 werkzeug_reloader=None")
    wait_body(port, f"shop 2 pid={loaded.group(1)}")
    assert r.expect(r"Debugger PIN: (\d{3}-\d{3}-\d{3})", stream="err", start=1).group(1) == pin
    assert r.out.count("app loaded") == 2
    assert r.err.count("Restarting with") == 0  # Werkzeug's reloader never started
    assert r.err.count(r"reload #\d+") == 1


def test_flask_run_debug_keeps_the_pin_without_werkzeugs_reloader(
    tmp_path: Path, relaunch: Start
) -> None:
    shop = make_shop(tmp_path)
    port = free_port()
    flask = str(BIN / "flask")
    r = relaunch(["run", "--", flask, "--app", "shop", "run", "--debug", "--port", str(port)])
    check_one_reloader(r, port, shop)


def test_app_run_debug_script_keeps_the_pin_without_werkzeugs_reloader(
    tmp_path: Path, relaunch: Start
) -> None:
    shop = make_shop(tmp_path)
    port = free_port()
    (tmp_path / "run.py").write_text(
        f"from shop import create_app\ncreate_app().run(debug=True, port={port})\n"
    )
    r = relaunch(["run", "--", sys.executable, "run.py"])
    check_one_reloader(r, port, shop)


def test_gunicorn_reload_is_pointed_out_once(tmp_path: Path, relaunch: Start) -> None:
    gunicorn = find_server("gunicorn")
    if gunicorn is None:
        pytest.skip("gunicorn is not installed")
    (tmp_path / "app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    port = free_port()
    r = relaunch(["run", "--", gunicorn, "--reload", "-b", f"127.0.0.1:{port}", "app:app"])
    r.expect(r"warning: gunicorn --reload restarts its workers by itself", stream="err")
    wait_body(port, "ok")
    assert r.err.count("warning: gunicorn --reload") == 1
