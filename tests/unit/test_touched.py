"""What a touched path means to the supervisor (relaunch.run.touched.classify), case by
case: the facts are given, so each case says which answer it needs and in what order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from relaunch.run.touched import Kind, classify, rereads_gitignore

OVERFLOW = "<overflow>"


@dataclass
class Facts:
    release_link: bool = False
    folder: bool = False
    known_file: bool = False
    new: bool = False
    ignored: bool = False
    imported_under: bool = False
    asked: list[str] = field(default_factory=list)

    def is_release_link(self, path: str) -> bool:
        self.asked.append("release_link")
        return self.release_link

    def is_folder(self, path: str) -> bool:
        self.asked.append("folder")
        return self.folder

    def is_known_file(self, path: str) -> bool:
        self.asked.append("known_file")
        return self.known_file

    def appeared(self, path: str) -> bool:
        self.asked.append("appeared")
        return self.new

    def ignores_folder(self, path: str) -> bool:
        self.asked.append("ignored")
        return self.ignored

    def holds_imported(self, path: str) -> bool:
        self.asked.append("imported_under")
        return self.imported_under


def kind(path: str, facts: Facts, *, failed: bool = False) -> Kind:
    return classify(path, facts, overflow=OVERFLOW, failed=failed)


def test_a_release_link_is_only_that() -> None:
    facts = Facts(release_link=True, folder=True)
    assert kind("/srv/app/current", facts) is Kind.RELEASE_LINK
    assert facts.asked == ["release_link"]


def test_the_overflow_marker_means_every_file() -> None:
    assert kind(OVERFLOW, Facts()) is Kind.OVERFLOW


def test_a_watched_file_and_a_new_one() -> None:
    assert kind("/p/app.py", Facts(known_file=True)) is Kind.FILE
    facts = Facts(known_file=True, new=True)
    assert kind("/p/templates/new.html", facts) is Kind.NEW_FILE
    assert facts.asked == ["release_link", "folder", "known_file", "appeared"]


def test_a_folder_is_never_a_file_even_when_the_watch_set_matches_it() -> None:
    facts = Facts(folder=True, known_file=True)
    assert kind("/p/pkg", facts) is Kind.FOLDER
    assert "known_file" not in facts.asked


def test_inside_an_ignored_folder_nothing_happens() -> None:
    facts = Facts(folder=True, ignored=True)
    assert kind("/p/__pycache__", facts) is Kind.IGNORED_FOLDER
    assert kind("/p/.git/index", Facts(ignored=True, imported_under=True)) is Kind.IGNORED_FOLDER


def test_a_folder_that_vanished_is_found_by_what_was_imported_from_it() -> None:
    # Gone: not a folder on disk any more, but imported files were under it.
    facts = Facts(imported_under=True)
    assert kind("/p/pkg", facts) is Kind.FOLDER
    assert facts.asked[-1] == "imported_under"


@pytest.mark.parametrize(("failed", "expected"), [(True, Kind.NEW_MODULE), (False, Kind.NOTHING)])
def test_a_new_module_counts_only_while_the_program_is_failed(failed: bool, expected: Kind) -> None:
    assert kind("/p/missing.py", Facts(), failed=failed) is expected
    assert kind("/p/notes.txt", Facts(), failed=failed) is Kind.NOTHING


def test_a_gitignore_is_read_again_only_when_gitignore_rules_are_used() -> None:
    assert rereads_gitignore("/p/sub/.gitignore", gitignore=True)
    assert not rereads_gitignore("/p/sub/.gitignore", gitignore=False)
    assert not rereads_gitignore("/p/sub/gitignore.py", gitignore=True)
