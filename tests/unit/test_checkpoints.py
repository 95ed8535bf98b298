"""The checkpoint decisions: what a parked process says, when it is still valid, which
one a reload forks, how many are kept."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from relaunch.run.checkpoint_rules import (
    MAX_CHECKPOINTS,
    Checkpoint,
    admit,
    choose,
    parse_hello,
    spoiled_by,
    stale,
    stale_each,
    thinner,
)

SITE = "/venv/lib/python3.11/site-packages"
FILES = {"/p/app.py": (10, 100), "/p/models.py": (11, 50), f"{SITE}/lib/__init__.py": (5, 9)}


def spoiled(
    paths: list[str],
    *,
    files: Collection[str] = tuple(FILES),
    existing: Collection[str] = ("/p/app.py", "/p/models.py", "/p/views.py", "/p/later.py"),
    watched: Collection[str] = ("/p/settings.toml", "/p/app.py", "/p/models.py"),
    on_disk: Collection[str] = ("/p/new.py", "/p/views.py", "/p/later.py"),
    interpreter: str | None = "/usr/bin/python3.11",
) -> str | None:
    return spoiled_by(
        paths,
        hot="/p/views.py",
        files=files,
        existing=existing,
        watched=lambda p: p in watched,
        exists=lambda p: p in on_disk,
        site_roots={SITE},
        interpreter=interpreter,
    )


def test_the_hot_file_itself_and_files_run_after_it_leave_it_valid() -> None:
    assert spoiled(["/p/views.py", "/p/later.py"]) is None


def test_the_hot_file_deleted_spoils_it() -> None:
    assert spoiled(["/p/views.py"], on_disk=()) == "/p/views.py was deleted"


def test_a_file_that_ran_before_it_spoils_it() -> None:
    assert spoiled(["/p/views.py", "/p/models.py"]) == "/p/models.py changed, and it ran before"


def test_an_installed_file_that_ran_before_it_spoils_it() -> None:
    assert "lib/__init__.py changed" in str(spoiled([f"{SITE}/lib/__init__.py"]))


def test_a_new_module_spoils_it_an_existing_one_does_not() -> None:
    assert "a new module appeared (/p/new.py)" in str(spoiled(["/p/new.py"]))
    # Deleted again (an editor's temporary file): nothing a cold start could import.
    assert spoiled(["/p/gone.py"]) is None


def test_a_watched_file_that_is_not_a_module_spoils_it() -> None:
    why = spoiled(["/p/settings.toml"])
    assert why == "/p/settings.toml changed, which the program may have read before"
    assert spoiled(["/p/notes.txt"]) is None  # not watched: nothing the program reads


def test_installed_packages_and_the_interpreter_spoil_it() -> None:
    assert spoiled([f"{SITE}/requests-2.0.dist-info"]) == "installed packages changed"
    assert spoiled(["/usr/bin/python3.11"]) == "the Python interpreter changed"


def look_at(now: Mapping[str, tuple[int, int]]):  # type: ignore[no-untyped-def]
    return lambda path: now.get(path, (-1, -1))


def test_stale_compares_what_ran_with_the_files_now() -> None:
    assert stale(FILES, look_at(FILES)) is None
    edited = {**FILES, "/p/models.py": (12, 50)}
    assert stale(FILES, look_at(edited)) == "/p/models.py changed, and it ran before"
    resized = {**FILES, "/p/app.py": (10, 101)}
    assert stale(FILES, look_at(resized)) == "/p/app.py changed, and it ran before"
    deleted = {k: v for k, v in FILES.items() if k != "/p/models.py"}
    assert stale(FILES, look_at(deleted)) is not None


def point(file: str, ran: int, serial: int, spoiled: str = "") -> Checkpoint:
    files = {f"/p/m{i}.py": (i, i) for i in range(ran)}
    return Checkpoint(serial, file, files, frozenset(), serial, spoiled=spoiled)


def test_stale_each_names_the_out_of_date_ones_looking_at_each_file_once() -> None:
    looked: list[str] = []
    disk = {"/p/a.py": (1, 10), "/p/b.py": (2, 20), "/p/c.py": (9, 30)}

    def look(path: str) -> tuple[int, int]:
        looked.append(path)
        return disk.get(path, (-1, -1))

    checkpoints = {
        1: {"/p/a.py": (1, 10), "/p/b.py": (2, 20)},  # as it ran them
        2: {"/p/a.py": (1, 10), "/p/c.py": (3, 30)},  # c.py written since, same size
        3: {"/p/gone.py": (4, 40)},
    }
    assert stale_each(checkpoints, look) == {
        2: "/p/c.py changed, and it ran before",
        3: "/p/gone.py changed, and it ran before",
    }
    assert sorted(looked) == ["/p/a.py", "/p/b.py", "/p/c.py", "/p/gone.py"]


def test_choose_takes_the_valid_one_that_ran_the_most() -> None:
    early, late = point("/p/models.py", 10, 1), point("/p/views.py", 20, 2)
    assert choose([early, late]) is late
    late.spoiled = "/p/models.py changed, and it ran before"
    assert choose([early, late]) is early
    early.spoiled = "x"
    assert choose([early, late]) is None
    assert choose([]) is None


def test_choose_breaks_a_tie_with_the_latest() -> None:
    first, second = point("/p/a.py", 5, 1), point("/p/b.py", 5, 2)
    assert choose([second, first]) is second


def test_admit_replaces_the_older_checkpoint_before_the_same_file() -> None:
    old = point("/p/views.py", 10, 1)
    other = point("/p/models.py", 5, 2)
    new = point("/p/views.py", 12, 3)
    kept, dropped = admit([old, other], new)
    assert kept == [other, new]
    assert dropped == [old]


def test_admit_keeps_no_checkpoint_out_of_date_on_arrival_and_it_replaces_nothing() -> None:
    # A hello that came late, after an edit of a file that ran before it: the one
    # parked since, before the same file, stays.
    good = point("/p/views.py", 12, 1)
    late = point("/p/views.py", 12, 2, spoiled="/p/admin.py changed, and it ran before")
    kept, dropped = admit([good], late)
    assert kept == [good]
    assert dropped == [late]


def test_admit_keeps_at_most_the_cap_dropping_the_oldest() -> None:
    points = [point(f"/p/f{i}.py", i, i) for i in range(MAX_CHECKPOINTS)]
    new = point("/p/new.py", 1, 99)
    kept, dropped = admit(points, new)
    assert len(kept) == MAX_CHECKPOINTS
    assert dropped == [points[0]]
    assert kept[-1] is new


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        {"ev": "checkpoint", "pid": 5, "file": "rel.py", "files": []},
        {"ev": "checkpoint", "pid": True, "file": "/p/a.py", "files": []},
        {"ev": "checkpoint", "pid": 0, "file": "/p/a.py", "files": []},
        {"ev": "checkpoint", "pid": 5, "file": "/p/a.py", "files": [["/p/b.py", 1]]},
        {"ev": "checkpoint", "pid": 5, "file": "/p/a.py", "files": [["b.py", 1, 2]]},
        {"ev": "checkpoint", "pid": 5, "file": "/p/a.py", "files": [["/p/b\0.py", 1, 2]]},
        {"ev": "checkpoint", "pid": 5, "file": "/p/a.py", "files": [["/p/b.py", "1", 2]]},
        {"ev": "checkpoint", "pid": 5, "file": "/p/a.py"},
        {"ev": "refused", "pid": 5, "file": "/p/a.py", "why": ""},
        {"ev": "other", "pid": 5, "file": "/p/a.py", "files": []},
    ],
)
def test_parse_hello_drops_what_does_not_fit(message: object) -> None:
    assert parse_hello(message) is None


def test_parse_hello_keeps_the_import_order() -> None:
    files = [["/p/z.py", 1, 2], ["/p/a.py", 3, 4], ["/p/./m.py", -1, -1]]
    hello = parse_hello({"ev": "checkpoint", "pid": 7, "file": "/p/v.py", "files": files})
    assert hello is not None
    assert (hello.pid, hello.file, hello.why) == (7, "/p/v.py", "")
    assert list(hello.files.items()) == [
        ("/p/z.py", (1, 2)),
        ("/p/a.py", (3, 4)),
        ("/p/m.py", (-1, -1)),
    ]


def test_parse_hello_reads_a_refusal() -> None:
    hello = parse_hello(
        {"ev": "refused", "pid": 7, "file": "/p/v.py", "why": "the program had started a thread"}
    )
    assert hello is not None and hello.why == "the program had started a thread"
    assert not hello.files


def test_thinner_counts_the_zygotes_files_a_checkpoint_lacks() -> None:
    assert thinner(FILES, []) == 0
    assert thinner(FILES, [f"{SITE}/lib/__init__.py"]) == 0
    assert thinner(FILES, [f"{SITE}/lib/__init__.py", f"{SITE}/waitress/__init__.py"]) == 1
