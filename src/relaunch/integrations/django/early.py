"""runserver's start-up work, ordered so that a reload costs what the edit touches.

Every process runserver starts runs Django's system checks, then its migration check,
then serves. On a large project the model and admin checks (a pass over every field of
every model and every ``ModelAdmin``) and the import of every migration module take a
second or more: a view edit paid all of it again, though none of it depends on a view.

Under relaunch, the server process does that work in its main thread before it loads
the URLconf (which imports the views), so a checkpoint parked before a view keeps it
(see :mod:`relaunch.run.checkpoints`), and a reload from there does not repeat it:

* :func:`check_models_early` runs Django's own checks that do not read the URLconf
  (``_EARLY``: the model, admin and template checks, a pass over every field of every
  model and every ``ModelAdmin``; and those of the settings, which import what the
  settings name) and keeps their messages for the check runserver runs later in the
  same process. That check reuses them only if what they read is still what it was
  (:mod:`.early_inputs`): every model class and every registered ``ModelAdmin`` the
  same object (nothing registered or replaced another since, say by the URLconf), the
  same settings, template engines and apps with a ``templatetags`` module, the same
  classes and views named by the settings, and the folders they name as they were;
  otherwise it runs them again. The URL checks, and every check not Django's own, run
  at runserver's own time, as before.
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
find, unless code run by the URLconf changes a model, an admin class or an object a
setting names in place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .early_inputs import admins, models, new_run, settings_world, templates, unchanged

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
            if unchanged(self.inputs, self._seen):
                return early
            log.debug("%s runs again: what it reads changed since", self.__name__)
        try:
            return self.check(app_configs=app_configs, databases=databases, **kwargs)
        finally:
            new_run()

    def __repr__(self) -> str:
        return f"<relaunch early {self.__module__}.{self.__name__}>"


def _foreign_finders() -> tuple[Any, ...]:
    """The settings, unless a static file finder is not Django's: its check may read
    anything, so it is run at runserver's time (a new object is never equal)."""
    from django.contrib.staticfiles.finders import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        get_finders,
    )

    if any(not type(f).__module__.startswith("django.") for f in get_finders()):
        return (object(),)
    return settings_world()


# The checks run early: costly on a large project, and functions of what exists before
# the URLconf loads (the model classes, the admin's registrations; the template
# engines and tag libraries; the settings and what they name), read in Django's code.
# module -> (function, inputs). Not the URL checks, which read the URLconf.
_EARLY: dict[str, tuple[tuple[str, Callable[[], tuple[Any, ...]]], ...]] = {
    "django.core.checks.model_checks": (
        ("check_all_models", models),
        ("check_lazy_references", settings_world),
    ),
    "django.contrib.admin.checks": (
        ("check_admin_app", admins),
        ("check_dependencies", settings_world),
    ),
    "django.contrib.auth.checks": (
        ("check_models_permissions", models),
        ("check_user_model", settings_world),
        ("check_middleware", settings_world),  # Django 5.1 and later
    ),
    "django.contrib.contenttypes.checks": (
        ("check_generic_foreign_keys", models),
        ("check_model_name_lengths", models),
    ),
    "django.core.checks.templates": (
        ("check_templates", templates),  # Django 5.1 and later
        ("check_for_template_tags_with_the_same_name", templates),  # Django 4.2 and 5.0
    ),
    "django.contrib.staticfiles.checks": (
        ("check_finders", _foreign_finders),
        ("check_storages", settings_world),  # Django 4.2 and later
    ),
    "django.core.checks.caches": (
        ("check_default_cache_is_configured", settings_world),
        ("check_file_based_cache_is_absolute", settings_world),
    ),
    "django.core.checks.files": (("check_setting_file_upload_temp_dir", settings_world),),
    "django.core.checks.compatibility.django_4_0": (
        ("check_csrf_trusted_origins", settings_world),
    ),
    "django.core.checks.security.csrf": (("check_csrf_failure_view", settings_world),),
    "django.core.checks.commands": (  # Django 5.2 and later
        ("migrate_and_makemigrations_autodetector", settings_world),
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
    new_run()
    for stand_in in reused:
        stand_in.compute()
    by_check = {stand_in.check: stand_in for stand_in in reused}
    get_checks = registry.get_checks

    def get_checks_reusing(include_deployment_checks: bool = False) -> list[Any]:
        # Those run early first (Django's order is a set's: any order is its own), so
        # that no other check (one that imports the URLconf, say) runs between two of
        # them, and one look at what they read serves them all.
        new_run()
        checks = get_checks(include_deployment_checks)
        return [by_check[c] for c in checks if c in by_check] + [
            c for c in checks if c not in by_check
        ]

    registry.get_checks = get_checks_reusing  # run_checks looks it up on the instance
    return reused


def import_migrations_early() -> None:
    """Import every migration module, as the migration check would, without a database
    connection, and keep what was found on disk for that check (:class:`KeptMigrations`).
    A failure is left to that check, which reports it as Django does. Also makes the
    model of the ``django_migrations`` table (Django makes it, in an app registry of its
    own, at the check's first read of what is applied)."""
    try:
        from django.db.migrations.loader import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            MigrationLoader,
        )
        from django.db.migrations.recorder import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            MigrationRecorder,
        )

        MigrationRecorder.Migration  # noqa: B018  (a class property: made once, kept)
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
