"""Unit tests for relaunch.watch.rules: built-in ignores, globs, .gitignore, precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.watch.rules import (
    GitIgnore,
    Glob,
    IgnoreRules,
    builtin_ignore_reason,
    git_top,
    glob_base,
    has_magic,
)

BASE = "/home/u/proj"

# --- builtin_ignore_reason --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        # bytecode
        ("pkg/mod.pyc", "built-in ignore '*.py[cod]'"),
        ("pkg/mod.pyo", "built-in ignore '*.py[cod]'"),
        # folders, at any depth below the base
        ("__pycache__/mod.cpython-312.pyc", "built-in ignore of '__pycache__/' folders"),
        ("pkg/__pycache__/x.py", "built-in ignore of '__pycache__/' folders"),
        (".git/HEAD", "built-in ignore of '.git/' folders"),
        (".git/objects/ab/cdef", "built-in ignore of '.git/' folders"),
        ("web/node_modules/react/index.js", "built-in ignore of 'node_modules/' folders"),
        (".venv/lib/python3.12/site-packages/x.py", "built-in ignore of '.venv/' folders"),
        (".mypy_cache/3.12/x.json", "built-in ignore of '.mypy_cache/' folders"),
        # the folder itself, by name
        ("pkg/__pycache__", "built-in ignore of '__pycache__/' folders"),
        ("node_modules", "built-in ignore of 'node_modules/' folders"),
        # logs, databases, journals
        ("app.log", "built-in ignore '*.log'"),
        ("app.log.1", "built-in ignore '*.log.[0-9]*'"),
        ("db.sqlite3", "built-in ignore '*.sqlite3'"),
        ("data.sqlite", "built-in ignore '*.sqlite'"),
        ("store-journal", "built-in ignore '*-journal'"),
        ("store-wal", "built-in ignore '*-wal'"),
        # editors
        (".app.py.swp", "built-in ignore '*.swp'"),
        (".app.py.swo", "built-in ignore '*.swo'"),
        ("4913", "built-in ignore '4913'"),
        ("pkg/4913", "built-in ignore '4913'"),
        (".#app.py", "built-in ignore '.#*'"),
        ("#app.py#", "built-in ignore '#*#'"),
        ("app.py___jb_tmp___", "built-in ignore '*___jb_tmp___'"),
        ("app.py___jb_old___", "built-in ignore '*___jb_old___'"),
        ("app.py~", "built-in ignore '*~'"),
        (".DS_Store", "built-in ignore '.DS_Store'"),
        # Python's tempfile (formatters write one and rename it over the file)
        ("tmp_i5vzpvp", "built-in ignore 'tmp" + "[a-z0-9_]" * 8 + "'"),
        ("pkg/tmpk2j4z9q1", "built-in ignore 'tmp" + "[a-z0-9_]" * 8 + "'"),
        # not ignored
        ("app.py", None),
        ("pkg/sub/mod.py", None),
        ("templates/index.html", None),
        ("pkg/journal.py", None),
        ("pkg/logging.py", None),
        ("cachedir/x.py", None),
        ("my.git/x.py", None),
        ("49134", None),
        ("#app.py", None),
        ("tmpl_base.py", None),
        ("tmp12345678.py", None),
        ("tmp1234567", None),
        ("tmpABCDEFGH", None),
    ],
)
def test_builtin_ignore_reason(rel: str, expected: str | None) -> None:
    assert builtin_ignore_reason(f"{BASE}/{rel}", BASE) == expected


@pytest.mark.parametrize("base", ["/home/u/.cache/proj", "/home/u/.cache/proj/"])
def test_builtin_folder_rules_only_below_base(base: str) -> None:
    # The project itself lives under a folder the built-in rules ignore.
    assert builtin_ignore_reason("/home/u/.cache/proj/app.py", base) is None
    assert builtin_ignore_reason("/home/u/.cache/proj/pkg/mod.py", base) is None
    # Below the base, the folder rules still apply.
    assert (
        builtin_ignore_reason("/home/u/.cache/proj/.cache/x.py", base)
        == "built-in ignore of '.cache/' folders"
    )


def test_builtin_file_rules_apply_outside_base() -> None:
    assert builtin_ignore_reason("/elsewhere/x.pyc", BASE) == "built-in ignore '*.py[cod]'"
    assert builtin_ignore_reason("/elsewhere/x.py", BASE) is None


def test_builtin_without_base_judges_the_name_only() -> None:
    assert builtin_ignore_reason("/home/u/.venv/lib/app.py") is None
    assert builtin_ignore_reason("/home/u/proj/x.pyc") == "built-in ignore '*.py[cod]'"
    assert (
        builtin_ignore_reason("/home/u/proj/node_modules")
        == "built-in ignore of 'node_modules/' folders"
    )


def test_builtin_with_root_base() -> None:
    assert builtin_ignore_reason("/.git/config", "/") == "built-in ignore of '.git/' folders"
    assert builtin_ignore_reason("/srv/app.py", "/") is None


# --- has_magic / glob_base --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("*.py", True), ("a?c", True), ("[ab]", True), ("src/**", True), ("src/app.py", False)],
)
def test_has_magic(pattern: str, expected: bool) -> None:
    assert has_magic(pattern) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/proj/src/*.py", "/proj/src"),
        ("/proj/**/*.py", "/proj"),
        ("/proj/src/**", "/proj/src"),
        ("/proj/a?/b/*.py", "/proj"),
        ("/proj/[ab]/x.py", "/proj"),
        ("/proj/src/app.py", "/proj/src"),
        ("/*.py", "/"),
        ("/**/x", "/"),
    ],
)
def test_glob_base(pattern: str, expected: str) -> None:
    assert glob_base(pattern) == expected


# --- Glob -------------------------------------------------------------------------------

A = "/proj"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # no slash: the name, at any depth below the anchor
        ("*.py", "/proj/app.py", True),
        ("*.py", "/proj/pkg/sub/app.py", True),
        ("*.py", "/proj/app.pyc", False),
        ("*.py", "/proj/app.py.bak", False),
        ("*.py", "/other/app.py", False),
        ("*.py", "/projx/app.py", False),
        ("settings.py", "/proj/a/b/settings.py", True),
        ("settings.py", "/proj/a/b/my_settings.py", False),
        # a match covers everything below it
        ("generated", "/proj/pkg/generated/x.py", True),
        # with a slash: anchored at the anchor
        ("src/*.py", "/proj/src/app.py", True),
        ("src/*.py", "/proj/src/sub/app.py", False),
        ("src/*.py", "/proj/lib/src/app.py", False),
        ("./src/*.py", "/proj/src/app.py", True),
        ("/abs/*.cfg", "/abs/x.cfg", True),
        ("/abs/*.cfg", "/proj/abs/x.cfg", False),
        # **
        ("src/**/*.py", "/proj/src/app.py", True),
        ("src/**/*.py", "/proj/src/a/b/c/app.py", True),
        ("src/**/*.py", "/proj/lib/app.py", False),
        ("src/**", "/proj/src/a/b.txt", True),
        ("**/migrations/*.py", "/proj/app/migrations/0001.py", True),
        ("**/migrations/*.py", "/proj/migrations/0001.py", True),
        # ?
        ("a?.py", "/proj/ab.py", True),
        ("a?.py", "/proj/abc.py", False),
        ("a?.py", "/proj/a.py", False),
        ("x/a?b", "/proj/x/a/b", False),
        # [ab] and [!a]
        ("[ab].py", "/proj/a.py", True),
        ("[ab].py", "/proj/b.py", True),
        ("[ab].py", "/proj/c.py", False),
        ("[!a].py", "/proj/b.py", True),
        ("[!a].py", "/proj/a.py", False),
        ("v[0-9].txt", "/proj/v7.txt", True),
        ("v[0-9].txt", "/proj/vx.txt", False),
        # an unclosed [ is literal
        ("a[b", "/proj/a[b", True),
        ("a[b", "/proj/ab", False),
        # regex metacharacters are literal
        ("a+b.(x)", "/proj/a+b.(x)", True),
        ("a+b.(x)", "/proj/aab.(x)", False),
        # trailing '/': a folder, and everything below it
        ("build/", "/proj/build/x.py", True),
        ("build/", "/proj/pkg/build/lib/x.py", True),
        ("build/", "/proj/buildx/x.py", False),
        ("docs/_build/", "/proj/docs/_build/html/index.html", True),
        ("docs/_build/", "/proj/x/docs/_build/index.html", False),
    ],
)
def test_glob_matches(pattern: str, path: str, expected: bool) -> None:
    assert Glob(pattern, A).matches(path) is expected


def test_glob_bracket_negation_does_not_match_a_slash() -> None:
    # As in git and fnmatch-per-segment globbing, no wildcard (`*`, `?`, `[...]`) crosses
    # a folder separator: `x[!a]y` matches `xby`, never the path `x/y`.
    assert Glob("x[!a]y", A).matches("/proj/xby")
    assert not Glob("x[!a]y", A).matches("/proj/x/y")


@pytest.mark.parametrize(
    ("pattern", "anchor", "absolute"),
    [
        ("*.py", "/proj", "/proj/**/*.py"),
        ("*.py", "/proj/", "/proj/**/*.py"),
        ("src/*.py", "/proj", "/proj/src/*.py"),
        ("./src/*.py", "/proj", "/proj/src/*.py"),
        ("/etc/*.conf", "/proj", "/etc/*.conf"),
        ("build/", "/proj", "/proj/**/build/"),
    ],
)
def test_glob_absolute(pattern: str, anchor: str, absolute: str) -> None:
    assert Glob(pattern, anchor).absolute == absolute


def test_glob_absolute_matches_like_the_glob() -> None:
    glob = Glob("src/**/*.py", A)
    again = Glob(glob.absolute, "/")
    for path in ["/proj/src/a.py", "/proj/src/x/y.py", "/proj/a.py", "/proj/src/a.txt"]:
        assert again.matches(path) == glob.matches(path)


# --- git_top / GitIgnore ----------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree with nested .gitignore files. The cwd is the repo (reasons are relative)."""
    top = tmp_path / "repo"
    (top / ".git").mkdir(parents=True)
    (top / ".gitignore").write_text("# comment\n*.log\nbuild/\n/local.py\nsecret*\n")
    (top / "pkg" / "sub").mkdir(parents=True)
    (top / "pkg" / ".gitignore").write_text("!keep.log\ngen_*.py\n")
    (top / "pkg" / "sub" / ".gitignore").write_text("!gen_keep.py\n")
    monkeypatch.chdir(top)
    return top


def test_git_top(repo: Path, tmp_path: Path) -> None:
    assert git_top(str(repo / "pkg" / "sub")) == str(repo)
    assert git_top(str(repo / "pkg" / "sub" / "missing.py")) == str(repo)
    assert git_top(str(repo)) == str(repo)


def test_git_top_worktree_file(tmp_path: Path) -> None:
    # In a linked work tree or submodule, .git is a file.
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text("gitdir: /elsewhere\n")
    assert git_top(str(tmp_path / "wt" / "x")) == str(tmp_path / "wt")


def test_gitignore_find(repo: Path, tmp_path: Path) -> None:
    found = GitIgnore.find(str(repo / "pkg"))
    assert found is not None
    assert found.top == str(repo)


@pytest.mark.parametrize(
    ("rel", "is_dir", "expected"),
    [
        ("app.py", False, None),
        ("app.log", False, ".gitignore (pattern 2)"),
        ("deep/er/app.log", False, ".gitignore (pattern 2)"),
        # dir-only pattern: the folder, and files below it, but not a file of that name
        ("build", True, ".gitignore (pattern 3)"),
        ("build/lib/x.py", False, ".gitignore (pattern 3)"),
        ("pkg/build/x.py", False, ".gitignore (pattern 3)"),
        ("build", False, None),
        # anchored pattern
        ("local.py", False, ".gitignore (pattern 4)"),
        ("pkg/local.py", False, None),
        ("secret.txt", False, ".gitignore (pattern 5)"),
        # a deeper .gitignore re-includes
        ("pkg/keep.log", False, None),
        ("pkg/sub/keep.log", False, None),
        ("other/keep.log", False, ".gitignore (pattern 2)"),
        # a deeper .gitignore adds a pattern...
        ("pkg/gen_models.py", False, "pkg/.gitignore (pattern 2)"),
        ("pkg/sub/gen_models.py", False, "pkg/.gitignore (pattern 2)"),
        ("gen_models.py", False, None),
        # ...which an even deeper one overrides
        ("pkg/sub/gen_keep.py", False, None),
        ("pkg/gen_keep.py", False, "pkg/.gitignore (pattern 2)"),
    ],
)
def test_gitignore_reason(repo: Path, rel: str, is_dir: bool, expected: str | None) -> None:
    gitignore = GitIgnore(str(repo))
    assert gitignore.reason(str(repo / rel), is_dir=is_dir) == expected


def test_gitignore_outside_the_repo(repo: Path, tmp_path: Path) -> None:
    gitignore = GitIgnore(str(repo))
    assert gitignore.reason(str(tmp_path / "app.log")) is None
    assert gitignore.reason(str(tmp_path / "repo2" / "app.log")) is None
    assert gitignore.reason("/") is None


def test_gitignore_without_gitignore_files(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert GitIgnore(str(tmp_path)).reason(str(tmp_path / "x.log")) is None


def test_gitignore_is_cached_until_forgotten(repo: Path) -> None:
    gitignore = GitIgnore(str(repo))
    path = str(repo / "notes.txt")
    assert gitignore.reason(path) is None
    (repo / ".gitignore").write_text("*.txt\n")
    assert gitignore.reason(path) is None  # cached
    gitignore.forget(str(repo))
    assert gitignore.reason(path) == ".gitignore (pattern 1)"


def test_gitignore_undecodable_file_is_skipped(repo: Path) -> None:
    (repo / ".gitignore").write_bytes(b"\xff\xfe*.log\n")
    assert GitIgnore(str(repo)).reason(str(repo / "app.log")) is None


def test_gitignore_invalid_pattern_matches_nothing_and_keeps_the_numbering(repo: Path) -> None:
    """As in git: a line that is no pattern ('[z-a]') matches nothing; the rest apply."""
    (repo / ".gitignore").write_text("*.log\n[z-a]\nbuild/\n")
    gitignore = GitIgnore(str(repo))
    assert gitignore.reason(str(repo / "app.log")) == ".gitignore (pattern 1)"
    assert gitignore.reason(str(repo / "z")) is None
    assert gitignore.reason(str(repo / "build"), is_dir=True) == ".gitignore (pattern 3)"


@pytest.mark.parametrize("pattern", ["**/[z-a]", "[z-a].py", "src/[9-0]*/x"])
def test_invalid_glob_is_refused_when_made(pattern: str) -> None:
    """Refused at start (--ignore, --watch), not on the first path the watcher sees."""
    with pytest.raises(ValueError, match=r"is not a valid glob \(bad character range"):
        Glob(pattern, "/proj")


# --- IgnoreRules ------------------------------------------------------------------------


def test_ignore_rules_nothing_configured() -> None:
    rules = IgnoreRules(builtin=False)
    assert rules.reason("/proj/x.pyc") is None


def test_ignore_rules_user_glob_first(repo: Path) -> None:
    rules = IgnoreRules(
        user=[Glob("*.log", str(repo)), Glob("*.pyc", str(repo))],
        gitignore=GitIgnore(str(repo)),
        bases=[str(repo)],
    )
    # Matched by a user glob, the built-in rules and .gitignore: the user glob wins.
    assert rules.reason(str(repo / "app.log")) == "--ignore '*.log'"
    assert rules.reason(str(repo / "x.pyc")) == "--ignore '*.pyc'"


def test_ignore_rules_builtin_before_gitignore(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.pyc\n__pycache__/\n")
    rules = IgnoreRules(gitignore=GitIgnore(str(repo)), bases=[str(repo)])
    assert rules.reason(str(repo / "x.pyc")) == "built-in ignore '*.py[cod]'"
    assert (
        rules.reason(str(repo / "__pycache__"), is_dir=True)
        == "built-in ignore of '__pycache__/' folders"
    )


def test_ignore_rules_gitignore_last(repo: Path) -> None:
    rules = IgnoreRules(gitignore=GitIgnore(str(repo)), bases=[str(repo)])
    assert rules.reason(str(repo / "local.py")) == ".gitignore (pattern 4)"
    assert rules.reason(str(repo / "build"), is_dir=True) == ".gitignore (pattern 3)"
    assert rules.reason(str(repo / "app.py")) is None


def test_ignore_rules_gitignore_not_for_imported_files(repo: Path) -> None:
    rules = IgnoreRules(
        user=[Glob("*.tmp.py", str(repo))], gitignore=GitIgnore(str(repo)), bases=[str(repo)]
    )
    assert rules.reason(str(repo / "local.py"), imported=True) is None
    assert rules.reason(str(repo / "local.py"), imported=False) == ".gitignore (pattern 4)"
    # but --ignore and the built-in rules still apply to imported files
    assert rules.reason(str(repo / "x.tmp.py"), imported=True) == "--ignore '*.tmp.py'"
    assert rules.reason(str(repo / "x.pyc"), imported=True) == "built-in ignore '*.py[cod]'"


def test_ignore_rules_builtin_can_be_disabled() -> None:
    rules = IgnoreRules(builtin=False, bases=["/proj"])
    assert rules.reason("/proj/x.pyc") is None
    assert rules.reason("/proj/node_modules/a.js") is None


def test_ignore_rules_builtin_judged_below_the_deepest_base() -> None:
    rules = IgnoreRules(bases=["/home/u", "/home/u/.cache/proj/"])
    # Below /home/u the path crosses '.cache'; but the deepest base holding it is the
    # project, and below that nothing is ignored.
    assert rules.reason("/home/u/.cache/proj/app.py") is None
    assert rules.reason("/home/u/.cache/other/app.py") == "built-in ignore of '.cache/' folders"
    assert rules.reason("/home/u/.cache/proj/.venv/x.py") == "built-in ignore of '.venv/' folders"
