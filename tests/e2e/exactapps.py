"""Apps for the exactness tests (test_exact.py): each is a small project shaped like a
real one, with a program that prints a canonical dump of its state, and a list of
edits to make in a row.

The program imports ``exactdump`` first and ends with ``exactdump.emit(state)``: one
line ``EXACT {json}`` on stdout, then it waits (a cold reference run, with
``EXACT_COLD=1``, exits instead, through ``SystemExit`` so ``atexit`` runs as at a
reload's SIGTERM). The JSON has two parts:

* ``state``: what must equal a cold start of the same files (no ids, no pids, no
  addresses; the project's modules in ``sys.modules`` order, each with its names);
* ``facts``: what must differ from process to process (pid, random numbers), checked by
  the tests one by one, and ``warm``: whether this process came from a zygote.

The edits follow the pattern that matters to a checkpoint (a parked copy of the
program taken just before it first imports a file edited in this session): the first
edit of a file makes it "hot", the second is the one a checkpoint would serve, then a
file imported earlier changes (every checkpoint after it is stale), then the first
file again.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CASES",
    "CREATED_ALONE",
    "EXACTDUMP",
    "MP_MAIN",
    "PREFIX",
    "Case",
    "Step",
    "django_case",
    "django_files",
]

PREFIX = "EXACT "

Files = Mapping[str, "str | None"]


@dataclass(frozen=True)
class Step:
    """One edit: new contents by relative path; ``None`` deletes the file."""

    what: str
    changes: Files


@dataclass(frozen=True)
class Case:
    name: str
    files: Mapping[str, str]
    steps: tuple[Step, ...]
    main: str = "prog.py"


def _d(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


EXACTDUMP = _d(
    '''
    """Prints this program's state as one JSON line, then waits (see exactapps.py)."""
    import sys

    # Only a process forked from a zygote has it before this line: the zygote preloads
    # the standard-library modules the program imports, and nothing else imports it.
    WARM = "fractions" in sys.modules
    import fractions  # noqa: E402,F401
    import json  # noqa: E402
    import os  # noqa: E402
    import signal  # noqa: E402
    import time  # noqa: E402

    ROOT = os.path.dirname(os.path.abspath(__file__))


    def project_modules():
        """The project's modules in import order, each with its file and its names.

        A module is listed once, under its first name: ``__mp_main__`` (multiprocessing's
        alias of ``__main__``) has a test of its own."""
        found = []
        listed = set()
        for name, module in list(sys.modules.items()):
            if id(module) in listed:
                continue
            path = getattr(module, "__file__", None)
            if not isinstance(path, str):
                continue
            path = os.path.abspath(path)
            if not path.startswith(ROOT + os.sep):
                continue
            names = sorted(k for k in vars(module) if not (k.startswith("__") and k.endswith("__")))
            listed.add(id(module))
            found.append([name, os.path.relpath(path, ROOT), names])
        return found


    def _stop(signum, frame):
        # Once: a second SIGTERM would raise again in the middle of the exit (atexit
        # handlers, flushing). relaunch may send two (tests/unit/test_stop_signals.py).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(0)


    def emit(state, **facts):
        # As a server would: SIGTERM ends the program through SystemExit, so atexit runs.
        signal.signal(signal.SIGTERM, _stop)
        doc = {
            "state": {"modules": project_modules(), **state},
            "facts": {"pid": os.getpid(), "warm": WARM, **facts},
        }
        print("EXACT " + json.dumps(doc, sort_keys=True), flush=True)
        if os.environ.get("EXACT_COLD") == "1":
            sys.exit(0)
        while True:
            time.sleep(3600)
    '''
)


def _case(name: str, files: Mapping[str, str], *steps: Step) -> Case:
    return Case(name, {"exactdump.py": EXACTDUMP, **files}, steps)


# -- 1. a registry appended to at import ------------------------------------------------

REGISTRY_CORE = _d(
    """
    VERSION = {version}
    ITEMS = {items}
    KINDS = {{}}


    def register(name, kind="plugin"):
        ITEMS.append(name)
        KINDS[kind] = KINDS.get(kind, 0) + 1
        return name
    """
)

BETA = _d(
    """
    from registry import core

    NAME = core.register("{name}", kind="beta")
    core.ITEMS.append("{name}-extra")
    """
)

REGISTRY = _case(
    "registry",
    {
        "prog.py": _d(
            """
            import exactdump
            import registry.core
            import plugins
            from registry import core

            exactdump.emit({"items": core.ITEMS, "kinds": sorted(core.KINDS.items()),
                            "version": core.VERSION,
                            "plugins": [plugins.alpha.NAME, plugins.beta.NAME]})
            """
        ),
        "registry/__init__.py": "",
        "registry/core.py": REGISTRY_CORE.format(version=1, items="[]"),
        "plugins/__init__.py": "from . import alpha, beta\n",
        "plugins/alpha.py": 'from registry.core import register\n\nNAME = register("alpha-1")\n',
        "plugins/beta.py": BETA.format(name="beta-1"),
    },
    Step("edit the appender", {"plugins/beta.py": BETA.format(name="beta-2")}),
    Step(
        "edit the appender again",
        {"plugins/beta.py": BETA.format(name="beta-3") + 'core.register("beta-3b")\n'},
    ),
    Step(
        "edit the registry's owner",
        {"registry/core.py": REGISTRY_CORE.format(version=2, items='["builtin"]')},
    ),
    Step("edit the appender once more", {"plugins/beta.py": BETA.format(name="beta-4")}),
    Step(
        "edit the other appender (imported earlier)",
        {"plugins/alpha.py": 'from registry.core import register\n\nNAME = register("alpha-2")\n'},
    ),
)

# -- 2. an attribute read at import --------------------------------------------------

CONFIG = 'LIMIT = {limit}\nNAME = "{name}"\n'
LIMITS = _d(
    """
    from conf.config import LIMIT, NAME

    DOUBLE = LIMIT * {factor}
    LABEL = f"{{NAME}}/{label}"
    """
)

ATTRIBUTE = _case(
    "attribute",
    {
        "prog.py": _d(
            """
            import exactdump
            from conf import config
            from core import limits, service

            exactdump.emit({"limit": config.LIMIT, "double": limits.DOUBLE,
                            "label": limits.LABEL, "cap": service.CAP})
            """
        ),
        "conf/__init__.py": "",
        "conf/config.py": CONFIG.format(limit=10, name="cfg-1"),
        "core/__init__.py": "",
        "core/limits.py": LIMITS.format(factor=2, label="limits-1"),
        "core/service.py": "from core.limits import DOUBLE\n\nCAP = DOUBLE + 1\n",
    },
    Step("edit the consumer", {"core/limits.py": LIMITS.format(factor=2, label="limits-2")}),
    Step("edit the consumer again", {"core/limits.py": LIMITS.format(factor=3, label="limits-3")}),
    Step("edit the producer", {"conf/config.py": CONFIG.format(limit=20, name="cfg-2")}),
    Step("edit the consumer once more", {"core/limits.py": LIMITS.format(factor=4, label="l-4")}),
    Step("edit the producer again", {"conf/config.py": CONFIG.format(limit=30, name="cfg-3")}),
)

# -- 3. a package whose __init__ imports its submodules ---------------------------------

SHOP_INIT = _d(
    """
    from . import {imports}

    NAMES = [{names}]
    ORDER = "{order}"
    """
)
SHOP_VIEWS = 'from . import models\n\nNAME = "{name}"\nUSES = models.NAME\n'

PACKAGE = _case(
    "package",
    {
        "prog.py": _d(
            """
            import exactdump
            import shop

            exactdump.emit({"names": shop.NAMES, "order": shop.ORDER, "uses": shop.views.USES})
            """
        ),
        "shop/__init__.py": SHOP_INIT.format(
            imports="models, views", names="models.NAME, views.NAME", order="init-1"
        ),
        "shop/models.py": 'NAME = "models-1"\n',
        "shop/views.py": SHOP_VIEWS.format(name="views-1"),
        "shop/extra.py": 'NAME = "extra-1"\n',
    },
    Step("edit a submodule", {"shop/views.py": SHOP_VIEWS.format(name="views-2")}),
    Step("edit the submodule again", {"shop/views.py": SHOP_VIEWS.format(name="views-3")}),
    Step(
        "edit the __init__ (imports one more submodule, first)",
        {
            "shop/__init__.py": SHOP_INIT.format(
                imports="extra, models, views",
                names="extra.NAME, models.NAME, views.NAME",
                order="init-2",
            )
        },
    ),
    Step("edit the submodule once more", {"shop/views.py": SHOP_VIEWS.format(name="views-4")}),
    Step("edit the sibling imported before it", {"shop/models.py": 'NAME = "models-2"\n'}),
)

# -- 4. a changed module's dependents ---------------------------------------------------

C_MODULE = _d(
    """
    import sys

    # Which of the chain were (being) imported when this one ran.
    SEEN_BY = sorted(n for n in sys.modules if n.startswith("chain"))
    VALUE = "{value}"
    """
)

DEPENDENTS = _case(
    "dependents",
    {
        "prog.py": _d(
            """
            import exactdump
            import chain.a

            exactdump.emit({"a": chain.a.VALUE, "b": chain.b.VALUE, "c": chain.c.VALUE,
                            "seen": chain.c.SEEN_BY})
            """
        ),
        "chain/__init__.py": "",
        "chain/a.py": 'from chain import b\n\nVALUE = "a1<" + b.VALUE\n',
        "chain/b.py": 'from chain import c\n\nVALUE = "b1<" + c.VALUE\n',
        "chain/c.py": C_MODULE.format(value="c1"),
    },
    Step("edit C", {"chain/c.py": C_MODULE.format(value="c2")}),
    Step("edit C again", {"chain/c.py": C_MODULE.format(value="c3")}),
    Step("edit B (imports C)", {"chain/b.py": 'from chain import c\n\nVALUE = "b2<" + c.VALUE\n'}),
    Step("edit C once more", {"chain/c.py": C_MODULE.format(value="c4")}),
    Step("edit A (imports B)", {"chain/a.py": 'from chain import b\n\nVALUE = "a2<" + b.VALUE\n'}),
)

# -- 5. deleted and created modules -----------------------------------------------------

LOADER = _d(
    """
    try:
        from speed import fast as impl
    except ImportError:
        from speed import slow as impl

    IMPL = "{prefix}" + impl.__name__
    """
)
SPEED_PROG = _d(
    """
    import exactdump
    from speed import loader

    exactdump.emit({"impl": loader.IMPL, "name": loader.impl.NAME})
    """
)

DELETED = _case(
    "deleted",
    {
        "prog.py": SPEED_PROG,
        "speed/__init__.py": "",
        "speed/loader.py": LOADER.format(prefix=""),
        "speed/fast.py": 'NAME = "fast-1"\n',
        "speed/slow.py": 'NAME = "slow-1"\n',
    },
    Step("edit the module", {"speed/fast.py": 'NAME = "fast-2"\n'}),
    Step("edit the module again", {"speed/fast.py": 'NAME = "fast-3"\n'}),
    Step("delete it (the importer falls back)", {"speed/fast.py": None}),
    Step("edit the fallback", {"speed/slow.py": 'NAME = "slow-2"\n'}),
    Step("edit the importer", {"speed/loader.py": LOADER.format(prefix="loader-2:")}),
)

CREATED = _case(
    "created",
    {
        "prog.py": SPEED_PROG,
        "speed/__init__.py": "",
        "speed/loader.py": LOADER.format(prefix=""),
        "speed/slow.py": 'NAME = "slow-1"\n',
    },
    Step("edit the fallback", {"speed/slow.py": 'NAME = "slow-2"\n'}),
    Step("edit the fallback again", {"speed/slow.py": 'NAME = "slow-3"\n'}),
    # The importer tried the missing module before the fallback ran: a copy of the
    # program parked before the fallback must not serve this.
    Step(
        "create the preferred module, and edit the fallback",
        {"speed/fast.py": 'NAME = "fast-1"\n', "speed/slow.py": 'NAME = "slow-4"\n'},
    ),
    Step("edit the created module", {"speed/fast.py": 'NAME = "fast-2"\n'}),
    Step("delete it again", {"speed/fast.py": None}),
)

#: The Django ``local_settings`` pattern: a module looked for at import, created later.
CREATED_ALONE = _case(
    "created-alone",
    {
        "prog.py": _d(
            """
            import exactdump
            import conf

            exactdump.emit({"debug": conf.DEBUG, "source": conf.SOURCE})
            """
        ),
        "conf.py": _d(
            """
            DEBUG = False
            SOURCE = "defaults"
            try:
                from local_conf import *  # noqa: F403
            except ImportError:
                pass
            """
        ),
    },
    Step(
        "create the module the program looked for at import",
        {"local_conf.py": 'DEBUG = True\nSOURCE = "local"\n'},
    ),
)

# -- 6. from x import * with __all__ changing --------------------------------------------

PUBLIC = "__all__ = {all}\n\nalpha = {alpha}\nbeta = 2\ngamma = 3\n"
API_INIT = "from api.public import *  # noqa: F403\nfrom api.public import __all__ as PUBLIC\n"

STAR = _case(
    "star",
    {
        "prog.py": _d(
            """
            import exactdump
            import api
            import consumer

            exactdump.emit({"values": {name: getattr(api, name) for name in api.PUBLIC},
                            "consumer": consumer.NAMES})
            """
        ),
        "api/__init__.py": API_INIT,
        "api/public.py": PUBLIC.format(all='["alpha", "beta"]', alpha=1),
        "api/extras.py": '__all__ = ["delta"]\n\ndelta = 4\nepsilon = 5\n',
        "consumer.py": _d(
            """
            from api import *  # noqa: F403

            NAMES = sorted(k for k in dir() if not k.startswith("_"))
            """
        ),
    },
    Step(
        "grow __all__", {"api/public.py": PUBLIC.format(all='["alpha", "beta", "gamma"]', alpha=10)}
    ),
    Step("shrink __all__", {"api/public.py": PUBLIC.format(all='["alpha", "gamma"]', alpha=11)}),
    Step(
        "edit the package (star-imports one more module)",
        {"api/__init__.py": API_INIT + "from api.extras import *  # noqa: F403\n"},
    ),
    Step("change __all__ once more", {"api/public.py": PUBLIC.format(all='["beta"]', alpha=12)}),
    Step(
        "edit the star-importer",
        {"consumer.py": "from api import *  # noqa: F403\n\nNAMES = sorted(dir())\n"},
    ),
)

# -- 7. class hierarchies and monkey-patches ---------------------------------------------

BASE_MODELS = _d(
    """
    class Base:
        def describe(self):
            return "{base}"


    class Mixin:
        def describe(self):
            return "mixin+" + super().describe()
    """
)
EXT_MODELS = _d(
    """
    from base import util
    from base.models import Base, Mixin


    class Child({bases}):
        def describe(self):
            return "{child}+" + super().describe()


    GREETING = util.greet()
    """
)
PATCHES = _d(
    """
    import base.util

    _original = base.util.greet


    def greet():
        return "{name}(" + _original() + ")"


    base.util.greet = greet
    """
)

CLASSES = _case(
    "classes",
    {
        "prog.py": _d(
            """
            import exactdump
            import base.models
            import base.util
            import ext.patches
            import ext.models
            from base.models import Base
            from ext.models import Child


            def name(c):
                return f"{c.__module__}.{c.__qualname__}"


            exactdump.emit({
                "mro": [name(c) for c in Child.__mro__],
                "describe": Child().describe(),
                "greet": base.util.greet(),
                "greet_module": base.util.greet.__module__,
                "greeting_at_import": ext.models.GREETING,
                "subclasses": sorted(name(c) for c in Base.__subclasses__()),
                "is_base": isinstance(Child(), Base),
            })
            """
        ),
        "base/__init__.py": "",
        "base/models.py": BASE_MODELS.format(base="base-1"),
        "base/util.py": 'def greet():\n    return "hello-1"\n',
        "ext/__init__.py": "",
        "ext/patches.py": PATCHES.format(name="patched-1"),
        "ext/models.py": EXT_MODELS.format(bases="Mixin, Base", child="child-1"),
    },
    Step(
        "edit the subclass", {"ext/models.py": EXT_MODELS.format(bases="Mixin, Base", child="c2")}
    ),
    Step(
        "edit the subclass again (new MRO)",
        {"ext/models.py": EXT_MODELS.format(bases="Base, Mixin", child="child-3")},
    ),
    Step("edit the base class", {"base/models.py": BASE_MODELS.format(base="base-2")}),
    Step("edit the patch", {"ext/patches.py": PATCHES.format(name="patched-2")}),
    Step("edit the patched module", {"base/util.py": 'def greet():\n    return "hello-2"\n'}),
    Step(
        "edit the subclass once more",
        {"ext/models.py": EXT_MODELS.format(bases="Mixin, Base", child="child-4")},
    ),
)

# -- 8. signal receivers registered at import --------------------------------------------

SIGNALS = _d(
    """
    from django.dispatch import Signal


    class TinySignal:
        def __init__(self):
            self.receivers = []

        def connect(self, receiver):
            self.receivers.append(receiver)
            return receiver

        def send(self, value):
            return [receiver(value) for receiver in self.receivers]


    saved = TinySignal()
    django_saved = Signal()
    VERSION = {version}
    """
)
HANDLER = _d(
    """
    from django.dispatch import receiver

    from events.signals import django_saved, saved


    @saved.connect
    def {name}(value):
        return "{label}:" + value


    @receiver(django_saved)
    def {name}_django(sender, value, **kwargs):
        return "{label}:" + value
    """
)

RECEIVERS = _case(
    "receivers",
    {
        "prog.py": _d(
            """
            import exactdump
            from events import signals
            import handlers

            exactdump.emit({
                "tiny": signals.saved.send("x"),
                "tiny_count": len(signals.saved.receivers),
                "django": [r for _f, r in signals.django_saved.send(sender=None, value="x")],
                "django_count": len(signals.django_saved.receivers),
                "version": signals.VERSION,
            })
            """
        ),
        "events/__init__.py": "",
        "events/signals.py": SIGNALS.format(version=1),
        "handlers/__init__.py": "from . import audit, mail\n",
        "handlers/audit.py": HANDLER.format(name="audit", label="audit-1"),
        "handlers/mail.py": HANDLER.format(name="mail", label="mail-1"),
    },
    Step("edit a receiver", {"handlers/mail.py": HANDLER.format(name="mail", label="mail-2")}),
    Step(
        "edit it again (one more receiver)",
        {
            "handlers/mail.py": HANDLER.format(name="mail", label="mail-3")
            + HANDLER.format(name="mail_more", label="more-3").split("\n\n\n", 1)[1]
        },
    ),
    Step("edit the signals' module", {"events/signals.py": SIGNALS.format(version=2)}),
    Step(
        "edit the receiver imported earlier",
        {"handlers/audit.py": HANDLER.format(name="audit", label="audit-2")},
    ),
    Step(
        "edit the first receiver again",
        {"handlers/mail.py": HANDLER.format(name="mail", label="m4")},
    ),
)

# -- 10. state made at import that is not in a file --------------------------------------

IDENTITY = _d(
    """
    import os
    import random
    import uuid

    KIND = "{kind}"
    PID = os.getpid()
    BY_PID = {{PID: "mine"}}
    TOKEN = random.random()
    UID = uuid.uuid4().hex
    """
)
HOOKS = _d(
    """
    import atexit
    import os

    VERSION = {version}
    VAR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var")
    os.makedirs(VAR, exist_ok=True)


    def _at_exit():
        with open(os.path.join(VAR, "atexit.log"), "a") as f:
            f.write(f"{{os.getpid()}}\\n")


    atexit.register(_at_exit)
    """
)
APPLOG = _d(
    """
    import logging
    import os

    from boot.hooks import VAR

    handler = logging.FileHandler(os.path.join(VAR, "app.log"))
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("exactapp")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("start pid=%d", os.getpid())

    # A plain buffered file written at import, flushed later: a copy of the process
    # made in between would write the buffer twice.
    RAW = open(os.path.join(VAR, "raw.log"), "a")
    RAW.write(f"import pid={os.getpid()}\\n")
    """
)

PROCESS_STATE = _case(
    "process-state",
    {
        "prog.py": _d(
            """
            import os

            import exactdump
            from boot import applog, hooks, identity
            import app.main

            applog.RAW.flush()
            exactdump.emit(
                {"pid_is_mine": identity.PID == os.getpid(),
                 "cache_hit": os.getpid() in identity.BY_PID,
                 "kind": identity.KIND, "hooks": hooks.VERSION, "value": app.main.VALUE},
                token=identity.TOKEN, uid=identity.UID,
            )
            """
        ),
        "boot/__init__.py": "",
        "boot/identity.py": IDENTITY.format(kind="id-1"),
        "boot/hooks.py": HOOKS.format(version=1),
        "boot/applog.py": APPLOG,
        "app/__init__.py": "",
        "app/main.py": "VALUE = 1\n",
    },
    Step("edit a module imported last", {"app/main.py": "VALUE = 2\n"}),
    Step("edit it again", {"app/main.py": "VALUE = 3\n"}),
    Step(
        "edit the module that draws at import", {"boot/identity.py": IDENTITY.format(kind="id-2")}
    ),
    Step("edit the last module once more", {"app/main.py": "VALUE = 4\n"}),
    Step("edit the module that registers atexit", {"boot/hooks.py": HOOKS.format(version=2)}),
)

# -- 11. a thread started at import ------------------------------------------------------

POOL = _d(
    """
    import queue
    import threading

    FACTOR = {factor}
    _requests = queue.Queue()


    def _serve():
        while True:
            value, reply = _requests.get()
            reply.put(value * FACTOR)


    THREAD = threading.Thread(target=_serve, name="exact-pool", daemon=True)
    THREAD.start()


    def ask(value, timeout=10.0):
        reply = queue.Queue()
        _requests.put((value, reply))
        try:
            return reply.get(timeout=timeout)
        except queue.Empty:
            return None
    """
)

THREADS = _case(
    "threads",
    {
        "prog.py": _d(
            """
            import threading

            import exactdump
            from worker import pool
            import app.handlers

            exactdump.emit({
                "answer": pool.ask(21),
                "alive": pool.THREAD.is_alive(),
                # relaunch's own threads (its control channel) are not the program's.
                "threads": sorted(t.name for t in threading.enumerate()
                                  if not t.name.startswith("relaunch-")),
                "value": app.handlers.VALUE,
            })
            """
        ),
        "worker/__init__.py": "",
        "worker/pool.py": POOL.format(factor=2),
        "app/__init__.py": "",
        "app/handlers.py": "VALUE = 1\n",
    },
    Step("edit a module imported after the thread started", {"app/handlers.py": "VALUE = 2\n"}),
    Step("edit it again", {"app/handlers.py": "VALUE = 3\n"}),
    Step("edit the module that starts the thread", {"worker/pool.py": POOL.format(factor=3)}),
    Step("edit the later module once more", {"app/handlers.py": "VALUE = 4\n"}),
)

# -- multiprocessing's alias of __main__ -------------------------------------------------

#: ``import multiprocessing`` makes ``sys.modules["__mp_main__"]`` the ``__main__`` of the
#: moment (pickle's ``whichmodule`` and spawned children go by it).
MP_MAIN = _case(
    "mp-main",
    {
        "prog.py": _d(
            """
            import sys

            import exactdump
            import multiprocessing  # noqa: F401
            from app import jobs

            alias = sys.modules.get("__mp_main__")
            exactdump.emit({"alias_is_main": alias is sys.modules["__main__"],
                            "alias_file": getattr(alias, "__file__", None) == __file__,
                            "value": jobs.VALUE})
            """
        ),
        "app/__init__.py": "",
        "app/jobs.py": "VALUE = 1\n",
    },
    Step("edit a module", {"app/jobs.py": "VALUE = 2\n"}),
    Step("edit it again", {"app/jobs.py": "VALUE = 3\n"}),
)

CASES: tuple[Case, ...] = (
    REGISTRY,
    ATTRIBUTE,
    PACKAGE,
    DEPENDENTS,
    DELETED,
    CREATED,
    STAR,
    CLASSES,
    RECEIVERS,
    PROCESS_STATE,
    THREADS,
)

# -- 9. Django -------------------------------------------------------------------------

DJDUMP = _d(
    '''
    """The Django project's state, id-free, the same whoever asks (a program or a view)."""
    import sys

    # How the process was started, not the project: a program or a server's worker.
    ENTRY_POINTS = {"__main__", "__mp_main__", "exactdump", "mysite.wsgi", "mysite.asgi"}


    def name(c):
        return f"{c.__module__}.{c.__qualname__}"


    def urls(patterns, prefix=""):
        from django.urls import URLResolver

        found = []
        for p in patterns:
            if isinstance(p, URLResolver):
                found.extend(urls(p.url_patterns, prefix + str(p.pattern)))
            else:
                found.append([prefix + str(p.pattern), p.name, name(p.callback)])
        return found


    def state():
        from django.apps import apps
        from django.conf import settings
        from django.contrib import admin
        from django.db.models.signals import post_save
        from django.urls import get_resolver

        models = []
        for model in apps.get_models():
            module = sys.modules[model.__module__]
            fields = []
            for f in model._meta.get_fields():
                related = f.related_model
                fields.append([
                    f.name, type(f).__name__,
                    related._meta.label if related is not None else None,
                    # The registry's class, not a second copy of it.
                    related is None or related is apps.get_model(related._meta.label),
                ])
            models.append({
                "label": model._meta.label,
                "fields": fields,
                "mro": [name(c) for c in model.__mro__],
                "is_the_modules_class": getattr(module, model.__name__, None) is model,
            })
        registry = admin.site._registry
        project = {
            module_name
            for module_name, module in list(sys.modules.items())
            if str(getattr(module, "__file__", "") or "").startswith(str(settings.BASE_DIR))
        }
        return {
            "models": models,
            "all_models": {label: sorted(ms) for label, ms in sorted(apps.all_models.items())},
            "admin": sorted([m._meta.label, name(type(ma)), list(ma.list_display)]
                            for m, ma in registry.items()),
            "urls": urls(get_resolver().url_patterns),
            "apps": [[c.label, name(type(c))] for c in apps.get_app_configs()],
            "level": settings.EXACT_LEVEL,
            "view_value": sys.modules["shop.views"].VALUE,
            "post_save_receivers": len(post_save.receivers),
            "product_saves": sys.modules["shop.signals"].RECEIVERS,
            "project_modules": sorted(project - ENTRY_POINTS),
        }
    '''
)

DJPROG = _d(
    """
    import exactdump
    import os
    import warnings

    CAUGHT = []


    def _show(message, category, filename, lineno, file=None, line=None):
        CAUGHT.append(f"{category.__name__}: {message}")


    # Django says "Model '...' was already registered" with a RuntimeWarning.
    warnings.showwarning = _show
    warnings.simplefilter("always", RuntimeWarning)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    import django

    django.setup()
    import mysite.urls  # noqa: F401
    import djdump

    exactdump.emit({**djdump.state(), "warnings": CAUGHT})
    """
)

EXACT_VIEW = _d(
    """
    import json

    from django.http import HttpResponse

    import djdump


    def dump(request):
        body = json.dumps(djdump.state(), sort_keys=True)
        return HttpResponse(body, content_type="application/json")
    """
)

ROOT_URLS = _d(
    """
    from django.contrib import admin
    from django.urls import include, path

    from . import exactview

    urlpatterns = [
        path("admin/", admin.site.urls),
        path("shop/", include("shop.urls")),
        path("blog/", include("blog.urls")),
        path("reviews/", include("reviews.urls")),
        path("exact/", exactview.dump, name="exact"),
    ]
    """
)

BLOG_MODELS = _d(
    """
    from django.db import models


    class Tag(models.Model):
        name = models.CharField(max_length=50)


    class Post(models.Model):
        title = models.CharField(max_length=200)
        body = models.TextField()
        product = models.ForeignKey("shop.Product", on_delete=models.CASCADE, related_name="posts")
        tags = models.ManyToManyField(Tag, blank=True)
    {extra}
        def __str__(self):
            return self.title
    """
)

SHOP_APPS = _d(
    """
    from django.apps import AppConfig


    class ShopConfig(AppConfig):
        default_auto_field = "django.db.models.BigAutoField"
        name = "shop"

        def ready(self):
            from . import signals  # noqa: F401  (connects its receivers)
    """
)

SHOP_SIGNALS = _d(
    """
    from django.db.models.signals import post_save
    from django.dispatch import receiver

    from .models import Product

    RECEIVERS = []


    @receiver(post_save, sender=Product)
    def product_saved(sender, instance, **kwargs):
        pass


    RECEIVERS.append("product_saved")
    """
)

REVIEWS = {
    "reviews/__init__.py": "",
    "reviews/apps.py": _d(
        """
        from django.apps import AppConfig


        class ReviewsConfig(AppConfig):
            default_auto_field = "django.db.models.BigAutoField"
            name = "reviews"
        """
    ),
    "reviews/migrations/__init__.py": "",
    "reviews/models.py": _d(
        """
        from django.db import models

        from blog.models import Post
        from shop.models import Product


        class Review(models.Model):
            product = models.ForeignKey(Product, on_delete=models.CASCADE)
            post = models.ForeignKey(Post, null=True, on_delete=models.SET_NULL)
            stars = models.PositiveSmallIntegerField()
        """
    ),
    "reviews/admin.py": _d(
        """
        from django.contrib import admin

        from .models import Review


        @admin.register(Review)
        class ReviewAdmin(admin.ModelAdmin):
            list_display = ("product", "stars")
        """
    ),
    "reviews/views.py": _d(
        """
        from django.http import HttpResponse

        from .models import Review


        def index(request):
            return HttpResponse(Review._meta.verbose_name)
        """
    ),
    "reviews/urls.py": _d(
        """
        from django.urls import path

        from . import views

        app_name = "reviews"
        urlpatterns = [path("", views.index, name="index")]
        """
    ),
}

BLOG_ADMIN_2 = _d(
    """
    from django.contrib import admin

    from .models import Post, Tag


    @admin.register(Post)
    class PostAdmin(admin.ModelAdmin):
        list_display = ("title", "summary")


    admin.site.register(Tag)
    """
)


def django_files(site: Path) -> dict[str, str]:
    """The files of ``site`` (a project made by djangosite.make_site), with a third app,
    relations across apps, a receiver connected in ``ready()``, the dump program and a
    view returning the dump."""
    files = {
        str(p.relative_to(site)): p.read_text()
        for p in sorted(site.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    settings = files["mysite/settings.py"]
    settings = settings.replace('    "blog",\n', '    "blog",\n    "reviews",\n', 1)
    assert '"reviews"' in settings
    files["mysite/settings.py"] = settings + "\nEXACT_LEVEL = 1\n"
    files.update(REVIEWS)
    files["mysite/urls.py"] = ROOT_URLS
    files["mysite/exactview.py"] = EXACT_VIEW
    files["blog/models.py"] = BLOG_MODELS.format(extra="")
    files["blog/admin.py"] = BLOG_ADMIN_2.replace('"summary"', '"product"')
    files["shop/apps.py"] = SHOP_APPS
    files["shop/signals.py"] = SHOP_SIGNALS
    files["exactdump.py"] = EXACTDUMP
    files["djdump.py"] = DJDUMP
    files["prog.py"] = DJPROG
    return files


def django_case(site: Path) -> Case:
    """Case 9: the project of ``django_files(site)``, and its edits."""
    from .djangosite import SHOP_VIEWS

    files = django_files(site)
    assert "VALUE = 1\n" in SHOP_VIEWS

    def views(value: int) -> Files:
        return {"shop/views.py": SHOP_VIEWS.replace("VALUE = 1\n", f"VALUE = {value}\n")}

    settings = files["mysite/settings.py"]
    field = "    summary = models.CharField(max_length=80)\n"
    steps = (
        Step("edit a view", views(2)),
        Step("edit the view again", views(3)),
        Step("edit a model (add a field)", {"blog/models.py": BLOG_MODELS.format(extra=field)}),
        Step(
            "edit settings.py",
            {"mysite/settings.py": settings.replace("EXACT_LEVEL = 1", "EXACT_LEVEL = 2")},
        ),
        Step("edit an app's admin.py", {"blog/admin.py": BLOG_ADMIN_2}),
        Step("edit the view once more", views(4)),
    )
    return Case("django", files, steps)
