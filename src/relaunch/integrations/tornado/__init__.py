"""tornado: a drop-in for ``tornado.autoreload`` (:mod:`.autoreload`) and the child's
side of its wrapper (:mod:`.autoreload_main`).

Neither imports tornado unless the program already did. The public names stay
``relaunch.autoreload`` and ``python -m relaunch.autoreload``: thin modules at the top
of the package re-export these.
"""

from __future__ import annotations

__all__: list[str] = []
