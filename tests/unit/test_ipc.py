"""Unit tests for relaunch.run.ipc: the supervisor validates every line the child sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaunch.run.ipc import MAX_ITEMS, MAX_LINE, Message, MessageReader, parse


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- parse: accepted --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"t": "running"}, Message("running")),
        ({"t": "reload"}, Message("reload")),
        ({"t": "hooks"}, Message("hooks")),
        ({"t": "hooks-done"}, Message("hooks-done")),
        ({"t": "changes"}, Message("changes")),
        ({"t": "handled"}, Message("handled")),
        ({"t": "unhandled"}, Message("unhandled")),
        ({"t": "watch", "p": ["/a/b.py", "/c"]}, Message("watch", paths=("/a/b.py", "/c"))),
        ({"t": "watch", "p": []}, Message("watch")),
        ({"t": "failed", "p": ["/app/main.py"]}, Message("failed", paths=("/app/main.py",))),
        # paths are normalised
        ({"t": "watch", "p": ["/a/./b/../c.py"]}, Message("watch", paths=("/a/c.py",))),
        (
            {"t": "mods", "p": [["app", "/src/app.py", 1700000000000000000], ["x", "/x.py", -1]]},
            Message(
                "mods",
                modules=(("app", "/src/app.py", 1700000000000000000), ("x", "/x.py", -1)),
                sizes=(-1, -1),
            ),
        ),
        # with the size the child saw
        (
            {"t": "mods", "p": [["app", "/src/app.py", 17, 120], ["x", "/x.py", -1, -1]]},
            Message(
                "mods",
                modules=(("app", "/src/app.py", 17), ("x", "/x.py", -1)),
                sizes=(120, -1),
            ),
        ),
        ({"t": "mods", "p": []}, Message("mods")),
        ({"t": "loaded"}, Message("loaded")),
        (
            {"t": "error", "summary": "ZeroDivisionError: x", "file": "/app/a.py", "line": 3},
            Message("error", paths=("/app/a.py",), text="ZeroDivisionError: x", line=3),
        ),
        ({"t": "error", "summary": "", "file": "", "line": 0}, Message("error", text="")),
        ({"t": "tb", "text": "Traceback..."}, Message("tb", text="Traceback...")),
        ({"t": "ready"}, Message("ready")),
        # non-ASCII and surrogate-escaped paths survive
        ({"t": "watch", "p": ["/home/é/ü.py"]}, Message("watch", paths=("/home/é/ü.py",))),
        ({"t": "watch", "p": ["/x/\udcff.py"]}, Message("watch", paths=("/x/\udcff.py",))),
    ],
)
def test_parse_accepts(data: dict[str, Any], expected: Message) -> None:
    assert parse(line(data)) == expected


def test_parse_accepts_whitespace_and_crlf() -> None:
    assert parse(b'  {"t": "running"}\r') == Message("running")


def test_parse_truncates_error_summary() -> None:
    message = parse(line({"t": "error", "summary": "x" * 5000, "file": "", "line": 0}))
    assert message is not None
    assert message.text == "x" * 2000


def test_parse_accepts_max_items() -> None:
    paths = ["/a"] * MAX_ITEMS
    message = parse(line({"t": "watch", "p": paths}))
    assert message is not None
    assert len(message.paths) == MAX_ITEMS


def test_parse_accepts_a_line_of_exactly_max_line() -> None:
    prefix = b'{"t":"tb","text":"'
    raw = prefix + b"x" * (MAX_LINE - len(prefix) - 2) + b'"}'
    assert len(raw) == MAX_LINE
    assert parse(raw) is not None


# --- parse: rejected --------------------------------------------------------------------

REJECTED: list[bytes] = [
    b"",
    b"not json",
    b"{",
    b'{"t": "running"',
    b"\xff\xfe garbage",
    b'"running"',
    b"[]",
    b'["running"]',
    b"null",
    b"42",
    # unknown kinds
    b"{}",
    b'{"t": "explode"}',
    b'{"t": "RUNNING"}',
    b'{"t": null}',
    b'{"t": 1}',
    # extra or missing keys
    b'{"t": "running", "x": 1}',
    b'{"t": "watch"}',
    b'{"t": "watch", "p": [], "q": 1}',
    b'{"t": "error"}',
    b'{"t": "error", "summary": "x", "more": 1}',
    b'{"t": "error", "summary": "x", "file": "relative.py", "line": 1}',
    b'{"t": "error", "summary": "x", "file": "", "line": true}',
    b'{"t": "tb", "text": 1}',
    b'{"t": "mods", "p": [], "x": 1}',
    # wrong types
    b'{"t": "watch", "p": "/a"}',
    b'{"t": "watch", "p": {"/a": 1}}',
    b'{"t": "watch", "p": [1]}',
    b'{"t": "watch", "p": [null]}',
    b'{"t": "watch", "p": [["/a"]]}',
    b'{"t": "error", "summary": 1}',
    b'{"t": "error", "summary": null}',
    b'{"t": "mods", "p": {}}',
    # bad paths
    b'{"t": "watch", "p": ["relative/path.py"]}',
    b'{"t": "watch", "p": ["./x.py"]}',
    b'{"t": "watch", "p": [""]}',
    b'{"t": "watch", "p": ["/a", "b"]}',
    b'{"t": "watch", "p": ["/a\\u0000b"]}',
    b'{"t": "failed", "p": ["~/x.py"]}',
    # bad module triples
    b'{"t": "mods", "p": [["m", "/a.py"]]}',
    b'{"t": "mods", "p": [["m", "/a.py", 1, 2, 3]]}',
    b'{"t": "mods", "p": [["m", "/a.py", 1, true]]}',
    b'{"t": "mods", "p": [["m", "/a.py", 1, "2"]]}',
    b'{"t": "mods", "p": [["m", "/a.py", true]]}',
    b'{"t": "mods", "p": [["m", "/a.py", false]]}',
    b'{"t": "mods", "p": [["m", "/a.py", 1.5]]}',
    b'{"t": "mods", "p": [["m", "/a.py", "1"]]}',
    b'{"t": "mods", "p": [["m", "/a.py", null]]}',
    b'{"t": "mods", "p": [[1, "/a.py", 1]]}',
    b'{"t": "mods", "p": [["m", "a.py", 1]]}',
    b'{"t": "mods", "p": [["m", "/a\\u0000.py", 1]]}',
    b'{"t": "mods", "p": [{"name": "m", "path": "/a.py", "mtime": 1}]}',
    b'{"t": "mods", "p": ["/a.py"]}',
]


@pytest.mark.parametrize("raw", REJECTED)
def test_parse_rejects(raw: bytes) -> None:
    assert parse(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        # An unhashable "t" must be rejected like any other malformed message, not raise.
        b'{"t": []}',
        b'{"t": {}}',
        b'{"t": ["running"]}',
        b'{"t": {"a": 1}, "p": []}',
    ],
)
def test_parse_rejects_unhashable_kind(raw: bytes) -> None:
    assert parse(raw) is None


def test_parse_rejects_too_many_items() -> None:
    assert parse(line({"t": "watch", "p": ["/a"] * (MAX_ITEMS + 1)})) is None
    assert parse(line({"t": "mods", "p": [["m", "/a", 1]] * (MAX_ITEMS + 1)})) is None


def test_parse_rejects_overlong_module_name() -> None:
    assert parse(line({"t": "mods", "p": [["m" * 1000, "/a", 1]]})) is not None
    assert parse(line({"t": "mods", "p": [["m" * 1001, "/a", 1]]})) is None


def test_parse_rejects_overlong_lines() -> None:
    prefix = b'{"t":"tb","text":"'
    raw = prefix + b"x" * (MAX_LINE - len(prefix) - 1) + b'"}'
    assert len(raw) == MAX_LINE + 1
    assert parse(raw) is None
    assert parse(b" " * (MAX_LINE + 1) + b'{"t":"running"}') is None


def test_parse_deep_nesting_does_not_raise() -> None:
    assert parse(b"[" * 5000 + b"]" * 5000) is None
    assert parse(b'{"t":"watch","p":' + b"[" * 4000 + b"]" * 4000 + b"}") is None


def test_parse_huge_integer_does_not_raise() -> None:
    raw = b'{"t":"mods","p":[["m","/a",' + b"9" * 5000 + b"]]}"
    assert parse(raw) is None


# --- MessageReader ----------------------------------------------------------------------

RUNNING = b'{"t":"running"}\n'
WATCH = b'{"t":"watch","p":["/a.py"]}\n'


def test_reader_one_message() -> None:
    reader = MessageReader()
    assert reader.feed(RUNNING) == [Message("running")]
    assert reader.buffer == b""


def test_reader_multiple_messages_per_chunk() -> None:
    reader = MessageReader()
    assert reader.feed(RUNNING + WATCH + RUNNING) == [
        Message("running"),
        Message("watch", paths=("/a.py",)),
        Message("running"),
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_reader_split_chunks(size: int) -> None:
    data = RUNNING + WATCH + b'{"t":"reload"}\n'
    reader = MessageReader()
    got: list[Message] = []
    for i in range(0, len(data), size):
        got.extend(reader.feed(data[i : i + size]))
    assert got == [Message("running"), Message("watch", paths=("/a.py",)), Message("reload")]


def test_reader_keeps_a_partial_line() -> None:
    reader = MessageReader()
    assert reader.feed(b'{"t":"run') == []
    assert reader.feed(b'ning"}') == []
    assert reader.feed(b"\n") == [Message("running")]


def test_reader_drops_bad_lines_and_reports_them() -> None:
    bad: list[bytes] = []
    reader = MessageReader(on_bad=bad.append)
    assert reader.feed(b"garbage\n" + RUNNING + b'{"t":"nope"}\n') == [Message("running")]
    assert bad == [b"garbage", b'{"t":"nope"}']


def test_reader_drops_an_overlong_line_and_its_continuation() -> None:
    bad: list[bytes] = []
    reader = MessageReader(on_bad=bad.append)
    # An overlong line arrives in pieces: the first piece alone is already too long.
    assert reader.feed(RUNNING + b"x" * (MAX_LINE + 10)) == [Message("running")]
    assert len(reader.buffer) <= MAX_LINE
    assert reader.feed(b"y" * (MAX_LINE * 2)) == []
    assert len(reader.buffer) <= MAX_LINE
    # Its tail, which happens to look like a message, must not be taken for one.
    assert reader.feed(b'{"t":"reload"}\n' + WATCH) == [Message("watch", paths=("/a.py",))]
    assert reader.feed(RUNNING) == [Message("running")]


def test_reader_drops_an_overlong_line_arriving_whole() -> None:
    bad: list[bytes] = []
    reader = MessageReader(on_bad=bad.append)
    long = b'{"t":"error","summary":"' + b"x" * MAX_LINE + b'"}\n'
    assert reader.feed(long + RUNNING) == [Message("running")]
    assert len(bad) == 1


def test_reader_line_of_max_line_is_not_skipped() -> None:
    prefix = b'{"t":"tb","text":"'
    raw = prefix + b"x" * (MAX_LINE - len(prefix) - 2) + b'"}'
    reader = MessageReader()
    assert reader.feed(raw) == []
    messages = reader.feed(b"\n" + RUNNING)
    assert [m.kind for m in messages] == ["tb", "running"]


def test_reader_empty_lines() -> None:
    bad: list[bytes] = []
    reader = MessageReader(on_bad=bad.append)
    assert reader.feed(b"\n\n" + RUNNING) == [Message("running")]
    assert bad == [b"", b""]


# --- properties -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
kinds = st.sampled_from(
    ["running", "reload", "hooks", "hooks-done", "watch", "failed", "mods", "error", "x"]
)
message_like = st.fixed_dictionaries(
    {"t": kinds | json_values},
    optional={"p": json_values, "summary": json_values, "x": json_values},
)


def check(result: object) -> None:
    assert result is None or isinstance(result, Message)
    if isinstance(result, Message):
        for path in result.paths:
            assert path.startswith("/") and "\0" not in path
        for name, path, mtime in result.modules:
            assert isinstance(name, str)
            assert path.startswith("/") and "\0" not in path
            assert type(mtime) is int


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_arbitrary_bytes_never_raises(raw: bytes) -> None:
    check(parse(raw))


@settings(max_examples=300, deadline=None)
@given(message_like)
def test_parse_message_like_json_never_raises(data: dict[str, Any]) -> None:
    check(parse(json.dumps(data).encode()))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=10))
def test_reader_arbitrary_chunks_never_raise(chunks: list[bytes]) -> None:
    reader = MessageReader()
    for chunk in chunks:
        for message in reader.feed(chunk):
            check(message)
        assert len(reader.buffer) <= MAX_LINE + 50


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from([RUNNING, WATCH, b"junk\n", b'{"t":"reload"}\n']), min_size=1, max_size=8
    ),
    st.data(),
)
def test_reader_chunking_does_not_matter(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    whole = MessageReader().feed(stream)
    reader = MessageReader()
    pieces: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        pieces.extend(reader.feed(stream[start:cut]))
        start = cut
    assert pieces == whole
    assert len(whole) == sum(1 for item in lines if item != b"junk\n")
