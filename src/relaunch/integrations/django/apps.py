"""The Django app config: installs relaunch as runserver's reloader."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig  # type: ignore[import-untyped,import-not-found,unused-ignore]

__all__ = ["RelaunchConfig"]


class RelaunchConfig(AppConfig):  # type: ignore[misc]
    name = "relaunch.integrations.django"
    label = "relaunch"
    verbose_name = "relaunch"
    default = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Here rather than in ready(): app configs are created before any models module
        # is imported, so the reloader is in place even when models.py has a syntax error
        # (ready() would never run then).
        from .reloader import install

        install()
