"""runserver's start-up work, ordered so that a reload costs what the edit touches.

Every process runserver starts runs Django's system checks, then its migration check,
then serves. On a large project the model and admin checks (a pass over every field of
every model and every ``ModelAdmin``) and the import of every migration module take a
second or more: a view edit paid all of it again, though none of it depends on a view.

Under relaunch, the server process does that work in its main thread before it loads
the URLconf (which imports the views), so a checkpoint parked before a view keeps it
(see :mod:`relaunch.run.checkpoints`), and a reload from there does not repeat it:

* :func:`check_models_early` runs the model, admin and template checks (``_EARLY``:
  those both costly and functions of what exists before the URLconf loads: the model
  classes, the admin's registrations, the template engines and the apps' tag
  libraries) and keeps their messages for the check runserver runs later in the same
  process. That check reuses them only if what they read is still what it was: every
  model class and every registered ``ModelAdmin`` the same object (nothing registered
  or replaced another since, say by the URLconf), the same ``TEMPLATES`` setting and
  engines, and the same apps with a ``templatetags`` module; otherwise it runs them
  again. Every other check (URLs, static files...) runs at runserver's own time, as
  before.
* :func:`create_template_engines_early` creates the template engines, which import
  every app's template tag libraries; runserver's template check would create them.
* :func:`import_migrations_early` imports the migration modules as Django's migration
  check would (without a database connection), and keeps what it found for that
  check's look at the disk (:class:`KeptMigrations`), which takes it if nothing it
  depends on changed; the check itself, with its graph and its query, still runs at
  runserver's time, and sees migration files added since.

Django runs its checks in no fixed order; this runs some of them first. A cold start
under relaunch does the same as a reload, so the two never differ; what they differ
from is Django's own runserver, by when those checks and imports run, not what they
find, unless code run by the URLconf changes a model or an admin class in place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "KeptMigrations",
    "Reused",
    "check_models_early",
    "create_template_engines_early",
    "import_migrations_early",
    "is_runserver_process",
    "runs_checks",
]

log = logging.getLogger(__name__)


def is_runserver_process(argv: Iterable[str]) -> bool:
    """True if this process is runserver (pure)."""
    return "runserver" in list(argv)[1:]


def runs_checks(argv: Iterable[str]) -> bool:
    """True if this process is runserver and will run its system checks (pure)."""
    return is_runserver_process(argv) and "--skip-checks" not in list(argv)[1:]


class Reused:
    """A registered check whose messages, computed early, serve the next run of it.

    Stands in for ``check`` in the checks registry. The first call with runserver's
    arguments (all apps, no databases) gets the early messages if ``inputs()`` is still
    what it was when they were computed; every other call runs the check."""

    def __init__(self, check: Callable[..., Any], inputs: Callable[[], tuple[Any, ...]]) -> None:
        self.check = check
        self.inputs = inputs
        self.tags = getattr(check, "tags", ())
        self.__name__ = getattr(check, "__name__", "check")
        self.__qualname__ = getattr(check, "__qualname__", self.__name__)
        self.__module__ = getattr(check, "__module__", __name__)
        self._early: list[Any] | None = None
        self._seen: tuple[Any, ...] = ()

    def compute(self) -> None:
        """Run the check now; a check that raises is left to its own time."""
        seen = self.inputs()
        try:
            messages = list(self.check(app_configs=None, databases=None))
        except Exception:
            log.debug("%s failed early: it runs again at runserver's time", self.__name__)
            return
        self._early, self._seen = messages, seen

    def __call__(self, app_configs: Any = None, databases: Any = None, **kwargs: Any) -> Any:
        early, self._early = self._early, None
        if early is not None and app_configs is None and databases is None and not kwargs:
            if self.inputs() == self._seen:
                return early
            log.debug("%s runs again: what it reads changed since", self.__name__)
        return self.check(app_configs=app_configs, databases=databases, **kwargs)

    def __repr__(self) -> str:
        return f"<relaunch early {self.__module__}.{self.__name__}>"


def _models() -> tuple[Any, ...]:
    from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return tuple(apps.get_models(include_auto_created=True, include_swapped=True))


def _admins() -> tuple[Any, ...]:
    from django.contrib.admin.sites import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        all_sites,
    )

    sites = sorted(all_sites, key=id)
    registered = tuple((site, tuple(site._registry.items())) for site in sites)
    return (*_models(), registered)


def _templates() -> tuple[Any, ...]:
    """What the template check reads: the TEMPLATES setting, the engines, the installed
    apps and which of them have a ``templatetags`` module on disk (it imports each)."""
    import os

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
    return (repr(settings.TEMPLATES), tuple(engines.all()), configs, tags)


# The checks run early: costly on a large project, and functions of what exists before
# the URLconf loads (the model classes, the admin's registrations; the template
# engines and tag libraries), read in Django's code. module -> (function, inputs)
_EARLY: dict[str, tuple[tuple[str, Callable[[], tuple[Any, ...]]], ...]] = {
    "django.core.checks.model_checks": (("check_all_models", _models),),
    "django.contrib.admin.checks": (("check_admin_app", _admins),),
    "django.contrib.auth.checks": (("check_models_permissions", _models),),
    "django.contrib.contenttypes.checks": (
        ("check_generic_foreign_keys", _models),
        ("check_model_name_lengths", _models),
    ),
    "django.core.checks.templates": (
        ("check_templates", _templates),  # Django 5.1 and later
        ("check_for_template_tags_with_the_same_name", _templates),  # Django 4.2 and 5.0
    ),
}


def _candidates() -> list[tuple[Callable[..., Any], Callable[[], tuple[Any, ...]]]]:
    """The early checks whose module is loaded (its app installed: the app loaded it)."""
    found = []
    for module_name, checks in _EARLY.items():
        module = sys.modules.get(module_name)
        for name, inputs in checks:
            check = getattr(module, name, None)
            if callable(check):
                found.append((check, inputs))
    return found


def check_models_early() -> list[Reused]:
    """Run the model, admin and template checks now and keep their messages for runserver's own
    check run; returns what stands in for them in the registry."""
    from django.core.checks.registry import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        registry,
    )

    registered = registry.get_checks(include_deployment_checks=True)
    reused = [Reused(check, inputs) for check, inputs in _candidates() if check in registered]
    if not reused:
        return []
    for stand_in in reused:
        stand_in.compute()
    by_check = {stand_in.check: stand_in for stand_in in reused}
    get_checks = registry.get_checks

    def get_checks_reusing(include_deployment_checks: bool = False) -> list[Any]:
        return [by_check.get(check, check) for check in get_checks(include_deployment_checks)]

    registry.get_checks = get_checks_reusing  # run_checks looks it up on the instance
    return reused


def import_migrations_early() -> None:
    """Import every migration module, as the migration check would, without a database
    connection, and keep what was found on disk for that check (:class:`KeptMigrations`).
    A failure is left to that check, which reports it as Django does."""
    try:
        from django.db.migrations.loader import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            MigrationLoader,
        )

        loader = MigrationLoader(None)
    except Exception:
        log.debug("migrations did not load early: the migration check reports it", exc_info=True)
        return
    KeptMigrations(loader).offer_to(MigrationLoader)


class KeptMigrations:
    """What a ``MigrationLoader`` found on disk (``load_disk``): the migration modules,
    by app. The next ``load_disk`` in this process (runserver's migration check, also
    in each process forked from a checkpoint parked since) takes it instead of looking
    again, if what Django's own look depends on is as it was: the
    ``MIGRATION_MODULES`` setting, the installed apps, each migrations package and the
    names in its folders, each migration module and its ``Migration`` class. The check
    still builds its graph and reads the applied migrations from the database.

    Taken instead, the look does not run the migrations packages' ``__init__`` again
    (Django reloads them when they were imported before, as here, not in a plain
    runserver): they run once, as in a plain runserver. Every later load is Django's."""

    def __init__(self, loader: Any) -> None:
        self.found = {key: type(migration) for key, migration in loader.disk_migrations.items()}
        self.unmigrated = frozenset(loader.unmigrated_apps)
        self.migrated = frozenset(loader.migrated_apps)
        self.seen = self.inputs(type(loader))

    def inputs(self, loader_cls: Any) -> tuple[Any, ...]:
        import os

        from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]

        packages = []
        for label in sorted(self.migrated):
            name, _explicit = loader_cls.migrations_module(label)
            package = sys.modules.get(name)
            folders = list(getattr(package, "__path__", None) or ())
            try:
                listing = tuple(tuple(sorted(os.listdir(folder))) for folder in folders)
            except OSError:
                listing = None
            packages.append((label, name, package, listing))
        modules = []
        for (label, name), cls in self.found.items():
            package, _explicit = loader_cls.migrations_module(label)
            module = sys.modules.get(f"{package}.{name}")
            modules.append((label, name, module, getattr(module, "Migration", None) is cls))
        return (
            dict(settings.MIGRATION_MODULES),
            tuple(apps.get_app_configs()),
            tuple(packages),
            tuple(modules),
        )

    def offer_to(self, loader_cls: Any) -> None:
        """Make the next ``load_disk`` of ``loader_cls`` take what was kept, if still so."""
        original = loader_cls.__dict__.get("load_disk")
        if original is None:
            return
        kept = self

        def load_disk(loader: Any) -> None:
            loader_cls.load_disk = original  # once: every later load is Django's own
            if kept.inputs(loader_cls) != kept.seen:
                log.debug("the migrations changed since they were imported: loading them again")
                original(loader)
                return
            loader.disk_migrations = {
                (label, name): cls(name, label) for (label, name), cls in kept.found.items()
            }
            loader.unmigrated_apps = set(kept.unmigrated)
            loader.migrated_apps = set(kept.migrated)

        load_disk.__doc__ = original.__doc__
        loader_cls.load_disk = load_disk


def create_template_engines_early() -> None:
    """Create the template engines, which import every app's template tag libraries
    (runserver's template check would, later). A failure is left to that check."""
    try:
        from django.template import engines  # type: ignore[import-untyped,import-not-found,unused-ignore]

        engines.all()
    except Exception:
        log.debug("the template engines were not created early", exc_info=True)
