"""Which paths relaunch ignores, and why: built-in rules, --ignore globs, .gitignore.

Everything here is pure except :class:`GitIgnore`, which reads .gitignore files
(lazily, once each). Decisions carry the rule that made them, so ``--explain`` can
tell the user exactly why a path is or is not watched.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pathspec

__all__ = [
    "BUILTIN_IGNORED_DIRS",
    "BUILTIN_IGNORED_FILES",
    "GitIgnore",
    "Glob",
    "IgnoreRules",
    "builtin_ignore_reason",
    "git_top",
    "glob_base",
    "has_magic",
]

# Folders that never hold code worth reloading for, at any depth.
BUILTIN_IGNORED_DIRS = frozenset(
    {
        "__pycache__", ".git", ".hg", ".svn", ".bzr", "_darcs", ".jj",
        ".venv", "venv", ".tox", ".nox", "node_modules", "__pypackages__",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".cache",
        ".eggs", ".idea", ".vscode", ".direnv", "htmlcov",
    }
)  # fmt: skip

# The name tempfile.mkstemp() and NamedTemporaryFile() give by default: "tmp" and 8 of
# [a-z0-9_], no suffix (so never a module).
_PY_TEMPFILE = "tmp" + "[a-z0-9_]" * 8

# Files that programs, editors and tools write next to code: bytecode, logs,
# databases and their journals, editor swap, backup and temp files.
BUILTIN_IGNORED_FILES = (
    "*.py[cod]", "*.log", "*.log.[0-9]*",
    "*.sqlite", "*.sqlite3", "*.sqlite-*", "*.sqlite3-*", "*.db", "*.db-*", "*-journal",
    "*-wal", "*-shm",
    "*.swp", "*.swo", "*.swx", "*.swpx", "*~", ".#*", "#*#", "4913",  # vim, emacs
    "*___jb_tmp___", "*___jb_old___", "*___jb_bak___",  # JetBrains safe write
    "*.tmp", ".*.tmp", "*.crswap", "*.vsctmp", ".DS_Store", "Thumbs.db", ".coverage", ".coverage.*",
    _PY_TEMPFILE,  # Python's tempfile.mkstemp(dir=...), which formatters write and rename over
)  # fmt: skip

_MAGIC = re.compile(r"[*?\[]")


def has_magic(pattern: str) -> bool:
    return bool(_MAGIC.search(pattern))


def builtin_ignore_reason(path: str, base: str | None = None) -> str | None:
    """The built-in rule that ignores ``path``, or None.

    Folder rules look only at the part of the path below ``base`` (the folder being
    watched), so a project that itself lives under, say, ``~/.cache`` still works.
    """
    path = path.replace(os.sep, "/")
    if base and path.startswith(base.rstrip("/") + "/"):
        path = path[len(base.rstrip("/")) + 1 :]
    else:
        path = path.rsplit("/", 1)[-1]
    parts = path.split("/")
    for part in parts[:-1]:
        if part in BUILTIN_IGNORED_DIRS:
            return f"built-in ignore of '{part}/' folders"
    name = parts[-1]
    if name in BUILTIN_IGNORED_DIRS:
        return f"built-in ignore of '{name}/' folders"
    for pattern in BUILTIN_IGNORED_FILES:
        if fnmatch.fnmatchcase(name, pattern):
            return f"built-in ignore '{pattern}'"
    return None


def _translate(pattern: str) -> str:
    """A glob with ``**`` support as a regex over '/'-separated absolute paths."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^/" + body[1:]  # a wildcard never crosses a folder separator
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def glob_base(pattern: str) -> str:
    """The longest leading part of an absolute glob without wildcards: the folder to watch."""
    parts = pattern.split("/")
    base: list[str] = []
    for part in parts[:-1]:
        if has_magic(part):
            break
        base.append(part)
    return "/".join(base) or "/"


@dataclass(frozen=True)
class Glob:
    """A glob pattern (``*``, ``?``, ``[...]``, ``**``) anchored at an absolute folder.

    A pattern without '/' matches the file name at any depth below the anchor, as in
    .gitignore; one with '/' matches the path relative to the anchor.
    """

    text: str
    anchor: str

    def __post_init__(self) -> None:
        # Compiled now, so a bad pattern ('[z-a]') is a mistake reported at start,
        # not an exception on the first path it is asked about.
        try:
            _compiled(self)
        except re.error as exc:
            raise ValueError(f"'{self.text}' is not a valid glob ({exc.msg})") from None

    def _regex(self) -> re.Pattern[str]:
        pattern = self.text.replace(os.sep, "/")
        if pattern.startswith("/"):
            full = pattern
        elif "/" not in pattern.rstrip("/"):
            full = self.anchor.rstrip("/") + "/**/" + pattern
        else:
            full = self.anchor.rstrip("/") + "/" + pattern.removeprefix("./")
        if full.endswith("/"):
            full += "**"
        return re.compile(_translate(full) + r"(?:/.*)?\Z")

    def matches(self, path: str) -> bool:
        return bool(_compiled(self).match(path.replace(os.sep, "/")))

    @property
    def absolute(self) -> str:
        pattern = self.text.replace(os.sep, "/")
        if pattern.startswith("/"):
            return pattern
        if "/" not in pattern.rstrip("/"):
            return self.anchor.rstrip("/") + "/**/" + pattern
        return self.anchor.rstrip("/") + "/" + pattern.removeprefix("./")


_regex_cache: dict[Glob, re.Pattern[str]] = {}


def _compiled(glob: Glob) -> re.Pattern[str]:
    compiled = _regex_cache.get(glob)
    if compiled is None:
        compiled = _regex_cache[glob] = glob._regex()
    return compiled


def git_top(start: str) -> str | None:
    """The work tree holding ``start`` (the folder with .git), or None outside one."""
    current = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _gitignore_spec(lines: list[str]) -> pathspec.GitIgnoreSpec:
    """The spec of these .gitignore lines; a line that is no valid pattern matches
    nothing, as in git, and keeps its place, so pattern numbers stay the file's."""
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except re.error:
        pass
    valid = []
    for line in lines:
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except re.error:
            line = "#"  # a comment: matches nothing, keeps its number
        valid.append(line)
    return pathspec.GitIgnoreSpec.from_lines(valid)


class GitIgnore:
    """The .gitignore files that apply to paths below ``top`` (the repository root).

    Files are read when first needed; nested .gitignore files are honoured, deeper
    files overriding shallower ones as git does.
    """

    def __init__(self, top: str) -> None:
        self.top = top.rstrip("/") or "/"
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    @classmethod
    def find(cls, start: str) -> GitIgnore | None:
        """The .gitignore rules of the repository holding ``start``, or None outside one."""
        top = git_top(start)
        return cls(top) if top else None

    def _spec(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._specs:
            spec = None
            try:
                with open(os.path.join(directory, ".gitignore"), encoding="utf-8") as f:
                    spec = _gitignore_spec(f.read().splitlines())
            except (OSError, UnicodeDecodeError):
                pass
            self._specs[directory] = spec
        return self._specs[directory]

    def forget(self, directory: str) -> None:
        """Drop a cached .gitignore (it was edited)."""
        self._specs.pop(directory, None)

    def reason(self, path: str, *, is_dir: bool = False) -> str | None:
        """Which .gitignore ignores ``path``, or None if none does (or one re-includes it)."""
        if path != self.top and not path.startswith(self.top.rstrip("/") + "/"):
            return None
        verdict: str | None = None
        directory = self.top
        rest = path[len(self.top) :].strip("/").split("/")
        for depth in range(len(rest)):
            spec = self._spec(directory)
            if spec is not None:
                rel = "/".join(rest[depth:]) + ("/" if is_dir else "")
                result = spec.check_file(rel)
                if result.include is True:
                    where = os.path.join(directory, ".gitignore")
                    line = "" if result.index is None else f" (pattern {result.index + 1})"
                    verdict = f"{os.path.relpath(where)}{line}"
                elif result.include is False:
                    verdict = None
            directory = os.path.join(directory, rest[depth])
        return verdict


class IgnoreRules:
    """Everything that makes relaunch ignore a path, in the order it is asked.

    ``user`` globs (--ignore) apply to every path; built-in rules apply to every
    path; .gitignore applies to folder and glob watches but not to files the program
    imported (a git-ignored ``local_settings.py`` that the app imports still reloads).
    """

    def __init__(
        self,
        *,
        user: Iterable[Glob] = (),
        gitignore: GitIgnore | None = None,
        builtin: bool = True,
        bases: Iterable[str] = (),
    ) -> None:
        self.user = tuple(user)
        self.gitignore = gitignore
        self.builtin = builtin
        # Longest first, so a path is judged relative to the deepest folder holding it.
        self.bases = sorted({b.rstrip("/") or "/" for b in bases}, key=len, reverse=True)

    def _base(self, path: str) -> str | None:
        for base in self.bases:
            if path.startswith(base.rstrip("/") + "/"):
                return base
        return None

    def reason(self, path: str, *, imported: bool = False, is_dir: bool = False) -> str | None:
        """Why ``path`` is ignored, or None when it is not."""
        for glob in self.user:
            # "static/" names the folder itself as well as what is below it.
            if glob.matches(path) or (is_dir and glob.matches(path + "/")):
                return f"--ignore '{glob.text}'"
        if self.builtin:
            why = builtin_ignore_reason(path, self._base(path))
            if why:
                return why
        if not imported and self.gitignore is not None:
            why = self.gitignore.reason(path, is_dir=is_dir)
            if why:
                return why
        return None
