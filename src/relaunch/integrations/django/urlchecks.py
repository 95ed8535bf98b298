"""runserver's URL check, done once for the URL patterns a checkpoint holds.

Django's ``check_url_config`` checks every URL pattern of the URLconf each time
runserver starts: on a project with a large admin, thousands of patterns, tens of
milliseconds in every process forked from a checkpoint, though all but the edited
app's patterns were made before it, by code unchanged since.

So, in the runserver process (:func:`install`), every ``URLPattern`` made is noted (a
weak reference); a checkpoint's process, before it parks, runs ``check()`` of each
pattern alive there and keeps the messages (:func:`check_kept_patterns`); and in each
process forked from it, ``URLPattern.check`` returns those messages for a pattern that
is the same object, with the same route, name and view (the very objects), under the
same ``APPEND_SLASH``, language and path converters as when they were kept
(:func:`looks`, :func:`world`); any other pattern, or one changed since, is checked as
Django checks it. The patterns made after the checkpoint (the edited app's) are
always checked anew.

The check of a pattern reads nothing else (Django 4.2 to 5.2). A kept pattern may
hold what its check cached (Django before 5.1 compiles its regex): a cold start's
check caches the same, unless code run after the checkpoint changes the pattern's
route in place."""

from __future__ import annotations

import weakref
from typing import Any

from .early_inputs import per_run

__all__ = ["check_kept_patterns", "install", "looks", "same", "world"]

_made: weakref.WeakSet[Any] = weakref.WeakSet()
# id(pattern) -> (pattern, looks(pattern), world(), messages), filled in a checkpoint
_kept: dict[int, tuple[Any, tuple[Any, ...], tuple[Any, ...], list[Any]]] = {}
_django_check: list[Any] = []  # URLPattern.check as Django has it, once installed


def looks(pattern: Any) -> tuple[Any, ...]:
    """What a pattern's check reads of it: its pattern object, view and name, and the
    pattern's route, regex and end flag (compared as the very objects: :func:`same`)."""
    inner = pattern.pattern
    return (
        inner,
        pattern.callback,
        getattr(inner, "name", None),
        getattr(inner, "_route", None),
        getattr(inner, "_regex", None),
        getattr(inner, "_is_endpoint", None),
    )


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two :func:`looks` are of the very same objects (no ``==`` runs: a lazy
    route's would translate it)."""
    # Spelled out: a generator over zip() costs more than the check it spares.
    return (
        a[0] is b[0]
        and a[1] is b[1]
        and a[2] is b[2]
        and a[3] is b[3]
        and a[4] is b[4]
        and a[5] is b[5]
    )


def world() -> tuple[Any, ...]:
    """What a pattern's check reads besides the pattern: ``APPEND_SLASH``, the active
    language (a lazy route is shown translated) and the path converters."""
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.urls import converters  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.utils import translation  # type: ignore[import-untyped,import-not-found,unused-ignore]

    registered = getattr(converters, "REGISTERED_CONVERTERS", {})
    return (
        bool(settings.APPEND_SLASH),
        translation.get_language(),
        tuple((name, id(c)) for name, c in sorted(registered.items())),
    )


this_run = per_run(world)  # once per run of the checks (early_inputs.new_run)


def install() -> None:
    """Note every URL pattern made from now on, and have ``URLPattern.check`` give
    a kept pattern's messages."""
    from django.urls import resolvers  # type: ignore[import-untyped,import-not-found,unused-ignore]

    cls = resolvers.URLPattern
    if getattr(cls.check, "_relaunch", False):
        return
    made_init, checked = cls.__init__, cls.check

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        made_init(self, *args, **kwargs)
        try:
            _made.add(self)
        except TypeError:
            pass  # a subclass with no __weakref__: checked as Django checks it

    def check(self: Any) -> Any:
        kept = _kept.get(id(self))
        if (
            kept is not None
            and kept[0] is self
            and same(kept[1], looks(self))
            and kept[2] == this_run()
        ):
            return list(kept[3])
        return checked(self)

    __init__.__wrapped__ = made_init  # type: ignore[attr-defined]
    check.__wrapped__ = checked  # type: ignore[attr-defined]
    check._relaunch = True  # type: ignore[attr-defined]
    __init__.__doc__, check.__doc__ = made_init.__doc__, checked.__doc__
    cls.__init__, cls.check = __init__, check
    _django_check.append(checked)


def check_kept_patterns() -> None:
    """In a checkpoint's process, before it parks: check every pattern alive, and keep
    the messages of those whose check raises nothing."""
    if not _django_check:
        return
    checked = _django_check[0]
    now = world()
    for pattern in list(_made):
        try:
            messages = list(checked(pattern))
        except Exception:
            continue
        _kept[id(pattern)] = (pattern, looks(pattern), now, messages)
