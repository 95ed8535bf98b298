"""Whether a process that loaded the app may serve (relaunch.run.takeover.judge): the
half-written-module guard's decision, from what the process saw and the facts now."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from relaunch.run.takeover import LookAgain, Replace, Serve, judge, moved_since_loaded

S = 1_000_000_000
NOW = 1_000 * S
QUIET = S // 100  # 10 ms
MAX_WAIT = S  # 1 s
OLD = NOW - 60 * S  # written a minute ago


@dataclass
class Facts:
    on_disk: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    writing: frozenset[str] = frozenset()
    open_for_write: frozenset[str] = frozenset()
    batch: dict[str, tuple[int, int]] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # where every write raises one
    asked_open: list[str] = field(default_factory=list)

    def state_now(self, path: str) -> tuple[int, int] | None:
        return self.on_disk[path]

    def being_written(self) -> Collection[str]:
        return self.writing

    def open_for_writing(self, path: str) -> bool | None:
        self.asked_open.append(path)
        return path in self.open_for_write

    def batch_state(self, path: str) -> tuple[int, int] | None:
        return self.batch.get(path)

    def event_ns(self, path: str) -> int | None:
        return self.events.get(path)


def verdict(seen: dict[str, tuple[int, int]], facts: Facts) -> object:
    return judge(seen, facts, now_ns=NOW, quiet_ns=QUIET, max_wait_ns=MAX_WAIT)


def test_nothing_moved_and_quiet_long_enough_serves() -> None:
    seen = {"/p/app.py": (OLD, 120), "/p/msg.py": (OLD, 15)}
    facts = Facts(on_disk=dict(seen))
    assert verdict(seen, facts) == Serve()
    assert facts.asked_open == []  # written long ago: the kernel is not asked
    assert verdict({}, Facts()) == Serve()


def test_a_file_changed_since_it_was_read_replaces_the_process() -> None:
    seen = {"/p/app.py": (OLD, 120), "/p/msg.py": (OLD, 0)}  # read while truncated
    facts = Facts(on_disk={"/p/app.py": (OLD, 120), "/p/msg.py": (OLD + 5, 15)})
    assert verdict(seen, facts) == Replace(["/p/msg.py"])


def test_a_file_gone_since_it_was_read_replaces_the_process() -> None:
    seen = {"/p/msg.py": (OLD, 15)}
    assert verdict(seen, Facts(on_disk={"/p/msg.py": None})) == Replace(["/p/msg.py"])


def test_a_file_being_written_replaces_the_process() -> None:
    seen = {"/p/msg.py": (OLD, 15)}
    facts = Facts(on_disk=dict(seen), writing=frozenset({"/p/msg.py", "/p/other.py"}))
    assert verdict(seen, facts) == Replace(["/p/msg.py"])  # only the files it read


def test_the_kernel_is_asked_about_files_written_lately_only() -> None:
    recent = NOW - S // 2
    seen = {"/p/new.py": (recent, 15), "/p/old.py": (OLD, 15)}
    facts = Facts(on_disk=dict(seen), open_for_write=frozenset({"/p/new.py", "/p/old.py"}))
    assert moved_since_loaded(seen, facts, now_ns=NOW, max_wait_ns=MAX_WAIT) == ["/p/new.py"]
    assert facts.asked_open == ["/p/new.py"]


def test_a_file_the_batch_saw_otherwise_replaces_the_process() -> None:
    # It read the file in the middle of a save: what the batch saw is the finished one.
    seen = {"/p/msg.py": (OLD, 0)}
    facts = Facts(on_disk=dict(seen), batch={"/p/msg.py": (OLD, 15)})
    assert verdict(seen, facts) == Replace(["/p/msg.py"])


def test_a_file_written_just_now_is_looked_at_again_once_quiet() -> None:
    just_now = NOW - QUIET // 2
    seen = {"/p/msg.py": (just_now, 15)}
    result = verdict(seen, Facts(on_disk=dict(seen)))
    assert isinstance(result, LookAgain)
    # Quiet for the settle period, plus a tick of file-time lag, after the write.
    assert 0 < result.after <= (QUIET + 20_000_000) / S


def test_a_file_time_may_lag_so_a_file_written_lately_is_looked_at_again() -> None:
    # 12 ms ago by its file time: quiet for 10 ms, but the time may lag by a tick.
    seen = {"/p/msg.py": (NOW - 12 * S // 1000, 15)}
    result = verdict(seen, Facts(on_disk=dict(seen)))
    assert isinstance(result, LookAgain) and 0.017 < result.after <= 0.018


def test_where_every_write_raises_an_event_its_last_event_says_when_it_was_written() -> None:
    written = NOW - 12 * S // 1000
    seen = {"/p/msg.py": (written, 15)}
    # The event came just after the write, 12 ms ago: quiet for 10 ms, served at once.
    facts = Facts(on_disk=dict(seen), events={"/p/msg.py": written + S // 10_000})
    assert verdict(seen, facts) == Serve()
    # An event later than the file time (another write, its time lagging): it counts.
    facts = Facts(on_disk=dict(seen), events={"/p/msg.py": NOW - 4 * S // 1000})
    result = verdict(seen, facts)
    assert isinstance(result, LookAgain) and 0.005 < result.after <= 0.006
    # A file time later than its last event (that event still on its way): it counts.
    late = {"/p/msg.py": (NOW - 3 * S // 1000, 15)}
    facts = Facts(on_disk=dict(late), events={"/p/msg.py": NOW - 60 * S})
    result = verdict(late, facts)
    assert isinstance(result, LookAgain) and 0.006 < result.after <= 0.007
