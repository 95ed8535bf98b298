"""Unit-test configuration: keep Hypothesis' files out of the work tree.

Hypothesis stores its example database and caches in ``./.hypothesis`` by default; the
unit tests run with ``-p no:cacheprovider`` to leave nothing behind, so Hypothesis
gets a temporary home (removed at exit) and no example database, unless
HYPOTHESIS_STORAGE_DIRECTORY says otherwise.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _home = tempfile.mkdtemp(prefix="relaunch-unit-hypothesis-")
    set_hypothesis_home_dir(_home)
    atexit.register(shutil.rmtree, _home, True)
    settings.register_profile("relaunch-unit", database=None)
    settings.load_profile("relaunch-unit")
