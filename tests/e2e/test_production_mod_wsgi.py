"""Apache + mod_wsgi (daemon mode, 4 daemon processes) reloaded three ways, each only
once the new code imports (preflight): by ``relaunch watch --touch app.wsgi --preflight
app.wsgi`` (the script file is touched, so the daemon process group restarts into
working code); by ``relaunch.integrations.mod_wsgi`` imported from the WSGI script (a
watcher thread in each daemon process); by ``relaunch run -- mod_wsgi-express ...``
(the driver touches the script and restarts the daemon processes; Apache stays up).

Saves here are atomic (rename over): mod_wsgi's daemons re-import lazily, at their
next request after the touch, so one of them may import at any moment, including
in the middle of a non-atomic save of the next edit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import relaunch as relaunch_package
from relaunch.integrations.mod_wsgi.express import daemon_processes

from .harness import Proc, Relaunch, stop, wait_until
from .prodharness import (
    APP,
    Load,
    Releases,
    broken_release_is_refused,
    express_args,
    find_server,
    free_port,
    report,
    running_load,
    version_file,
    write_atomic,
    wsgi_site,
)
from .prodharness import wait_responding as wait_up

EXPRESS = find_server("mod_wsgi-express")
PROCESSES = 4
CLIENTS = 8

SCRIPT = """\
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from app import application  # noqa: E402
"""


@pytest.fixture
def apache() -> Iterator[tuple[Path, int]]:
    """mod_wsgi-express in daemon mode on a free port, in a folder the daemon user can read."""
    if EXPRESS is None:
        pytest.skip("mod_wsgi-express is not installed (bash .ci/install-servers.sh)")
    if os.geteuid() != 0:
        pytest.skip("these tests run Apache's daemons as nobody, which needs root")
    site = Path(tempfile.mkdtemp(prefix="relaunch-mod-wsgi-", dir="/tmp"))
    site.chmod(0o755)
    (site / "app.py").write_text(APP)
    (site / "version.py").write_text(version_file("v0"))
    (site / "app.wsgi").write_text(SCRIPT)
    for path in site.iterdir():
        path.chmod(0o644)
    port = free_port()
    log = open(site / "apache.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [EXPRESS, "start-server", str(site / "app.wsgi"), "--host", "127.0.0.1",
         "--port", str(port), "--user", "nobody", "--group", "nogroup",
         "--processes", str(PROCESSES), "--threads", "1",
         "--server-root", str(site / "server"), "--log-to-terminal"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_up(port) == "v0"
        yield site, port
    finally:
        stop(server, timeout=30)
        log.close()
        # Shown by pytest when the test failed: what Apache said.
        print((site / "apache.log").read_text(errors="replace")[-200000:])
        shutil.rmtree(site, ignore_errors=True)


def _watch(relaunch: Callable[..., Relaunch], site: Path) -> Relaunch:
    assert EXPRESS is not None
    python = os.path.join(os.path.dirname(EXPRESS), "python")
    proc = relaunch(
        ["watch", "--touch", "app.wsgi", "--preflight", "app.wsgi", "--python", python],
        cwd=site,
    )
    proc.expect(r"watching \d+ file\(s\); on change: touch", stream="err")
    return proc


@pytest.mark.timeout(300)
def test_twenty_reloads_under_load_fail_no_request(
    relaunch: Callable[..., Relaunch], apache: tuple[Path, int]
) -> None:
    site, port = apache
    proc = _watch(relaunch, site)
    coexist: list[float] = []
    with running_load(port, CLIENTS) as load:
        for i in range(1, 21):
            mark = proc.err.mark()
            write_atomic(site / "version.py", version_file(f"v{i}"))
            proc.expect(rf"reload #{i}: version.py changed; touched", stream="err", start=mark)
            load.wait_served(f"v{i}", count=4 * CLIENTS)
            coexist.append(load.coexistence(f"v{i - 1}", f"v{i}"))
    assert load.failures == [], load.failures[:5]
    report("Apache mod_wsgi daemon mode (touch)", load, 20, coexist)


@pytest.mark.timeout(200)
def test_syntax_error_is_reported_never_served_and_the_fix_is_picked_up(
    relaunch: Callable[..., Relaunch], apache: tuple[Path, int]
) -> None:
    site, port = apache
    proc = _watch(relaunch, site)
    with running_load(port, CLIENTS) as load:
        load.wait_served("v0", count=CLIENTS)
        mark = proc.err.mark()
        write_atomic(site / "version.py", 'V = "broken\n')
        proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark)
        proc.expect(r"not reloading", stream="err", start=mark)
        since = time.monotonic()
        load.wait_served("v0", count=4 * CLIENTS)
        assert load.served_after(since) == {"v0"}
        write_atomic(site / "version.py", version_file("v1"))
        proc.expect(r"reload #1: version.py changed; touched", stream="err", start=mark)
        load.wait_served("v1", count=4 * CLIENTS)
    assert load.failures == [], load.failures[:5]
    assert {o.version for o in load.snapshot()} == {"v0", "v1"}


# -- relaunch.integrations.mod_wsgi, imported by the WSGI script --------------------------

SRC = os.path.dirname(os.path.dirname(os.path.abspath(relaunch_package.__file__)))

IN_SCRIPT = f"""\
import os
import sys

sys.path.insert(0, {SRC!r})  # relaunch, for the daemon processes' interpreter
sys.path.insert(0, os.path.dirname(__file__))
from relaunch.integrations import mod_wsgi as reloader  # noqa: E402

reloader.start(on_next_request=ON_NEXT_REQUEST)
from app import application  # noqa: E402,F401
"""


def _wait_group_serves(load: Load, version: str, root: int) -> None:
    """Wait until every daemon process under ``root`` has answered with ``version``.

    A daemon process imports the code on disk when it starts (it is preloaded), without
    preflight: a broken save made while processes are still starting after a reload is
    what they load. The tests save the broken version once none is starting.
    """

    def settled() -> bool:
        current = daemon_processes(root)
        served = {o.pid for o in load.snapshot() if o.version == version}
        return len(current) == PROCESSES and current <= served

    wait_until(settled, timeout=60, what=f"every daemon process to serve {version}")


@contextmanager
def _express_in_script(
    on_next_request: bool, *, processes: int = PROCESSES, app: str | None = None
) -> Iterator[tuple[Path, int, Proc]]:
    """mod_wsgi-express (4 daemon processes as nobody) serving a script that starts
    relaunch's in-process reloader; always stopped, its output shown on failure.
    ``app``: another app.py."""
    if EXPRESS is None:
        pytest.skip("mod_wsgi-express is not installed (bash .ci/install-servers.sh)")
    if os.geteuid() != 0:
        pytest.skip("these tests run Apache's daemons as nobody, which needs root")
    script = IN_SCRIPT.replace("ON_NEXT_REQUEST", repr(on_next_request))
    site = Path(wsgi_site(script))
    if app is not None:
        (site / "app.py").write_text(app)
    # The daemon processes' temporary folder (their shared preflight verdict) goes with
    # the site.
    (site / "tmp").mkdir()
    (site / "tmp").chmod(0o1777)
    port = free_port()
    argv = [EXPRESS, *express_args(str(site), port, processes=processes)]
    server = Proc(argv, site, {"TMPDIR": str(site / "tmp")})
    try:
        assert wait_up(port) == "v0"
        # Every daemon process watches before the first edit.
        wait_until(
            lambda: server.err.count(r"\[relaunch\] watching daemon process") >= processes,
            timeout=60,
            what="each daemon process to start watching",
        )
        yield site, port, server
        assert list((site / "tmp").glob("relaunch-mod_wsgi-*.json"))
    finally:
        server.close()
        print(server.output()[-200000:])  # shown by pytest when the test failed
        shutil.rmtree(site, ignore_errors=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("on_next_request", [False, True], ids=["sigint", "next-request"])
def test_in_script_reloader_under_load(on_next_request: bool) -> None:
    """Reloads with no failed request; a syntax error is reported in Apache's error log
    and never served (the old version keeps answering); its fix is picked up."""
    reloads = 6
    with _express_in_script(on_next_request) as (site, port, server):
        coexist: list[float] = []
        with running_load(port, CLIENTS) as load:
            load.wait_pids(PROCESSES)
            for i in range(1, reloads + 1):
                write_atomic(site / "version.py", version_file(f"v{i}"))
                load.wait_served(f"v{i}", count=4 * CLIENTS)
                coexist.append(load.coexistence(f"v{i - 1}", f"v{i}"))
            _wait_group_serves(load, f"v{reloads}", server.proc.pid)
            mark = server.err.mark()
            write_atomic(site / "version.py", 'V = "broken\n')
            server.expect(r"preflight failed.*SyntaxError", stream="err", start=mark, timeout=30)
            wait_until(
                lambda: server.err.count(r"version.py changed; preflight failed") >= PROCESSES,
                timeout=30,
                what="every daemon process to refuse the broken version",
            )
            since = time.monotonic()
            load.wait_served(f"v{reloads}", count=4 * CLIENTS)
            after = [o for o in load.snapshot() if o.started >= since]
            assert {o.version for o in after} == {f"v{reloads}"}, [
                o for o in after if o.version != f"v{reloads}"
            ][:5]
            fixed = f"v{reloads + 1}"
            write_atomic(site / "version.py", version_file(fixed))
            load.wait_served(fixed, count=4 * CLIENTS)
        assert load.failures == [], load.failures[:5]
        assert server.err.count(r"Traceback") >= 1  # the preflight's, in the error log
        how = "next request" if on_next_request else "SIGINT"
        report(f"Apache mod_wsgi, in-script reloader ({how})", load, reloads, coexist)


TRIGGER_APP = APP.replace(
    "def app(environ, start_response):\n",
    "def app(environ, start_response):\n"
    "    if environ['PATH_INFO'] == '/trigger':\n"
    "        import relaunch\n\n"
    "        relaunch.trigger_reload()\n",
)


@pytest.mark.timeout(120)
def test_trigger_reload_in_a_daemon_process_restarts_it_after_preflight() -> None:
    assert "relaunch.trigger_reload()" in TRIGGER_APP
    with _express_in_script(False, processes=1, app=TRIGGER_APP) as (_site, port, server):
        (first,) = daemon_processes(server.proc.pid)
        mark = server.err.mark()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/trigger", timeout=30) as answer:
            assert answer.status == 200
        server.expect(
            rf"preflight ok in \d+ ms; restarting daemon process {first}", stream="err", start=mark
        )
        wait_until(
            lambda: len(daemon_processes(server.proc.pid) - {first}) == 1,
            timeout=60,
            what="a new daemon process",
        )
        assert wait_up(port) == "v0"


# -- relaunch run -- mod_wsgi-express start-server ... -----------------------------------


@pytest.mark.timeout(120)
def test_relaunch_run_mod_wsgi_express_under_load(relaunch: Callable[..., Relaunch]) -> None:
    """The driver preflights, then touches the script and restarts the daemon processes
    (Apache and its listening socket stay): no failed request; a syntax error is
    reported, never served, and its fix is picked up."""
    if EXPRESS is None:
        pytest.skip("mod_wsgi-express is not installed (bash .ci/install-servers.sh)")
    if os.geteuid() != 0:
        pytest.skip("these tests run Apache's daemons as nobody, which needs root")
    site = Path(wsgi_site(SCRIPT))
    port = free_port()
    proc = relaunch(["run", "--", EXPRESS, *express_args(str(site), port)], cwd=site)
    reloads = 5
    try:
        proc.expect(r"mod_wsgi driver: watching [1-9]\d* file\(s\)", stream="err", timeout=60)
        assert wait_up(port) == "v0"
        coexist: list[float] = []
        with running_load(port, CLIENTS) as load:
            load.wait_pids(PROCESSES)
            for i in range(1, reloads + 1):
                mark = proc.err.mark()
                write_atomic(site / "version.py", version_file(f"v{i}"))
                proc.expect(
                    rf"mod_wsgi reload #{i}: version.py changed; preflight ok .*touched app.wsgi",
                    stream="err",
                    start=mark,
                    timeout=60,
                )
                load.wait_served(f"v{i}", count=4 * CLIENTS)
                coexist.append(load.coexistence(f"v{i - 1}", f"v{i}"))
            _wait_group_serves(load, f"v{reloads}", proc.proc.pid)
            mark = proc.err.mark()
            write_atomic(site / "version.py", 'V = "broken\n')
            proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark, timeout=30)
            proc.expect(r"still serving the previous version", stream="err", start=mark)
            since = time.monotonic()
            load.wait_served(f"v{reloads}", count=4 * CLIENTS)
            after = [o for o in load.snapshot() if o.started >= since]
            assert {o.version for o in after} == {f"v{reloads}"}, [
                o for o in after if o.version != f"v{reloads}"
            ][:5]
            write_atomic(site / "version.py", version_file(f"v{reloads + 1}"))
            proc.expect(rf"mod_wsgi reload #{reloads + 1}:", stream="err", start=mark, timeout=60)
            load.wait_served(f"v{reloads + 1}", count=4 * CLIENTS)
        assert load.failures == [], load.failures[:5]
        # Apache itself was never restarted (that would refuse connections), nor stopped.
        assert proc.err.count(r"^\[relaunch\] (reload #|program exited|error: program)") == 0
        report("Apache mod_wsgi via relaunch run (touch + restart)", load, reloads, coexist)
    finally:
        proc.close()
        print(proc.output()[-200000:])  # shown by pytest when the test failed
        shutil.rmtree(site, ignore_errors=True)


# -- a symlinked release swapped under relaunch watch ---------------------------------------


@pytest.mark.timeout(200)
def test_symlink_swap_is_followed_with_a_graceful_restart(
    relaunch: Callable[..., Relaunch],
) -> None:
    """Apache serves `current/app.wsgi` (current -> releases/1). A swap changes the file
    behind the script's path, which mod_wsgi's own script reloading would load at the
    next request, preflight or not: so reloading is off, and relaunch watch, started
    from `current`, sees the swap, preflights the new release and only then restarts
    the daemon processes (mod_wsgi's graceful SIGINT, through --exec); a broken release
    is refused and the previous one keeps serving."""
    if EXPRESS is None:
        pytest.skip("mod_wsgi-express is not installed (bash .ci/install-servers.sh)")
    if os.geteuid() != 0:
        pytest.skip("these tests run Apache's daemons as nobody, which needs root")
    root = Path(tempfile.mkdtemp(prefix="relaunch-mod-wsgi-releases-", dir="/tmp"))
    releases = Releases(root, ["r1", "r2", None], files={"app.wsgi": SCRIPT}, readable=True)
    current = releases.current

    port = free_port()
    # mod_wsgi-express resolves relative paths with getcwd(), which resolves links: name
    # the script and the working folder through the link, as a deploy must.
    args = express_args(str(current), port, processes=PROCESSES)
    args[args.index("--server-root") + 1] = str(root / "server")
    args[args.index("app.wsgi")] = str(current / "app.wsgi")
    args += ["--working-directory", str(current), "--disable-reloading"]
    assert EXPRESS is not None
    server = Proc([EXPRESS, *args], current, {"PWD": str(current)})
    try:
        assert wait_up(port) == "r1"
        python = os.path.join(os.path.dirname(EXPRESS), "python")
        restart = f"pkill -INT -f '^[(]wsgi:127.0.0.1:{port}:'"
        proc = relaunch(
            ["watch", "--exec", restart, "--preflight", "app.wsgi", "--python", python],
            cwd=current,
            env={"PWD": str(current)},
        )
        proc.expect(r"watching \d+ file\(s\); on change: .*pkill", stream="err")
        with running_load(port, CLIENTS) as load:
            load.wait_served("r1", count=CLIENTS)
            mark = proc.err.mark()
            releases.swap(2)
            proc.expect(r"current now points to .*releases/2", stream="err", start=mark)
            proc.expect(r'reload #1: .*ran "pkill', stream="err", start=mark)
            load.wait_served("r2", count=4 * CLIENTS)
            # A daemon process still starting would import whatever `current` holds
            # then, preflight or not: let every one serve r2 before the broken swap.
            _wait_group_serves(load, "r2", server.proc.pid)
            since = time.monotonic()
            load.wait_served("r2", count=4 * CLIENTS)
            assert load.served_after(since) == {"r2"}
            broken_release_is_refused(proc, load, releases, 3, "r2", CLIENTS)
        assert load.failures == [], load.failures[:5]
    finally:
        server.close()
        print(server.output()[-100000:])  # shown by pytest when the test failed
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(120)
def test_relaunch_run_mod_wsgi_express_embedded_mode_watches_the_app_without_w(
    relaunch: Callable[..., Relaunch],
) -> None:
    """--embedded-mode has no daemon processes: the app's own modules are watched all
    the same (no -w), a broken save is refused by preflight, and a good one restarts
    Apache gracefully (no failed request)."""
    if EXPRESS is None:
        pytest.skip("mod_wsgi-express is not installed (bash .ci/install-servers.sh)")
    if os.geteuid() != 0:
        pytest.skip("these tests run Apache's processes as nobody, which needs root")
    site = Path(wsgi_site(SCRIPT))
    port = free_port()
    args = [*express_args(str(site), port, processes=2), "--embedded-mode"]
    proc = relaunch(["run", "--", EXPRESS, *args], cwd=site)
    try:
        proc.expect(
            r"mod_wsgi driver: watching [1-9]\d* file\(s\).*graceful Apache restart",
            stream="err",
            timeout=60,
        )
        assert wait_up(port) == "v0"
        with running_load(port, CLIENTS) as load:
            # Both processes loaded v0 (an Apache process still starting imports what
            # is on disk then, preflight or not: the README's caveat).
            load.wait_pids(2)
            load.wait_served("v0", count=2 * CLIENTS)
            mark = proc.err.mark()
            write_atomic(site / "version.py", 'V = "broken\n')
            proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark, timeout=30)
            write_atomic(site / "version.py", version_file("v1"))
            proc.expect(
                r"mod_wsgi reload #1: version.py changed; preflight ok .*graceful Apache restart",
                stream="err",
                start=mark,
                timeout=60,
            )
            load.wait_served("v1", count=4 * CLIENTS)
        assert load.failures == [], load.failures[:5]
        assert proc.err.count(r"^\[relaunch\] (reload #|program exited|error: program)") == 0
    finally:
        proc.close()
        print(proc.output()[-200000:])  # shown by pytest when the test failed
        shutil.rmtree(site, ignore_errors=True)
