"""`relaunch serve` with a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..netcheck import has_ipv6_loopback
from .flaskshop import make_shop
from .harness import Relaunch, wait_until, write
from .test_serve import free_port, wait_body

Start = Callable[..., Relaunch]
CHROMIUM = os.environ.get("RELAUNCH_TEST_CHROMIUM", "") or shutil.which("chromium") or ""

pytestmark = pytest.mark.skipif(
    not CHROMIUM, reason="needs Debian's chromium (.ci/run installs it)"
)

APP = """\
import msg

def app(environ, start_response):
    if environ["PATH_INFO"] == "/site.css":
        body = open("static/site.css", "rb").read()
        ctype = "text/css"
    else:
        body = (f'<!doctype html><html><head><link rel="stylesheet" href="/site.css">'
                f'</head><body><h1 id="v">{msg.VALUE}</h1></body></html>').encode()
        ctype = "text/html; charset=utf-8"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store")])
    return [body]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "msg.py").write_text("VALUE = 'one'\n")
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "site.css").write_text("h1 { color: rgb(255, 0, 0) }\n")
    return tmp_path


def listening(page: Any) -> None:
    """Wait until the page's live-reload connection is open (it opens after load)."""
    state = "window.relaunchLiveReload && window.relaunchLiveReload.readyState"
    wait_until(lambda: page.evaluate(state) == 1, what="the live-reload connection")


def content(page: Any) -> str:
    try:
        return str(page.content())
    except Exception:  # navigating: ask again
        return ""


def heading(page: Any) -> str:
    try:
        return str(page.text_content("#v", timeout=1000))
    except Exception:  # the page is reloading, or shows the error page
        return ""


def test_page_follows_code_changes_errors_and_fixes(site: Path, relaunch: Start, page: Any) -> None:
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port)], site)
    wait_body(port, "one")
    page.goto(f"http://127.0.0.1:{port}/")
    assert heading(page) == "one"
    listening(page)
    write(site / "msg.py", "VALUE = 'two'\n")
    wait_until(lambda: heading(page) == "two", what="the page to show the new code")
    write(site / "msg.py", "VALUE = (\n")
    wait_until(lambda: "SyntaxError" in content(page), what="the error page")
    assert "msg.py" in page.text_content(".where")
    write(site / "msg.py", "VALUE = 'three'\n")
    wait_until(lambda: heading(page) == "three", what="the page to recover")
    r.expect("reload #3", stream="err")


def test_css_change_swaps_the_stylesheet_without_restart(
    site: Path, relaunch: Start, page: Any
) -> None:
    port = free_port()
    r = relaunch(["serve", "app:app", "--port", str(port), "-w", "static"], site)
    wait_body(port, "one")
    page.goto(f"http://127.0.0.1:{port}/")
    color = "getComputedStyle(document.querySelector('#v')).color"
    wait_until(lambda: page.evaluate(color) == "rgb(255, 0, 0)")
    listening(page)
    page.evaluate("window.__marker = 'same page'")  # gone if the page reloads
    write(site / "static" / "site.css", "h1 { color: rgb(0, 0, 255) }\n")
    r.expect("static/site.css changed: pages refreshed, no restart needed", stream="err")
    wait_until(lambda: page.evaluate(color) == "rgb(0, 0, 255)", what="the new style")
    assert page.evaluate("window.__marker") == "same page"
    assert r.err.count("reload #") == 0


def test_two_tabs_both_reload(site: Path, relaunch: Start, browser: Any) -> None:
    port = free_port()
    relaunch(["serve", "app:app", "--port", str(port)], site)
    wait_body(port, "one")
    context = browser.new_context()
    try:
        tabs = [context.new_page(), context.new_page()]
        for tab in tabs:
            tab.goto(f"http://localhost:{port}/")
            wait_until(lambda tab=tab: heading(tab) == "one")
            listening(tab)
        write(site / "msg.py", "VALUE = 'both'\n")
        for tab in tabs:
            wait_until(lambda tab=tab: heading(tab) == "both", what="every tab to reload")
    finally:
        context.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_live_reload_on_an_ipv6_loopback_host(site: Path, relaunch: Start, page: Any) -> None:
    port = free_port()
    r = relaunch(["serve", "app:app", "--host", "::1", "--port", str(port)], site)
    r.expect(r"serving app:app \(WSGI app\) with waitress", stream="err")

    def loaded() -> bool:
        try:
            page.goto(f"http://[::1]:{port}/")
        except Exception:  # not serving yet
            return False
        return heading(page) == "one"

    wait_until(loaded, what="the page on [::1]")
    listening(page)  # the script reached the endpoint under the page's host, [::1]
    write(site / "msg.py", "VALUE = 'two'\n")
    wait_until(lambda: heading(page) == "two", what="the page to show the new code")


def test_django_project_template_and_css_edits_refresh_the_page_without_watch_flags(
    tmp_path: Path, relaunch: Start, page: Any
) -> None:
    """A real Django project (cached template loader, static files from the app's
    static/ folder): no -w, and both edits reach the open page, no restart."""
    pytest.importorskip("django")
    from .djangosite import SHOP_INDEX, make_site

    site = make_site(tmp_path)
    port = free_port()
    r = relaunch(["serve", "mysite.wsgi", "--port", str(port)], site)
    wait_body(port, "shop template=1", "/shop/")
    page.goto(f"http://127.0.0.1:{port}/shop/")
    color = "getComputedStyle(document.querySelector('#v')).color"
    wait_until(lambda: page.evaluate(color) == "rgb(255, 0, 0)", what="the app's stylesheet")
    listening(page)
    page.evaluate("window.__marker = 'same page'")  # gone if the page reloads
    write(site / "shop" / "static" / "shop" / "shop.css", "h1 { color: rgb(0, 0, 255) }\n")
    wait_until(lambda: page.evaluate(color) == "rgb(0, 0, 255)", what="the new style")
    assert page.evaluate("window.__marker") == "same page"
    template = site / "shop" / "templates" / "shop" / "index.html"
    write(template, SHOP_INDEX.replace("template=1", "template=2"))
    wait_until(lambda: heading(page) == "shop template=2", what="the page to show the template")
    assert r.err.count("reload #") == 0


def test_flask_blueprint_template_and_css_edits_refresh_the_page_without_w(
    tmp_path: Path, relaunch: Start, page: Any
) -> None:
    pytest.importorskip("flask")
    shop = make_shop(tmp_path)
    port = free_port()
    r = relaunch(["serve", "shop:create_app", "--port", str(port)], tmp_path)
    wait_body(port, "blog v1", "/blog")
    page.goto(f"http://127.0.0.1:{port}/blog")
    color = "getComputedStyle(document.querySelector('#v')).color"
    wait_until(lambda: page.evaluate(color) == "rgb(255, 0, 0)")
    listening(page)
    write(
        shop / "blog" / "templates" / "blog" / "page.html",
        (shop / "blog" / "templates" / "blog" / "page.html").read_text().replace("v1", "v2"),
    )
    wait_until(lambda: heading(page) == "blog v2", what="the page to show the new template")
    listening(page)
    page.evaluate("window.__marker = 'same page'")  # gone if the page reloads
    write(shop / "blog" / "static" / "blog.css", "h1 { color: rgb(0, 0, 255) }\n")
    wait_until(lambda: page.evaluate(color) == "rgb(0, 0, 255)", what="the new style")
    assert page.evaluate("window.__marker") == "same page"
    assert r.err.count("reload #") == 0
