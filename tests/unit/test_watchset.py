"""Unit tests for relaunch.watch.watchset: --watch entries and the watched/ignored decision."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from relaunch.watch.rules import GitIgnore, Glob, IgnoreRules
from relaunch.watch.watchset import Decision, WatchEntry, WatchSet, is_within

# --- is_within --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/a/b", "/a", True),
        ("/a", "/a", True),
        ("/a/b/c", "/a/", True),
        ("/ab", "/a", False),
        ("/a", "/a/b", False),
        ("/x", "/", True),
        ("/", "/", True),
    ],
)
def test_is_within(path: str, root: str, expected: bool) -> None:
    assert is_within(path, root) is expected


# --- WatchEntry.parse -------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "config.toml").write_text("")
    return tmp_path


def test_parse_file(tree: Path) -> None:
    entry = WatchEntry.parse("config.toml", cwd=str(tree))
    assert entry == WatchEntry("config.toml", str(tree / "config.toml"), "file")
    assert entry.base == str(tree)
    assert entry.matches(str(tree / "config.toml"))
    assert not entry.matches(str(tree / "config.toml.bak"))


def test_parse_absolute_file(tree: Path) -> None:
    entry = WatchEntry.parse(str(tree / "src" / "pkg" / "mod.py"), cwd="/")
    assert entry.kind == "file"
    assert entry.path == str(tree / "src" / "pkg" / "mod.py")


def test_parse_dir(tree: Path) -> None:
    entry = WatchEntry.parse("./src/", cwd=str(tree))
    assert entry == WatchEntry("./src/", str(tree / "src"), "dir")
    assert entry.base == str(tree / "src")
    assert entry.matches(str(tree / "src" / "pkg" / "mod.py"))
    assert entry.matches(str(tree / "src" / "new.txt"))
    assert not entry.matches(str(tree / "src"))
    assert not entry.matches(str(tree / "srcx" / "a.py"))


def test_parse_dir_normalises(tree: Path) -> None:
    entry = WatchEntry.parse("src/pkg/../pkg", cwd=str(tree))
    assert entry.path == str(tree / "src" / "pkg")
    assert entry.kind == "dir"


@pytest.mark.parametrize(
    ("text", "path", "base"),
    [
        ("*.toml", "{t}/**/*.toml", "{t}"),
        ("src/**/*.py", "{t}/src/**/*.py", "{t}/src"),
        ("src/pkg/*.py", "{t}/src/pkg/*.py", "{t}/src/pkg"),
    ],
)
def test_parse_glob(tree: Path, text: str, path: str, base: str) -> None:
    entry = WatchEntry.parse(text, cwd=str(tree))
    assert entry.kind == "glob"
    assert entry.text == text
    assert entry.path == path.format(t=tree)
    assert entry.base == base.format(t=tree)


def test_glob_entry_matches(tree: Path) -> None:
    entry = WatchEntry.parse("src/**/*.py", cwd=str(tree))
    assert entry.matches(str(tree / "src" / "pkg" / "mod.py"))
    assert entry.matches(str(tree / "src" / "new.py"))
    assert not entry.matches(str(tree / "src" / "pkg" / "data.json"))
    assert not entry.matches(str(tree / "other.py"))


def test_parse_missing_path(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        WatchEntry.parse("nope.toml", cwd=str(tree))


def test_parse_glob_with_missing_base(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"folder {tree}/missing does not exist"):
        WatchEntry.parse("missing/*.py", cwd=str(tree))


def test_parse_glob_base_is_a_file(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WatchEntry.parse("config.toml/*.py", cwd=str(tree))


def test_parse_expands_user(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    entry = WatchEntry.parse("~/config.toml", cwd="/")
    assert entry.path == str(tree / "config.toml")
    assert entry.kind == "file"


# --- WatchSet.add / decide --------------------------------------------------------------

SITE = "/usr/lib/python3.12"
SITE_PACKAGES = "/proj/.venv/lib/python3.12/site-packages"


def make_set(**kwargs: object) -> WatchSet:
    kwargs.setdefault("excluded_roots", [SITE, SITE_PACKAGES, ""])
    return WatchSet(**kwargs)  # type: ignore[arg-type]


def test_add_imported_file() -> None:
    ws = make_set()
    assert ws.add("/proj/app.py") is True
    assert ws.imported == {"/proj/app.py": "imported by the program"}
    assert ws.decide("/proj/app.py") == Decision(True, "imported by the program")
    assert ws.matches("/proj/app.py")
    # a second report changes nothing
    assert ws.add("/proj/app.py", "in the traceback") is False
    assert ws.imported["/proj/app.py"] == "imported by the program"


def test_add_with_custom_reason() -> None:
    ws = make_set()
    assert ws.add("/proj/boom.py", "in the traceback of the crash")
    assert ws.decide("/proj/boom.py") == Decision(True, "in the traceback of the crash")


@pytest.mark.parametrize("path", [f"{SITE}/json/__init__.py", f"{SITE_PACKAGES}/flask/app.py"])
def test_add_excluded_root(path: str) -> None:
    ws = make_set()
    assert ws.add(path) is False
    assert path not in ws.imported
    decision = ws.decide(path, candidate="imported by the program")
    assert not decision.watched
    assert "standard library or an installed package" in decision.reason
    assert "--watch-installed" in decision.reason


@pytest.mark.parametrize("path", [f"{SITE}/json/__init__.py", f"{SITE_PACKAGES}/flask/app.py"])
def test_add_excluded_root_with_watch_installed(path: str) -> None:
    ws = make_set(watch_installed=True)
    assert ws.add(path) is True
    assert ws.decide(path) == Decision(True, "imported by the program")


def test_excluded_roots_are_normalised_and_exact() -> None:
    ws = make_set(excluded_roots=["/usr/lib/python3.12/", "/opt/x/../y"])
    assert ws.excluded_roots == ("/usr/lib/python3.12", "/opt/y")
    assert not ws.add("/opt/y/m.py")
    # a sibling whose name merely starts with the root is not inside it
    assert ws.add("/usr/lib/python3.12x/m.py")


def test_set_excluded_roots_later() -> None:
    ws = WatchSet()
    assert ws.decide("/opt/lib/m.py", candidate="imported").watched
    ws.set_excluded_roots(["/opt/lib"])
    assert not ws.decide("/opt/lib/m.py", candidate="imported").watched


def test_add_ignored_by_builtin_rule() -> None:
    ws = make_set()
    assert ws.add("/proj/mod.pyc") is False
    assert ws.decide("/proj/mod.pyc", candidate="imported by the program") == Decision(
        False, "ignored by built-in ignore '*.py[cod]'"
    )


def test_add_ignored_by_user_glob() -> None:
    ws = make_set(rules=IgnoreRules(user=[Glob("migrations/", "/proj")]))
    assert ws.add("/proj/migrations/0001.py") is False
    assert ws.decide("/proj/migrations/0001.py", candidate="imported") == Decision(
        False, "ignored by --ignore 'migrations/'"
    )


def test_imported_file_ignored_by_gitignore_is_still_watched(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("local_settings.py\n")
    rules = IgnoreRules(gitignore=GitIgnore(str(tmp_path)), bases=[str(tmp_path)])
    ws = make_set(rules=rules, entries=[WatchEntry(str(tmp_path), str(tmp_path), "dir")])
    path = str(tmp_path / "local_settings.py")
    # Not imported: the .gitignore rule applies to the folder watch.
    decision = ws.decide(path)
    assert not decision.watched
    assert decision.reason.startswith("ignored by ")
    assert decision.reason.endswith(".gitignore (pattern 1)")
    # Imported: watched regardless.
    assert ws.add(path)
    assert ws.decide(path) == Decision(True, "imported by the program")


def test_decide_watch_glob() -> None:
    ws = make_set(entries=[WatchEntry("templates/**/*.html", "/proj/templates/**/*.html", "glob")])
    assert ws.decide("/proj/templates/a/b.html") == Decision(True, "--watch 'templates/**/*.html'")
    assert ws.decide("/proj/templates/a/b.txt") == Decision(
        False, "not imported by the program and matched by no --watch"
    )


def test_decide_watch_file_and_dir() -> None:
    ws = make_set(
        entries=[
            WatchEntry("config.toml", "/proj/config.toml", "file"),
            WatchEntry("static", "/proj/static", "dir"),
        ]
    )
    assert ws.decide("/proj/config.toml") == Decision(True, "--watch 'config.toml'")
    assert ws.decide("/proj/static/css/site.css") == Decision(True, "--watch 'static'")
    assert not ws.decide("/proj/other.toml").watched
    # ignore rules apply to --watch entries too
    assert ws.decide("/proj/static/x.swp") == Decision(False, "ignored by built-in ignore '*.swp'")


def test_decide_first_matching_entry_names_the_reason() -> None:
    ws = make_set(
        entries=[
            WatchEntry("*.toml", "/proj/**/*.toml", "glob"),
            WatchEntry("/proj", "/proj", "dir"),
        ]
    )
    assert ws.decide("/proj/a.toml").reason == "--watch '*.toml'"
    assert ws.decide("/proj/a.txt").reason == "--watch '/proj'"


def test_decide_unwatched_file_in_excluded_root() -> None:
    ws = make_set()
    assert ws.decide(f"{SITE}/os.py") == Decision(
        False, f"in the standard library or an installed package ({SITE})"
    )


def test_decide_imported_beats_watch_entries() -> None:
    ws = make_set(entries=[WatchEntry("/proj", "/proj", "dir")])
    ws.add("/proj/app.py")
    assert ws.decide("/proj/app.py") == Decision(True, "imported by the program")


def test_decide_is_a_question_not_a_change() -> None:
    ws = make_set()
    assert ws.decide("/proj/app.py", candidate="imported").watched
    assert ws.imported == {}
    assert not ws.decide("/proj/app.py").watched


def test_reasons_are_human_readable() -> None:
    ws = make_set(entries=[WatchEntry("static", "/proj/static", "dir")])
    ws.add("/proj/app.py")
    for path in [
        "/proj/app.py",
        "/proj/static/a.css",
        "/proj/x.pyc",
        "/proj/other.py",
        f"{SITE}/os.py",
    ]:
        reason = ws.decide(path).reason
        assert isinstance(reason, str)
        assert len(reason) > 5
        assert "Decision" not in reason and "None" not in reason


# --- directories() / files() ------------------------------------------------------------


def test_directories_of_imported_files(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    ws = make_set()
    ws.add(str(tmp_path / "app.py"))
    ws.add(str(tmp_path / "pkg" / "mod.py"))
    assert ws.directories() == {str(tmp_path), str(tmp_path / "pkg")}
    assert ws.files() == {str(tmp_path / "app.py"), str(tmp_path / "pkg" / "mod.py")}


def test_directories_missing_parent_falls_back_to_existing_ancestor(tmp_path: Path) -> None:
    ws = make_set()
    ws.add(str(tmp_path / "gone" / "deeper" / "mod.py"))
    assert ws.directories() == {str(tmp_path)}
    # the file itself stays in files(): it may come back
    assert ws.files() == {str(tmp_path / "gone" / "deeper" / "mod.py")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    for d in [
        "pkg/sub",
        "node_modules/react",
        "pkg/__pycache__",
        ".git/objects",
        "env/lib",
        "static",
    ]:
        (root / d).mkdir(parents=True)
    (root / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "env" / "lib" / "site.py").write_text("")
    (root / "app.py").write_text("")
    (root / "notes.txt").write_text("")
    (root / "pkg" / "sub" / "mod.py").write_text("")
    (root / "pkg" / "__pycache__" / "mod.cpython-312.pyc").write_text("")
    (root / "pkg" / "mod.pyc").write_text("")
    (root / "node_modules" / "react" / "index.js").write_text("")
    (root / "static" / "site.css").write_text("")
    return root


def test_directories_of_a_dir_entry_skip_ignored_folders(project: Path) -> None:
    ws = make_set(entries=[WatchEntry.parse(str(project), cwd="/")])
    assert ws.directories() == {
        str(project),
        str(project / "pkg"),
        str(project / "pkg" / "sub"),
        str(project / "static"),
    }
    assert ws.files() == {
        str(project / "app.py"),
        str(project / "notes.txt"),
        str(project / "pkg" / "sub" / "mod.py"),
        str(project / "static" / "site.css"),
    }


def test_directories_of_a_dir_entry_skip_user_ignored_folders(project: Path) -> None:
    rules = IgnoreRules(user=[Glob("static", str(project))])
    ws = make_set(entries=[WatchEntry.parse(str(project), cwd="/")], rules=rules)
    assert str(project / "static") not in ws.directories()
    assert str(project / "static" / "site.css") not in ws.files()


def test_directories_of_a_dir_entry_skip_user_ignored_folders_trailing_slash(
    project: Path,
) -> None:
    # `--ignore static/` means the folder and everything below: it must not be walked
    # (each walked folder costs an OS watch).
    rules = IgnoreRules(user=[Glob("static/", str(project))])
    ws = make_set(entries=[WatchEntry.parse(str(project), cwd="/")], rules=rules)
    assert str(project / "static" / "site.css") not in ws.files()
    assert str(project / "static") not in ws.directories()


def test_directories_of_a_glob_entry(project: Path) -> None:
    ws = make_set(entries=[WatchEntry.parse("pkg/**/*.py", cwd=str(project))])
    assert ws.directories() == {str(project / "pkg"), str(project / "pkg" / "sub")}
    assert ws.files() == {str(project / "pkg" / "sub" / "mod.py")}


def test_directories_of_a_file_entry(project: Path) -> None:
    ws = make_set(entries=[WatchEntry.parse("notes.txt", cwd=str(project))])
    assert ws.directories() == {str(project)}
    assert ws.files() == {str(project / "notes.txt")}


def test_directories_combine_entries_and_imports(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "lib"
    elsewhere.mkdir()
    ws = make_set(entries=[WatchEntry.parse("static", cwd=str(project))])
    ws.add(str(elsewhere / "util.py"))
    assert ws.directories() == {str(project / "static"), str(elsewhere)}
    assert ws.files() == {str(project / "static" / "site.css"), str(elsewhere / "util.py")}


def test_tree_is_cached_until_invalidated(project: Path) -> None:
    ws = make_set(entries=[WatchEntry.parse("static", cwd=str(project))])
    assert ws.files() == {str(project / "static" / "site.css")}
    (project / "static" / "new").mkdir()
    (project / "static" / "new" / "a.js").write_text("")
    assert str(project / "static" / "new") not in ws.directories()
    ws.invalidate_tree()
    assert str(project / "static" / "new") in ws.directories()
    assert str(project / "static" / "new" / "a.js") in ws.files()


def test_a_file_that_appeared_joins_the_files_without_a_rewalk(project: Path) -> None:
    ws = make_set(entries=[WatchEntry.parse("static", cwd=str(project))])
    assert ws.files() == {str(project / "static" / "site.css")}
    new = project / "static" / "new.css"
    new.write_text("")
    assert ws.appeared(str(new)) is True
    assert str(new) in ws.files()
    assert ws.appeared(str(new)) is False  # already there
    # Not matched by any entry, ignored, or not a file: not taken in.
    (project / "notes2.txt").write_text("")
    (project / "static" / "x.log").write_text("")
    (project / "static" / "dir").mkdir()
    for path in ("notes2.txt", "static/x.log", "static/dir", "static/gone.css"):
        assert ws.appeared(str(project / path)) is False
        assert str(project / path) not in ws.files()


def test_a_tree_with_a_limit_takes_at_most_that_many_files_and_folders(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for d in range(4):
        (tmp_path / f"d{d}").mkdir()
        for f in range(5):
            (tmp_path / f"d{d}" / f"f{f}.txt").write_text("")
    entry = WatchEntry.parse(str(tmp_path), cwd="/")
    capped = make_set(entries=[dataclasses.replace(entry, limit=10)])
    assert len(capped.files()) + len(capped.directories()) == 10
    assert "watching only the first 10" in caplog.text
    caplog.clear()
    whole = make_set(entries=[dataclasses.replace(entry, limit=25)])
    assert len(whole.files()) == 20 and len(whole.directories()) == 5
    assert "watching only" not in caplog.text


def test_walk_does_not_follow_symlinks(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.py").write_text("")
    os.symlink(outside, project / "static" / "link")
    ws = make_set(entries=[WatchEntry.parse("static", cwd=str(project))])
    assert str(project / "static" / "link") not in ws.directories()
    assert str(outside) not in ws.directories()


def test_unlisted_in_finds_what_appeared_after_the_listing(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    ws = WatchSet(
        entries=[WatchEntry.parse("conf", cwd=str(tmp_path))],
        rules=IgnoreRules(bases=[str(tmp_path)]),
    )
    files, dirs = ws.files(), ws.directories()
    conf = str(tmp_path / "conf")
    assert not ws.unlisted_in([conf], files, dirs)
    (tmp_path / "conf" / "app.log").write_text("ignored")  # a built-in ignore
    (tmp_path / "conf" / "__pycache__").mkdir()
    assert not ws.unlisted_in([conf], files, dirs)
    (tmp_path / "conf" / "settings.txt").write_text("new")
    assert ws.unlisted_in([conf], files, dirs)
    ws.invalidate_tree()
    files, dirs = ws.files(), ws.directories()
    assert not ws.unlisted_in([conf], files, dirs)
    (tmp_path / "conf" / "sub").mkdir()  # a watched folder, empty for now
    assert ws.unlisted_in([conf], files, dirs)


def test_new_modules_next_to_watched_ones_since_a_time(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import helper\n")
    ws = WatchSet(rules=IgnoreRules(bases=[str(tmp_path)]))
    ws.add(str(tmp_path / "app.py"))
    (tmp_path / "old.py").write_text("")
    os.utime(tmp_path / "old.py", ns=(10**9, 10**9))
    since = (tmp_path / "app.py").stat().st_mtime_ns
    (tmp_path / "helper.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert ws.new_modules(since) == {str(tmp_path / "helper.py")}


# --- folders the program asks for (relaunch.watch(folder)) -------------------------------


def test_a_folder_the_program_asks_for_is_watched_like_a_watch_folder(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "shop").mkdir(parents=True)
    page = templates / "shop" / "index.html"
    page.write_text("x")
    watchset = WatchSet(rules=IgnoreRules(bases=[str(tmp_path)]))
    assert watchset.add_folder(str(templates), "relaunch.watch() folder")
    assert watchset.decide(str(page)) == Decision(True, "relaunch.watch() folder")
    assert str(page) in watchset.files()
    assert str(page) not in watchset.imported  # not program code: serve refreshes pages
    # Asked again, or for a folder inside it: nothing new.
    assert not watchset.add_folder(str(templates), "relaunch.watch() folder")
    assert not watchset.add_folder(str(templates / "shop"), "relaunch.watch() folder")
    (tmp_path / "static").mkdir()
    assert watchset.add_folder(str(tmp_path / "static"), "relaunch.watch() folder")
    assert len(watchset.entries) == 2
