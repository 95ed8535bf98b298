"""What each check runserver runs early reads: the inputs :class:`.early.Reused` compares
between the early run and runserver's own, to know whether the early messages still
hold.

Each function returns a tuple that compares equal only if what it stands for is the
same: Django's objects (model classes, apps, engines, admin sites) by identity, as
their ``==`` is; a setting's value by identity (:class:`Same`: no ``==`` of the
program's objects runs) and, for a container, by its ``repr`` too (a list changed in
place is a change); facts of the disk as they are now.
One run of the checks computes each once (:func:`new_run` starts a run)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "Same",
    "admins",
    "models",
    "new_run",
    "per_run",
    "settings_world",
    "templates",
    "unchanged",
]

_run: dict[Callable[[], tuple[Any, ...]], tuple[Any, ...]] = {}


_compared: dict[tuple[Callable[[], tuple[Any, ...]], int], bool] = {}


def new_run() -> None:
    """Forget what the last run computed: the next inputs are looked at anew."""
    _run.clear()
    _compared.clear()


def unchanged(inputs: Callable[[], tuple[Any, ...]], seen: tuple[Any, ...]) -> bool:
    """Whether ``inputs()`` is still ``seen``; compared once per run (checks that read
    the same share what they saw: one tuple)."""
    key = (inputs, id(seen))
    if key not in _compared:
        _compared[key] = inputs() == seen
    return _compared[key]


def per_run(fn: Callable[[], tuple[Any, ...]]) -> Callable[[], tuple[Any, ...]]:
    """``fn``, computed once per run of the checks."""

    @functools.wraps(fn)
    def once() -> tuple[Any, ...]:
        if fn not in _run:
            _run[fn] = fn()
        return _run[fn]

    return once


class Same:
    """Equal to another ``Same`` of the very same object (and holds it, so that its
    address is not given to another). No ``==`` of the object itself runs: a lazy
    translation's would translate."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)

    def __repr__(self) -> str:
        return f"Same({type(self.value).__name__} at {id(self.value):#x})"


_PLAIN = (str, bytes, int, float, bool, type(None))
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _shape(value: Any) -> Any:
    """A setting's value as compared: itself if plain, its ``repr`` (and the object) if a
    container, else the object."""
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, _CONTAINERS):
        try:
            return (Same(value), repr(value))
        except Exception:
            return Same(value)
    return Same(value)


@per_run
def models() -> tuple[Any, ...]:
    """Every model class."""
    from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return tuple(apps.get_models(include_auto_created=True, include_swapped=True))


@per_run
def admins() -> tuple[Any, ...]:
    """The models, and every admin site with what is registered on it."""
    from django.contrib.admin.sites import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        all_sites,
    )

    sites = sorted(all_sites, key=id)
    registered = tuple((site, tuple(site._registry.items())) for site in sites)
    return (*models(), registered)


@per_run
def templates() -> tuple[Any, ...]:
    """What the template check reads: the TEMPLATES setting, the engines, the installed
    apps and which of them have a ``templatetags`` module on disk (it imports each)."""
    from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.template import engines  # type: ignore[import-untyped,import-not-found,unused-ignore]

    configs = tuple(apps.get_app_configs())
    tags = tuple(
        (
            os.path.exists(os.path.join(config.path, "templatetags")),
            os.path.exists(os.path.join(config.path, "templatetags.py")),
        )
        for config in configs
    )
    return (
        repr(settings.TEMPLATES),
        tuple(engines.all()),
        configs,
        tags,
    )


def _named(paths: Any) -> tuple[Any, ...]:
    """The objects dotted paths name, as Django's checks import them (by identity), or
    the error each import raised."""
    from django.utils.module_loading import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import_string,
    )

    found: list[Any] = []
    for path in paths if isinstance(paths, (list, tuple)) else [paths]:
        try:
            found.append(Same(import_string(path)))
        except Exception as exc:
            found.append(type(exc))
    return tuple(found)


def _directories(setting: Any) -> tuple[Any, ...]:
    """Which folders a folder setting (STATICFILES_DIRS: paths or (prefix, path) pairs;
    or one path) names exist."""
    entries = setting if isinstance(setting, (list, tuple)) else [setting]
    found: list[tuple[str, bool | None]] = []
    for entry in entries:
        root = entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else entry
        try:
            found.append((str(root), os.path.isdir(root)))
        except (TypeError, ValueError):
            found.append((repr(root), None))
    return tuple(found)


@per_run
def settings_world() -> tuple[Any, ...]:
    """What Django's settings checks read (:data:`.early._SETTINGS_CHECKS`): every
    setting; the models; the admin sites (with the sidebar switch); the template engines;
    the lazy model references still pending; the classes and views the settings name;
    the static file finders; and the folders the settings name, as the disk has them."""
    from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.template import engines  # type: ignore[import-untyped,import-not-found,unused-ignore]

    names = sorted(name for name in dir(settings) if name.isupper())
    values = tuple((name, _shape(getattr(settings, name, None))) for name in names)
    sites: tuple[Any, ...] = ()
    finders: tuple[Any, ...] = ()
    if "django.contrib.admin.sites" in sys.modules:
        from django.contrib.admin.sites import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            all_sites,
        )

        sites = tuple(
            (site, getattr(site, "enable_nav_sidebar", None)) for site in sorted(all_sites, key=id)
        )
    if "django.contrib.staticfiles.finders" in sys.modules:
        from django.contrib.staticfiles.finders import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            get_finders,
        )

        finders = tuple(get_finders())
    pending = tuple((key, len(operations)) for key, operations in apps._pending_operations.items())
    return (
        Same(getattr(settings, "_wrapped", None)),
        values,
        models(),
        sites,
        tuple(engines.all()),
        pending,
        _named(getattr(settings, "MIDDLEWARE", ())),
        _named(getattr(settings, "AUTHENTICATION_BACKENDS", ())),
        _named(getattr(settings, "CSRF_FAILURE_VIEW", ())),
        finders,
        _directories(getattr(settings, "STATICFILES_DIRS", ())),
        _directories(getattr(settings, "FILE_UPLOAD_TEMP_DIR", None) or ()),
    )
