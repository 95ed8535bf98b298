"""Unit tests for relaunch.pathtext: file names in log lines."""

from __future__ import annotations

import pytest

from relaunch.pathtext import shown


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/views.py", "app/views.py"),
        ("my notes/été.txt", "my notes/été.txt"),
        ("a\nb.py", "'a\\nb.py'"),
        ("x\r[relaunch] reload #9.py", "'x\\r[relaunch] reload #9.py'"),
        ("\x1b[31mred.py", "'\\x1b[31mred.py'"),
        ("bad\udcff.py", "'bad\\udcff.py'"),
        ("line\u2028sep.py", "'line\\u2028sep.py'"),
    ],
)
def test_shown(path: str, expected: str) -> None:
    assert shown(path) == expected
    assert "\n" not in shown(path) and "\r" not in shown(path)
    shown(path).encode("utf-8")  # always writable to a UTF-8 stream
