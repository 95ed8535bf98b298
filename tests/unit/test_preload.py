"""What the warm-start process preloads, and when it is rebuilt (pure logic)."""

from __future__ import annotations

from relaunch.run.preload import (
    environment_change,
    is_package_change,
    preload_candidates,
    should_rebuild,
)

SITE = "/venv/lib/python3.12/site-packages"


def installed(path: str) -> bool:
    return path.startswith(("/usr/lib/python3.12/", SITE))


MODULES = [
    ("json", "/usr/lib/python3.12/json/__init__.py"),
    ("app", "/src/app.py"),
    ("flask", f"{SITE}/flask/__init__.py"),
    ("flask.app", f"{SITE}/flask/app.py"),
    ("json", "/usr/lib/python3.12/json/__init__.py"),
    ("__main__", "/src/main.py"),
    ("_relaunch_bootstrap", "/x/bootstrap.py"),
    ("numpy", f"{SITE}/numpy/__init__.py"),
]


def test_installed_modules_in_import_order_once_each() -> None:
    assert preload_candidates(MODULES, installed=installed) == [
        "json",
        "flask",
        "flask.app",
        "numpy",
    ]


def test_deny_names_a_module_or_a_whole_package() -> None:
    assert preload_candidates(MODULES, installed=installed, deny={"flask"}) == ["json", "numpy"]
    assert preload_candidates(MODULES, installed=installed, deny={"flask.app"}) == [
        "json",
        "flask",
        "numpy",
    ]
    assert "numpy" in preload_candidates(MODULES, installed=installed, deny={"num"})


def test_already_loaded_names_are_not_asked_again() -> None:
    assert preload_candidates(MODULES, installed=installed, already={"json", "flask"}) == [
        "flask.app",
        "numpy",
    ]


def test_the_module_run_with_dash_m_is_never_preloaded() -> None:
    modules = [
        ("tool", f"{SITE}/tool/__init__.py"),
        ("tool.__main__", f"{SITE}/tool/__main__.py"),
        ("tool.serve", f"{SITE}/tool/serve.py"),
        ("tool.serve.worker", f"{SITE}/tool/serve/worker.py"),
    ]
    # runpy would warn and run a second copy if `-m tool.serve.worker` were imported.
    assert preload_candidates(modules, installed=installed, main="tool.serve.worker") == [
        "tool",
        "tool.__main__",
        "tool.serve",
    ]
    # `-m tool` runs tool.__main__; the package itself may be preloaded.
    assert preload_candidates(modules, installed=installed, main="tool") == [
        "tool",
        "tool.serve",
        "tool.serve.worker",
    ]


def test_package_changes_are_metadata_entries_directly_in_site_packages() -> None:
    roots = {SITE}
    assert is_package_change(f"{SITE}/flask-3.1.dist-info", roots)
    assert is_package_change(f"{SITE}/distutils-precedence.pth", roots)
    assert is_package_change(f"{SITE}/old.egg-link", roots)
    assert not is_package_change(f"{SITE}/flask/app.py", roots)
    assert not is_package_change(f"{SITE}/flask/x.dist-info", roots)
    assert not is_package_change("/src/pkg.dist-info", roots)


def test_rebuild_reasons() -> None:
    def why(*changed: str) -> str | None:
        return should_rebuild(
            changed,
            zygote_files={f"{SITE}/flask/app.py"},
            site_roots={SITE},
            interpreter="/usr/bin/python3.12",
        )

    assert why("/src/app.py") is None
    assert "has it loaded" in (why("/src/app.py", f"{SITE}/flask/app.py") or "")
    assert why("/usr/bin/python3.12") == "the Python interpreter changed"
    assert why(f"{SITE}/requests-2.0.dist-info") == "installed packages changed"
    assert should_rebuild([], zygote_files=(), site_roots=(), interpreter=None) is None


def test_environment_changes_stale_every_process_made_before() -> None:
    """What both the zygote and the checkpoints are made stale by, whatever they ran."""

    def why(path: str, interpreter: str | None = "/usr/bin/python3.12") -> str | None:
        return environment_change(path, site_roots={SITE}, interpreter=interpreter)

    assert why("/usr/bin/python3.12") == "the Python interpreter changed"
    assert why("/usr/bin/python3.12", interpreter=None) is None
    assert why(f"{SITE}/requests-2.0.dist-info") == "installed packages changed"
    assert why(f"{SITE}/easy-install.pth") == "installed packages changed"
    assert why(f"{SITE}/flask/app.py") is None  # a module: only what ran it cares
    assert why("/src/app.py") is None
