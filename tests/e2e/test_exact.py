"""The rule that must never break: after every reload, the new process is
indistinguishable from a cold start of the files as they are now, whatever the
restart strategy.

Each case (see exactapps.py) runs under ``relaunch run`` (one case under ``relaunch
serve``) and makes several edits in a row; after each one the new process's dump is
compared with the dump of the same files run with plain ``python``, no relaunch. Every
case runs with ``--restart cold``, ``--restart warm`` and the default (no flag), so it
guards whatever the default becomes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..reliability.support import replace
from .djangosite import make_site
from .exactapps import CASES, CREATED_ALONE, MP_MAIN, PREFIX, Case, Step, django_case
from .harness import TIMEOUT, Relaunch, wait_until
from .test_serve import free_port, get

PY = sys.executable
Start = Callable[..., Relaunch]
READY = r"warm-start process \d+ ready"
DUMP = "^" + PREFIX + r"(\{.*\})$"

MODES: dict[str, list[str]] = {
    "cold": ["--restart", "cold"],
    "warm": ["--restart", "warm"],
    "default": [],
}


@dataclass(frozen=True)
class Dump:
    state: dict[str, Any]
    facts: dict[str, Any]


def parse(line: str) -> Dump:
    doc = json.loads(line)
    return Dump(doc["state"], doc["facts"])


def materialize(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def apply(root: Path, files: dict[str, str], step: Step) -> None:
    """Make the step's changes on disk (each file replaced in one rename, as editors
    that save atomically do) and in ``files``."""
    for name, text in step.changes.items():
        path = root / name
        if text is None:
            path.unlink()
            files.pop(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace(path, text)
            files[name] = text


def cold_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAUNCH_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["EXACT_COLD"] = "1"
    return env


ColdRun = Callable[[Mapping[str, str], str], Dump]


@pytest.fixture(scope="session")
def cold(tmp_path_factory: pytest.TempPathFactory) -> ColdRun:
    """``cold(files, main)``: the dump of ``python main`` in a fresh folder holding
    ``files``, with no relaunch anywhere; one run per content (the three restart modes
    of a case share them)."""
    cache: dict[str, Dump] = {}

    def run(files: Mapping[str, str], main: str) -> Dump:
        digest = hashlib.sha256(json.dumps([main, sorted(files.items())]).encode()).hexdigest()
        if digest not in cache:
            root = tmp_path_factory.mktemp("cold")
            materialize(root, files)
            done = subprocess.run(
                [PY, main],
                cwd=root,
                env=cold_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith(PREFIX)]
            assert done.returncode == 0 and len(lines) == 1, (done.stdout, done.stderr)
            cache[digest] = parse(lines[0][len(PREFIX) :])
        return cache[digest]

    return run


def differences(got: Any, want: Any) -> str:
    def pretty(value: Any) -> list[str]:
        return json.dumps(value, indent=1, sort_keys=True).splitlines()

    diff = difflib.unified_diff(pretty(want), pretty(got), "cold start", "after reload", n=2)
    return "\n".join(diff)


def assert_exact(got: Any, want: Any, what: str, r: Relaunch | None = None) -> None:
    if got != want:
        tail = "\n" + r.output()[-4000:] if r is not None else ""
        raise AssertionError(
            f"{what}: not what a cold start gives:\n{differences(got, want)}{tail}"
        )


def next_dump(r: Relaunch, start: int, timeout: float = TIMEOUT) -> Dump:
    return parse(r.expect(DUMP, start=start, timeout=timeout).group(1))


@dataclass
class Trace:
    r: Relaunch
    root: Path
    dumps: list[Dump]


def run_case(case: Case, mode: str, relaunch: Start, root: Path, cold: ColdRun) -> Trace:
    """Start ``case`` under ``relaunch run`` in ``mode``, make its edits one by one and
    check each new process against a cold start of the files as they are then."""
    materialize(root, case.files)
    files = dict(case.files)
    r = relaunch(["run", "-v", *MODES[mode], "--", PY, case.main], root)
    first = next_dump(r, 0)
    want = cold(files, case.main)
    assert_exact(first.state, want.state, "the first start", r)
    if mode != "cold":
        # So the reloads below are forks of the zygote, not cold for as long as it builds.
        r.expect(READY, stream="err")
    dumps = [first]
    for number, step in enumerate(case.steps, 1):
        before = want
        mark = r.out.mark()
        apply(root, files, step)
        got = next_dump(r, mark)
        want = cold(files, case.main)
        assert want.state != before.state, f"step {number} ({step.what}) shows no change"
        assert_exact(got.state, want.state, f"{mode}, step {number}: {step.what}", r)
        dumps.append(got)
    if mode == "warm":
        assert any(d.facts["warm"] for d in dumps[1:]), "no reload was warm:\n" + r.output()
    return Trace(r, root, dumps)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- cases 1-8, 10, 11 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name != "process-state"], ids=lambda c: c.name
)
def test_reloads_are_exact(
    case: Case, mode: str, relaunch: Start, tmp_path: Path, cold: ColdRun
) -> None:
    run_case(case, mode, relaunch, tmp_path / "app", cold)


def test_state_made_at_import_is_fresh_in_every_process(
    mode: str, relaunch: Start, tmp_path: Path, cold: ColdRun
) -> None:
    """Random numbers, the pid, atexit handlers and files written at import: each new
    process has its own, as a cold start would, and none is left over or doubled."""
    (case,) = [c for c in CASES if c.name == "process-state"]
    trace = run_case(case, mode, relaunch, tmp_path / "app", cold)
    for fact in ("token", "uid", "pid"):
        values = [d.facts[fact] for d in trace.dumps]
        assert len(set(values)) == len(values), f"{fact} repeated across processes: {values}"
    pids = sorted(d.facts["pid"] for d in trace.dumps)
    trace.r.close()  # SIGTERM: the last process exits through atexit
    var = trace.root / "var"

    def lines(name: str) -> list[str]:
        return sorted((var / name).read_text().splitlines())

    assert lines("atexit.log") == sorted(str(p) for p in pids), trace.r.output()
    assert lines("app.log") == sorted(f"start pid={p}" for p in pids), trace.r.output()
    assert lines("raw.log") == sorted(f"import pid={p}" for p in pids), trace.r.output()


# -- multiprocessing's alias of __main__ --------------------------------------------------


@pytest.mark.parametrize("mode", ["cold", "warm", "default"])
def test_multiprocessing_main_alias_is_the_programs_main(
    mode: str, relaunch: Start, tmp_path: Path, cold: ColdRun
) -> None:
    run_case(MP_MAIN, mode, relaunch, tmp_path / "app", cold)


# -- a module created after start ---------------------------------------------------------


def test_creating_a_module_the_program_looked_for_reloads(
    relaunch: Start, tmp_path: Path, cold: ColdRun
) -> None:
    """The Django ``local_settings`` pattern: ``try: from local_conf import *``. A cold
    start after the file is created uses it; so must the running program, reloaded.

    In the default mode only: what is watched does not depend on the restart mode."""
    case = CREATED_ALONE
    root = tmp_path / "app"
    materialize(root, case.files)
    files = dict(case.files)
    r = relaunch(["run", "-v", "--", PY, case.main], root)
    assert_exact(next_dump(r, 0).state, cold(files, case.main).state, "the first start", r)
    (step,) = case.steps
    mark = r.out.mark()
    apply(root, files, step)
    got = next_dump(r, mark)
    assert_exact(got.state, cold(files, case.main).state, step.what, r)


# -- 9. Django ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Case:
    pytest.importorskip("django")
    return django_case(make_site(tmp_path_factory.mktemp("djangosite")))


def test_django_reloads_are_exact(
    django_project: Case, mode: str, relaunch: Start, tmp_path: Path, cold: ColdRun
) -> None:
    trace = run_case(django_project, mode, relaunch, tmp_path / "site", cold)
    for dump in trace.dumps:
        assert dump.state["warnings"] == [], dump.state["warnings"]


# The program's own: the import order (a server imports wsgi.py first, and its modules
# before the project's), and the warnings its first lines catch.
SERVED_ONLY_IN_PROGRAM = {"modules", "warnings"}


def served(state: dict[str, Any]) -> dict[str, Any]:
    """What the view of the dump gives for the program's ``state``."""
    return {k: v for k, v in state.items() if k not in SERVED_ONLY_IN_PROGRAM}


def test_django_serve_reloads_are_exact(
    django_project: Case, mode: str, relaunch: Start, tmp_path: Path, cold: ColdRun
) -> None:
    """The same project under ``relaunch serve``: a view returns the dump."""
    case = django_project
    root = tmp_path / "site"
    materialize(root, case.files)
    files = dict(case.files)
    port = free_port()
    args = ["serve", "-v", "mysite.wsgi:application", "--port", str(port), *MODES[mode]]
    r = relaunch(args, root)
    seen: list[str] = [""]

    def page_changed() -> bool:
        try:
            status, body = get(port, "/exact/")
        except OSError:
            return False
        if status != 200 or body == seen[0]:
            return False
        seen[0] = body
        return True

    def next_page() -> dict[str, Any]:
        try:
            wait_until(page_changed, timeout=TIMEOUT, what="the dump page to change")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{r.output()}") from None
        page: dict[str, Any] = json.loads(seen[0])
        return page

    want = served(cold(files, case.main).state)
    assert_exact(next_page(), want, f"{mode}: the first start", r)
    if mode != "cold":
        r.expect(READY, stream="err")
    for number, step in enumerate(case.steps, 1):
        apply(root, files, step)
        want = served(cold(files, case.main).state)
        assert_exact(next_page(), want, f"{mode}, step {number}: {step.what}", r)
