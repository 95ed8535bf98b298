"""What ``python -m relaunch.autoreload PROGRAM`` runs in the child (its command line
names this module): it runs :func:`relaunch.integrations.tornado.autoreload_main.main`,
where the work is done. Kept here, by this name, so that command line stays what it was.
"""

from __future__ import annotations

from .integrations.tornado.autoreload_main import (
    ENV_FILE_VARIABLE,
    load_environment,
    main,
    save_environment,
)

__all__ = ["ENV_FILE_VARIABLE", "load_environment", "main", "save_environment"]

if __name__ == "__main__":
    main()
