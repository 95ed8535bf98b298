"""Unit tests for the parts of relaunch.integrations.django.devserver that need no
Django project: which folders count as the project's."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from relaunch.integrations.django import devserver


def test_only_existing_project_folders_are_kept_once(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "shop" / "static").mkdir(parents=True)
    installed = (str(tmp_path / "venv") + os.sep,)
    (tmp_path / "venv" / "django" / "contrib" / "admin" / "templates").mkdir(parents=True)
    found = devserver._folders(
        [
            tmp_path / "templates",
            str(tmp_path / "shop" / "static"),
            tmp_path / "templates",  # DIRS and APP_DIRS can name one folder twice
            tmp_path / "missing",  # declared, not created (yet)
            tmp_path / "venv" / "django" / "contrib" / "admin" / "templates",
        ],
        installed,
    )
    assert found == [str(tmp_path / "templates"), str(tmp_path / "shop" / "static")]


def test_the_interpreters_package_folders_count_as_installed() -> None:
    purelib = os.path.realpath(sysconfig.get_paths()["purelib"])
    assert any(purelib + os.sep == root for root in devserver._installed_roots())
