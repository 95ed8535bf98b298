"""The bootstrap's dependency-free JSON encoder must agree with the json module."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaunch._inside.bootstrap import _json


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        'say "hi"',
        "back\\slash",
        '\\"',
        "tab\there",
        "new\nline\r\n",
        "\x00\x01\x1f",
        "\x7f del",
        "é ü ß 中文 🎉",
        "\u2028\u2029",
        "\udcff",
        "/home/\udce9t\udcff/x.py",
        "\ud800",
        "\udfff",
        "a\ud83d",
        '/x\\y/"z"/\x1b[0m',
        0,
        -1,
        2**70,
        True,
        False,
        [],
        {},
        ["a", 1, True, ["b", [False]]],
        {"t": "mods", "p": [["app", "/src/app.py", 1700000000000000000]]},
        {'k"ey': {"\n": ["\udcff"]}},
    ],
)
def test_json_round_trips(value: Any) -> None:
    text = _json(value)
    assert json.loads(text) == value
    # what the child writes is UTF-8 on the pipe
    assert json.loads(text.encode("utf-8")) == value


def test_json_bool_is_not_an_int() -> None:
    assert _json(True) == "true"
    assert _json([False]) == "[false]"


def test_json_escapes_control_characters() -> None:
    text = _json("a\nb\x00")
    assert "\n" not in text and "\x00" not in text


def _no_surrogate_pair(text: str) -> bool:
    # JSON cannot tell a lone high surrogate followed by a lone low surrogate from the
    # escaped pair of one astral character (json.dumps has the same limit).
    return not any(
        "\ud800" <= a <= "\udbff" and "\udc00" <= b <= "\udfff" for a, b in pairwise(text)
    )


texts = st.text(st.characters(codec=None, exclude_categories=())).filter(_no_surrogate_pair)
values = st.recursive(
    texts | st.integers() | st.booleans(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_json_round_trips_property(value: Any) -> None:
    text = _json(value)
    assert json.loads(text.encode("utf-8", "strict")) == value


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF) | st.characters()))
def test_json_surrogateescape_paths(text: str) -> None:
    assert json.loads(_json(text)) == text
