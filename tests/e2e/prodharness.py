"""Helpers for the production tests: real servers, a real concurrent HTTP client.

The client (:class:`Load`) runs N threads, each doing GETs in a bounded loop with a
new connection per request (no keep-alive, so every request goes through accept()
and can land on any worker). Each response body starts with the version of the
code that served it; every request's outcome is recorded, so a test can count
failures and measure how long two versions were served side by side.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .harness import Proc, write

SERVERS = os.environ.get("RELAUNCH_SERVERS", "/opt/relaunch-servers")

APP = """\
import os
import version


def app(environ, start_response):
    body = ("%s %d\\n" % (version.V, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = app
"""


def find_server(name: str) -> str | None:
    """The server's executable: next to this interpreter, on PATH, or in $RELAUNCH_SERVERS."""
    for folder in (os.path.dirname(sys.executable), os.path.join(SERVERS, "bin")):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def version_file(version: str) -> str:
    return f"V = {version!r}\n"


@dataclass
class Outcome:
    started: float
    ended: float
    version: str | None  # None: failed
    error: str = ""
    pid: int = 0


class Load:
    """``clients`` threads GETting ``url`` until stopped (or ``max_seconds``)."""

    def __init__(self, port: int, clients: int = 8, max_seconds: float = 300.0) -> None:
        self.port = port
        self.clients = clients
        self.max_seconds = max_seconds
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
            for i in range(clients)
        ]

    def get(self) -> Outcome:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            if response.status != 200:
                return Outcome(started, time.monotonic(), None, f"HTTP {response.status}")
            words = body.split()
            pid = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
            return Outcome(started, time.monotonic(), words[0] if words else "", pid=pid)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(started, time.monotonic(), None, repr(exc))
        finally:
            conn.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            outcome = self.get()
            with self.lock:
                self.outcomes.append(outcome)

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def snapshot(self) -> list[Outcome]:
        with self.lock:
            return list(self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.snapshot() if o.version is None]

    def wait_served(self, version: str, count: int = 20, timeout: float = 60.0) -> float:
        """Wait until ``count`` requests started after now... were all served by
        ``version``; returns when the first of them started."""
        since = time.monotonic()
        deadline = since + timeout
        while True:
            recent = [o for o in self.snapshot() if o.started >= since]
            if len(recent) >= count and all(o.version == version for o in recent[-count:]):
                return since
            if time.monotonic() > deadline:
                seen = sorted({str(o.version) for o in recent})
                raise AssertionError(f"{version} not served consistently; saw {seen}")
            time.sleep(0.01)

    def wait_pids(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` different processes have answered (all workers booted)."""
        deadline = time.monotonic() + timeout
        while len({o.pid for o in self.snapshot() if o.version is not None}) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} workers answered")
            time.sleep(0.01)

    def served_after(self, since: float) -> set[str | None]:
        return {o.version for o in self.snapshot() if o.started >= since}

    def coexistence(self, old: str, new: str) -> float:
        """Seconds during which both ``old`` and ``new`` answered: from the first
        response by ``new`` to the last by ``old`` (0 if they never overlapped)."""
        outcomes = self.snapshot()
        first_new = min((o.ended for o in outcomes if o.version == new), default=None)
        last_old = max((o.ended for o in outcomes if o.version == old), default=None)
        if first_new is None or last_old is None:
            return 0.0
        return max(0.0, last_old - first_new)


def wait_responding(port: int, timeout: float = 60.0) -> str:
    """Wait until the server answers 200; returns the version it serves."""
    load = Load(port)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        outcome = load.get()
        if outcome.version is not None:
            return outcome.version
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing answers on port {port}: {outcome.error}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@contextmanager
def running_load(port: int, clients: int = 8) -> Iterator[Load]:
    load = Load(port, clients).start()
    try:
        yield load
    finally:
        load.stop()


def report(name: str, load: Load, reloads: int, coexist: list[float]) -> str:
    """One line of figures, printed by the tests (pytest -s shows it) for the README."""
    outcomes = load.snapshot()
    worst = max(coexist, default=0.0) * 1000
    median = sorted(coexist)[len(coexist) // 2] * 1000 if coexist else 0.0
    line = (
        f"FIGURES {name}: {reloads} reloads, {len(outcomes)} requests, "
        f"{sum(1 for o in outcomes if o.version is None)} failed, "
        f"coexistence median {median:.0f} ms, max {worst:.0f} ms"
    )
    print(line)
    with open(os.environ.get("RELAUNCH_FIGURES", os.devnull), "a") as f:
        f.write(line + "\n")
    return line


def write_atomic(path: os.PathLike[str] | str, text: str) -> None:
    """Save like a deploy tool or an editor's atomic save: a new file renamed over the
    old, so a process importing at that instant sees the old or the new file, never a
    half-written one."""
    target = os.fspath(path)
    before = os.stat(target).st_mtime_ns if os.path.exists(target) else 0
    tmp = target + ".relaunch-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    if os.stat(tmp).st_mtime_ns <= before:
        os.utime(tmp, ns=(before + 1_000_000, before + 1_000_000))
    os.replace(tmp, target)


def wsgi_site(script: str, *, prefix: str = "relaunch-mod-wsgi-") -> str:
    """A folder in /tmp holding ``app.py``, ``version.py`` (v0) and ``app.wsgi`` (``script``),
    readable by the user Apache's daemon processes run as (nobody)."""
    import tempfile

    site = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(site, 0o755)
    for name, text in (("app.py", APP), ("version.py", version_file("v0")), ("app.wsgi", script)):
        path = os.path.join(site, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
    return site


def express_args(site: str, port: int, *, processes: int = 4) -> list[str]:
    """``mod_wsgi-express start-server`` arguments for ``site``: daemon mode, ``processes``
    single-threaded daemon processes run as nobody, errors on the terminal."""
    return [
        "start-server", "app.wsgi", "--host", "127.0.0.1", "--port", str(port),
        "--user", "nobody", "--group", "nogroup", "--processes", str(processes),
        "--threads", "1", "--server-root", os.path.join(site, "server"), "--log-to-terminal",
    ]  # fmt: skip


BROKEN = 'V = "broken\n'


class Releases:
    """A deploy's folder: ``releases/1``..``N`` (``app.py``, ``version.py`` serving each
    version, None for a syntax error, and ``files``) and ``current``, a link to
    ``releases/1``. ``readable``: folders 0755 and files 0644 (Apache's daemons run as
    nobody)."""

    def __init__(
        self,
        root: Path,
        versions: Sequence[str | None],
        *,
        files: Mapping[str, str] | None = None,
        readable: bool = False,
    ) -> None:
        self.root = root
        self.current = root / "current"
        for n, version in enumerate(versions, start=1):
            folder = self.release(n)
            folder.mkdir(parents=True)
            contents = {
                "app.py": APP,
                "version.py": BROKEN if version is None else version_file(version),
                **(files or {}),
            }
            for name, text in contents.items():
                (folder / name).write_text(text)
                if readable:
                    (folder / name).chmod(0o644)
            if readable:
                for path in (root, root / "releases", folder):
                    path.chmod(0o755)
        self.current.symlink_to(self.release(1))

    def release(self, n: int) -> Path:
        return self.root / "releases" / str(n)

    def swap(self, n: int) -> None:
        """Point ``current`` at release ``n`` as deploy tools do: a new link renamed over."""
        new = self.root / "current.new"
        new.symlink_to(self.release(n))
        new.replace(self.current)


def broken_release_is_refused(
    proc: Proc, load: Load, releases: Releases, n: int, serving: str, clients: int
) -> None:
    """Swap in release ``n``, broken: relaunch's preflight fails, and only ``serving``
    answers meanwhile."""
    mark = proc.err.mark()
    releases.swap(n)
    proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark)
    since = time.monotonic()
    load.wait_served(serving, count=4 * clients)
    assert load.served_after(since) == {serving}


def broken_save_is_refused_then_fixed(
    proc: Proc, load: Load, version_py: Path, reloaded: str, clients: int
) -> None:
    """Save a syntax error in ``version_py`` under load: the preflight fails and v0 keeps
    answering. Save v1: the reload (a log line matching ``reloaded``) serves it."""
    mark = proc.err.mark()
    write(version_py, BROKEN)
    proc.expect(r"preflight failed: SyntaxError", stream="err", start=mark)
    proc.expect(r"still serving the previous version", stream="err", start=mark)
    since = time.monotonic()
    load.wait_served("v0", count=4 * clients)
    assert load.served_after(since) == {"v0"}
    mark = proc.err.mark()
    write(version_py, version_file("v1"))
    proc.expect(reloaded, stream="err", start=mark, timeout=90)
    load.wait_served("v1", count=2 * clients)


def reload_under_load(
    proc: Proc, load: Load, version_py: Path, reloads: int, reloaded: str, clients: int
) -> list[float]:
    """Save v1..v``reloads`` in turn; after each, wait for relaunch's reload line
    (``reloaded``) and check that from then on only the new version answers. Returns how
    long old and new versions answered side by side, each time (seconds)."""
    coexist: list[float] = []
    for i in range(1, reloads + 1):
        mark = proc.err.mark()
        write(version_py, version_file(f"v{i}"))
        proc.expect(reloaded, stream="err", start=mark, timeout=90)
        since = time.monotonic()
        load.wait_served(f"v{i}", count=2 * clients)
        # Once the reload is reported done, every worker serves the new code.
        assert load.served_after(since) == {f"v{i}"}
        coexist.append(load.coexistence(f"v{i - 1}", f"v{i}"))
    return coexist
