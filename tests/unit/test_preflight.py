from __future__ import annotations

import sys
from pathlib import Path

import pytest

from relaunch.preflight import (
    MARKER,
    AppSpec,
    describe_failure,
    judge,
    parse_app_spec,
    run_preflight,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app:app", AppSpec("module", "app", "app")),
        ("pkg.wsgi", AppSpec("module", "pkg.wsgi", "application")),
        ("pkg.wsgi:create_app()", AppSpec("module", "pkg.wsgi", "create_app()")),
    ],
)
def test_module_specs(text: str, expected: AppSpec) -> None:
    assert parse_app_spec(text) == expected


def test_script_specs(tmp_path: Path) -> None:
    (tmp_path / "site.wsgi").write_text("")
    spec = parse_app_spec("site.wsgi", cwd=str(tmp_path))
    assert spec == AppSpec("script", str(tmp_path / "site.wsgi"), "application")
    spec = parse_app_spec("site.wsgi:app", cwd=str(tmp_path))
    assert spec == AppSpec("script", str(tmp_path / "site.wsgi"), "app")


@pytest.mark.parametrize("text", ["", "app:", "not a module", "1abc:app"])
def test_bad_specs(text: str) -> None:
    with pytest.raises(ValueError):
        parse_app_spec(text)


def test_judge_success_reads_the_last_marker_line() -> None:
    out = f"hello from the app\n{MARKER}" + '{"files": ["/a.py", 3], "x": 1}\n'
    result = judge(0, out, "", timeout=5)
    assert result.ok and result.files == ("/a.py",) and result.info == {"x": 1}


def test_judge_failure_and_timeout() -> None:
    result = judge(1, "", "Traceback...\nSyntaxError: bad\n", timeout=5)
    assert not result.ok and result.summary == "SyntaxError: bad"
    assert "Traceback" in describe_failure(result)
    assert not judge(0, "no marker", "", timeout=5).ok
    timed_out = judge(None, "", "", timeout=5)
    assert not timed_out.ok and "timed out after 5 s" in timed_out.summary


def test_run_preflight_imports_the_app_and_lists_its_files(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "web.py").write_text("import helper\ndef app(e, s):\n    return []\n")
    result = run_preflight(
        AppSpec("module", "web", "app"), cwd=str(tmp_path), paths=[str(tmp_path)]
    )
    assert result.ok, result.output
    assert str(tmp_path / "helper.py") in result.files


def test_run_preflight_reports_a_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text("def app(:\n")
    result = run_preflight(
        AppSpec("module", "web", "app"), cwd=str(tmp_path), paths=[str(tmp_path)]
    )
    assert not result.ok and result.summary.startswith("SyntaxError")
    assert "web.py" in result.output


def test_run_preflight_rejects_a_non_callable_and_a_missing_attribute(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text("app = 3\n")
    spec = AppSpec("module", "web", "app")
    assert "not callable" in run_preflight(spec, cwd=str(tmp_path), paths=[str(tmp_path)]).summary
    missing = AppSpec("module", "web", "nothing")
    assert not run_preflight(missing, cwd=str(tmp_path), paths=[str(tmp_path)]).ok


def test_run_preflight_of_a_wsgi_script_and_a_factory(tmp_path: Path) -> None:
    script = tmp_path / "site.wsgi"
    script.write_text("def make(n=1):\n    return lambda e, s: []\napplication = make()\n")
    assert run_preflight(AppSpec("script", str(script)), cwd=str(tmp_path)).ok
    assert run_preflight(AppSpec("script", str(script), "make(2)"), cwd=str(tmp_path)).ok


def test_run_preflight_times_out_on_a_server_started_at_import(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text("import time\nwhile True:\n    time.sleep(0.05)\n")
    result = run_preflight(
        AppSpec("module", "web", "app"),
        python=sys.executable,
        cwd=str(tmp_path),
        paths=[str(tmp_path)],
        timeout=0.5,
    )
    assert not result.ok and "timed out" in result.summary
