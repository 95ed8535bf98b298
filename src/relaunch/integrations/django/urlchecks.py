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
always checked anew. The same goes for an included URLconf's resolver (``include()``:
the admin's, an app's): its check gives the kept messages if its patterns are the
same list with the same patterns, each one kept and unchanged, all the way down
(:func:`unchanged`), sparing the walk through Django's check of each; and the
namespace check (``check_url_namespaces_unique``) takes the namespaces kept under it.

The check of a pattern reads nothing else (Django 4.2 to 5.2). A kept pattern may
hold what its check cached (Django before 5.1 compiles its regex): a cold start's
check caches the same, unless code run after the checkpoint changes the pattern's
route in place."""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

from .early_inputs import per_run

__all__ = ["check_kept_patterns", "install", "looks", "same", "unchanged", "world"]


class _KeptResolver(NamedTuple):
    """What a checkpoint kept of an included URLconf's resolver."""

    resolver: Any
    patterns: Any  # its url_patterns: the very list
    listed: tuple[Any, ...]  # what the list held
    own: tuple[Any, ...]  # _own(resolver)
    namespace: Any
    world: tuple[Any, ...]
    messages: list[Any]  # its check's
    namespaces: list[str] | None  # the namespace check's walk's, below it


_made: weakref.WeakSet[Any] = weakref.WeakSet()
# id(pattern) -> (pattern, looks(pattern), world(), messages), filled in a checkpoint
_kept: dict[int, tuple[Any, tuple[Any, ...], tuple[Any, ...], list[Any]]] = {}
_kept_resolvers: dict[int, _KeptResolver] = {}
_looked: dict[int, tuple[Any, bool]] = {}  # id(resolver) -> (run, unchanged): this run's


def looks(pattern: Any) -> tuple[Any, ...]:
    """What a pattern's check reads of it: its pattern object, view and name, and the
    pattern's route, regex and end flag (compared as the very objects: :func:`same`)."""
    return _read(pattern.pattern, pattern.callback)


def _read(inner: Any, what: Any) -> tuple[Any, ...]:
    return (
        inner,
        what,
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


def unchanged(resolver: Any) -> bool:
    """Whether a kept resolver's patterns are as they were: the same list, with the same
    patterns, each kept and unchanged (:func:`same`), its sub-resolvers likewise. Found
    once per run of the checks (the URL check's answer serves the namespace check)."""
    run = this_run()
    known = _looked.get(id(resolver))
    if known is not None and known[0] is run:
        return known[1]
    found = _unchanged(resolver)
    _looked[id(resolver)] = (run, found)
    return found


def _unchanged(resolver: Any) -> bool:
    kept = _kept_resolvers.get(id(resolver))
    if kept is None or kept.resolver is not resolver or not same(kept.own, _own(resolver)):
        return False
    if getattr(resolver, "namespace", None) is not kept.namespace:
        return False
    patterns = resolver.url_patterns
    if patterns is not kept.patterns or tuple(patterns) != kept.listed:
        return False
    for pattern in patterns:
        if id(pattern) in _kept_resolvers:
            if not unchanged(pattern):
                return False
            continue
        leaf = _kept.get(id(pattern))
        if leaf is None or leaf[0] is not pattern or not same(leaf[1], looks(pattern)):
            return False
    return True


def _own(resolver: Any) -> tuple[Any, ...]:
    """What a resolver's own check reads of it (its pattern's, and what it includes),
    as :func:`looks`."""
    return _read(resolver.pattern, resolver.urlconf_name)


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
    """Note every URL pattern and resolver made from now on, and have their checks
    (``URLPattern.check``, ``URLResolver.check``) and the namespace check's walk give
    what a checkpoint kept for them."""
    from django.urls import resolvers  # type: ignore[import-untyped,import-not-found,unused-ignore]

    cls, resolver_cls = resolvers.URLPattern, resolvers.URLResolver
    if _django(cls.check) is not None:
        return
    checked, resolver_checked = cls.check, resolver_cls.check

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

    def resolver_check(self: Any) -> Any:
        kept = _kept_resolvers.get(id(self))
        if kept is not None and kept.world == this_run() and unchanged(self):
            return list(kept.messages)
        return resolver_checked(self)

    cls.__init__, cls.check = _noting(cls.__init__), _as(check, checked)
    resolver_cls.__init__ = _noting(resolver_cls.__init__)
    resolver_cls.check = _as(resolver_check, resolver_checked)

    from django.core.checks import urls as url_checks  # type: ignore[import-untyped,import-not-found,unused-ignore]

    loaded = getattr(url_checks, "_load_all_namespaces", None)
    if callable(loaded):
        # The namespace check's walk, recursive through the module's name: a kept
        # resolver unchanged gives the namespaces kept under it, after its parents'.
        def load_all_namespaces(resolver: Any, parents: tuple[str, ...] = ()) -> Any:
            kept = _kept_resolvers.get(id(resolver))
            if kept is not None and kept.namespaces is not None and unchanged(resolver):
                prefix = ":".join(parents) + ":" if parents else ""
                return [prefix + name for name in kept.namespaces]
            return loaded(resolver, parents)

        url_checks._load_all_namespaces = _as(load_all_namespaces, loaded)


def _noting(init: Any) -> Any:
    """``init``, noting each object made (in a weak set)."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        try:
            _made.add(self)
        except TypeError:
            pass  # a subclass with no __weakref__: checked as Django checks it

    return _as(__init__, init)


def _as(new: Any, old: Any) -> Any:
    """``new``, standing in for ``old`` (its doc; ``__wrapped__``, for inspect, and for
    :func:`_django`)."""
    new.__wrapped__, new.__doc__ = old, old.__doc__
    new._relaunch = True
    return new


def _django(fn: Any) -> Any:
    """Django's own function ``fn`` stands in for, if it is one of :func:`install`'s;
    None if not."""
    return fn.__wrapped__ if getattr(fn, "_relaunch", False) else None


def check_kept_patterns() -> None:
    """In a checkpoint's process, before it parks: check every pattern alive, and keep
    the messages of those whose check raises nothing; then of every included URLconf's
    resolver, and the namespaces below it."""
    from django.core.checks import urls as url_checks  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.urls import resolvers  # type: ignore[import-untyped,import-not-found,unused-ignore]

    checked = _django(resolvers.URLPattern.check)
    if checked is None:
        return
    now = world()
    alive = list(_made)
    for pattern in alive:
        if isinstance(pattern, resolvers.URLResolver):
            continue
        try:
            messages = list(checked(pattern))
        except Exception:
            continue
        _kept[id(pattern)] = (pattern, looks(pattern), now, messages)
    # An included URLconf's (not the root's, being imported here: its urlconf_name is a
    # dotted path): its patterns are all made.
    included = {
        id(r): r
        for r in alive
        if isinstance(r, resolvers.URLResolver) and not isinstance(r.urlconf_name, str)
    }
    resolver_checked = _django(resolvers.URLResolver.check)
    walk = _django(getattr(url_checks, "_load_all_namespaces", None))
    done: set[int] = set()

    def keep(resolver: Any) -> None:
        """Keep a resolver's check (and the namespaces below it) once those of the
        resolvers in its patterns are: innermost first, so that each outer one's check
        finds the inner ones kept."""
        if id(resolver) in done:
            return
        done.add(id(resolver))
        try:
            patterns = resolver.url_patterns
            for pattern in patterns:
                if id(pattern) in included:
                    keep(pattern)
            messages = list(resolver_checked(resolver))
        except Exception:
            return
        namespace = getattr(resolver, "namespace", None)
        kept = _KeptResolver(
            resolver, patterns, tuple(patterns), _own(resolver), namespace, now, messages, None
        )
        _kept_resolvers[id(resolver)] = kept
        if not _unchanged(resolver):  # a sub-resolver not kept: check this one anew
            del _kept_resolvers[id(resolver)]
            return
        if walk is not None:
            try:
                names = list(walk(resolver, ()))
            except Exception:
                return
            _kept_resolvers[id(resolver)] = kept._replace(namespaces=names)

    for resolver in included.values():
        keep(resolver)
