"""How the bootstrap classifies a script target, and what it reports for archives."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from relaunch._inside.bootstrap import ReportingFinder, runs_main_of


def test_a_folder_and_an_archive_run_their_main_a_file_does_not(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text("")
    with zipfile.ZipFile(tmp_path / "app.pyz", "w") as archive:
        archive.writestr("__main__.py", "")
    (tmp_path / "script.py").write_text("print(1)\n")
    (tmp_path / "fake.pyz").write_text("not a zip\n")
    assert runs_main_of(str(tmp_path / "app"))
    assert runs_main_of(str(tmp_path / "app.pyz"))
    assert not runs_main_of(str(tmp_path / "script.py"))
    assert not runs_main_of(str(tmp_path / "fake.pyz"))  # CPython runs it as a script
    assert not runs_main_of(str(tmp_path / "missing.py"))


def test_a_module_imported_from_an_archive_is_reported_as_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its origin (app.pyz/zmod.py) is no file: watching the archive catches a rebuild."""
    archive = tmp_path / "app.pyz"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("relaunch_test_zmod.py", "X = 1\n")
    monkeypatch.syspath_prepend(str(archive))
    reported: list[tuple[str, str]] = []
    finder = ReportingFinder(lambda name, path: reported.append((name, path)))
    spec = finder.find_spec("relaunch_test_zmod")
    assert spec is not None
    assert reported == [("relaunch_test_zmod", str(archive))]
    sys.path_importer_cache.pop(str(archive), None)
