"""Unit tests for relaunch.watch.fingerprint: did a file really change?"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaunch.watch import fingerprint
from relaunch.watch.fingerprint import Fingerprint, Fingerprints, changed, take

D1 = b"\x01" * 16
D2 = b"\x02" * 16


def fp(mtime: int, size: int, digest: bytes | None) -> Fingerprint:
    return Fingerprint(mtime, size, digest)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, None, False),  # never existed
        (None, fp(1, 10, D1), True),  # appeared
        (fp(1, 10, D1), None, True),  # disappeared
        (fp(1, 10, D1), fp(1, 10, D1), False),  # nothing happened
        (fp(1, 10, D1), fp(2, 10, D1), False),  # no-op save: same content, newer mtime
        (fp(1, 10, D1), fp(2, 10, D2), True),  # content changed, same size
        (fp(1, 10, D1), fp(1, 10, D2), True),  # content changed within the mtime granularity
        (fp(5, 10, D1), fp(3, 10, D1), True),  # mtime backwards: an older version restored
        (fp(1, 10, D1), fp(2, 11, D1), True),  # size changed
        (fp(1, 10, D1), fp(1, 11, D1), True),  # size changed, same mtime
        # no digest (large files): size and mtime only
        (fp(1, 10, None), fp(1, 10, None), False),
        (fp(1, 10, None), fp(2, 10, None), True),
        (fp(1, 10, D1), fp(2, 10, None), True),
        (fp(1, 10, None), fp(2, 10, D1), True),
        (fp(1, 10, None), fp(1, 10, D1), False),
        (fp(2, 10, None), fp(1, 10, None), True),
    ],
)
def test_changed(old: Fingerprint | None, new: Fingerprint | None, expected: bool) -> None:
    assert changed(old, new) is expected


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


def test_take(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_bytes(b"hello")
    set_mtime(f, 1_000_000_000_000)
    result = take(str(f))
    assert result is not None
    assert result.size == 5
    assert result.mtime_ns == 1_000_000_000_000
    assert result.digest is not None
    g = tmp_path / "b.py"
    g.write_bytes(b"hello")
    h = tmp_path / "c.py"
    h.write_bytes(b"hellp")
    assert take(str(g)).digest == result.digest  # type: ignore[union-attr]
    assert take(str(h)).digest != result.digest  # type: ignore[union-attr]


def test_take_missing_or_folder(tmp_path: Path) -> None:
    assert take(str(tmp_path / "missing")) is None
    assert take(str(tmp_path)) is None


def test_take_large_file_has_no_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint, "HASH_LIMIT", 4)
    f = tmp_path / "big"
    f.write_bytes(b"12345")
    result = take(str(f))
    assert result is not None
    assert result.digest is None
    assert result.size == 5


def test_update(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    path = str(f)
    prints = Fingerprints()
    f.write_text("x = 1\n")
    set_mtime(f, 1_000_000_000)
    assert path not in prints
    assert prints.update(path) is True  # never seen: counts as changed
    assert path in prints
    assert prints.update(path) is False  # nothing happened
    # a no-op save: same bytes, newer mtime
    f.write_text("x = 1\n")
    set_mtime(f, 2_000_000_000)
    assert prints.update(path) is False
    # a real edit
    f.write_text("x = 2\n")
    set_mtime(f, 3_000_000_000)
    assert prints.update(path) is True
    # restored to an older version, byte-identical: the user meant to go back
    set_mtime(f, 2_500_000_000)
    assert prints.update(path) is True
    # size change
    f.write_text("x = 22\n")
    set_mtime(f, 2_500_000_000)
    assert prints.update(path) is True
    # deleted
    f.unlink()
    assert prints.update(path) is True
    assert prints.update(path) is False  # still gone
    # back again
    f.write_text("x = 1\n")
    assert prints.update(path) is True


def test_update_never_seen_missing_file(tmp_path: Path) -> None:
    # A path never seen that does not exist (a temporary file that came and went, a
    # folder) is no change; once it was seen, its disappearance would be.
    prints = Fingerprints()
    path = str(tmp_path / "missing.py")
    assert prints.update(path) is False
    assert prints.update(path) is False


def test_remember_sets_a_baseline_once(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    path = str(f)
    prints = Fingerprints()
    assert prints.remember(path) is False
    assert path in prints
    f.write_text("x = 2\n")
    assert prints.remember(path) is False  # does not replace the baseline
    assert prints.update(path) is True  # the edit is seen against the baseline


def test_remember_loaded_mtime(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    set_mtime(f, 5_000_000_000)
    path = str(f)
    # the program loaded what is on disk now
    assert Fingerprints().remember(path, loaded_mtime_ns=5_000_000_000) is False
    # the program loaded an older version: an edit landed during start-up
    assert Fingerprints().remember(path, loaded_mtime_ns=4_000_000_000) is True
    # the child could not stat the file (-1) but it exists now
    assert Fingerprints().remember(path, loaded_mtime_ns=-1) is True


def test_remember_loaded_mtime_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "gone.py")
    assert Fingerprints().remember(path, loaded_mtime_ns=-1) is False
    assert Fingerprints().remember(path, loaded_mtime_ns=1_000) is True


def test_remember_compares_against_the_existing_baseline(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    set_mtime(f, 1_000_000_000)
    path = str(f)
    prints = Fingerprints()
    prints.remember(path)
    set_mtime(f, 2_000_000_000)
    # the baseline (1 s) is what is compared, not the file's current mtime
    assert prints.remember(path, loaded_mtime_ns=1_000_000_000) is False
    assert prints.remember(path, loaded_mtime_ns=2_000_000_000) is True


@pytest.mark.parametrize(
    ("seen", "now", "expected"),
    [
        ((5, 10), (5, 10), False),  # what it read is what is there
        ((5, 10), (6, 10), True),  # written again since (same size)
        ((5, 0), (5, 10), True),  # read truncated: the write came within the same tick
        ((5, -1), (5, 10), False),  # size not reported: the mtime decides
        ((5, 10), None, True),  # deleted since
        ((-1, -1), None, False),  # missing then, missing now
        ((-1, -1), (5, 10), True),  # missing then, there now
    ],
)
def test_differs_from_seen(
    seen: tuple[int, int], now: tuple[int, int] | None, expected: bool
) -> None:
    assert fingerprint.differs_from_seen(seen, now) is expected


def test_changed_since_seen_names_files_written_after_they_were_read(tmp_path: Path) -> None:
    kept, rewritten, gone = (tmp_path / n for n in ("kept.py", "rewritten.py", "gone.py"))
    for path in (kept, rewritten, gone):
        path.write_text("VALUE = 1\n")
    seen = {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in (kept, rewritten, gone)}
    rewritten.write_text("")  # truncated: an in-place save under way
    gone.unlink()
    assert sorted(fingerprint.changed_since_seen(seen)) == sorted([str(rewritten), str(gone)])


def test_state_is_what_the_last_fingerprint_saw(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("VALUE = 1\n")
    known = Fingerprints()
    assert known.state(str(path)) is None
    known.update(str(path))
    assert known.state(str(path)) == (path.stat().st_mtime_ns, 10)
    path.unlink()
    known.update(str(path))
    assert known.state(str(path)) == (-1, -1)


def test_absent_before_makes_the_first_fingerprint_a_creation(tmp_path: Path) -> None:
    f = tmp_path / "new.txt"
    f.write_text("x")
    prints = Fingerprints()
    prints.absent_before(str(f))
    prints.remember(str(f))  # a refresh meanwhile does not turn the creation into a baseline
    assert prints.update(str(f)) is True
    assert prints.update(str(f)) is False
    prints.absent_before(str(f))  # known already: keeps its baseline
    assert prints.update(str(f)) is False
    gone = tmp_path / "gone.txt"
    prints.absent_before(str(gone))  # came and went before it was compared: no change
    assert prints.update(str(gone)) is False


def test_an_unreadable_file_is_there_not_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "mod.py"
    f.write_text("x = 1\n")
    prints = Fingerprints()
    prints.remember(str(f))

    def refused(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr("builtins.open", refused)  # what a chmod 000 does to a reader
        unreadable = take(str(f))
        assert unreadable is not None and unreadable.digest is None
        assert prints.update(str(f)) is False
    assert prints.update(str(f)) is False  # readable again, same content
