"""Processes the program starts, programs that exit in a loop or flood their output,
and Ctrl-C: nothing may outlive relaunch, and relaunch must stay responsive."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch import oslayer

from ..e2e.harness import Proc, Relaunch, pid_alive, wait_until
from .support import (
    PY,
    Start,
    cpu_seconds,
    make_app,
    no_traceback_of_relaunch,
    reload_line,
    reloads,
    replace,
)

# The program starts three kinds of processes that leave its session:
# * forked: os.fork() and os.setsid() in the child, no exec; its parent (the program) lives;
# * session: subprocess.Popen(start_new_session=True), i.e. setsid() before exec;
# * daemon: the classic double fork: setsid in between, the middle process exits, so the
#   daemon is an orphan from its first moment.
ESCAPING_APP = """\
import os, subprocess, sys, time
import msg

forked = os.fork()
if forked == 0:
    os.setsid()
    time.sleep(3600)
    os._exit(0)
session = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True
)
DAEMON = '''
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
print(f"daemon value={sys.argv[1]} pid={os.getpid()}", flush=True)
time.sleep(3600)
'''
subprocess.run([sys.executable, "-c", DAEMON, str(msg.VALUE)], check=True)
print(f"pids value={msg.VALUE} main={os.getpid()} forked={forked} session={session.pid}",
      flush=True)
time.sleep(3600)
"""

RESTART_MODES = {"warm": ["--restart", "warm"], "cold": ["--restart", "cold"]}


@pytest.fixture(params=sorted(RESTART_MODES))
def restart(request: pytest.FixtureRequest) -> list[str]:
    return RESTART_MODES[request.param]


@pytest.fixture
def reported_pids() -> Iterator[list[int]]:
    """Pids the program reported: killed at the end, whatever the test saw."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _escaped(r: Relaunch, value: int, pids: list[int]) -> list[int]:
    """The pids of the program's run that saw ``value``: itself and its three escapees."""
    found = r.expect(rf"pids value={value} main=(\d+) forked=(\d+) session=(\d+)")
    daemon = r.expect(rf"daemon value={value} pid=(\d+)")
    mine = [int(found.group(i)) for i in (1, 2, 3)] + [int(daemon.group(1))]
    pids.extend(mine)
    assert all(pid_alive(p) for p in mine), r.output()
    return mine


def _all_gone(r: Relaunch, pids: list[int], what: str) -> None:
    try:
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15, what=what)
    except AssertionError:
        alive = [p for p in pids if pid_alive(p)]
        raise AssertionError(
            f"{what}: still alive {alive} of {pids}:\n{_describe(alive)}\n{r.output()}"
        ) from None


def _describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            lines.append(
                f"  pid {pid}: ppid={int(fields[1])} pgid={int(fields[2])} sid={int(fields[3])}"
            )
        except OSError:
            lines.append(f"  pid {pid}: gone")
    return "\n".join(lines)


def test_session_leaders_die_with_the_program_on_reload(
    tmp_path: Path, relaunch: Start, reported_pids: list[int], restart: list[str]
) -> None:
    make_app(tmp_path, app=ESCAPING_APP)
    r = relaunch(["run", *restart, "--", PY, "app.py"])
    first = _escaped(r, 1, reported_pids)
    replace(tmp_path / "msg.py", "VALUE = 2\n")
    second = _escaped(r, 2, reported_pids)
    r.expect(reload_line(1), stream="err")
    _all_gone(r, first, "the first run's processes to be stopped by the reload")
    r.signal(signal.SIGTERM)
    assert r.wait() == 0, r.output()
    _all_gone(r, second, "the second run's processes to be stopped with relaunch")


def test_session_leaders_die_when_the_supervisor_is_killed(
    tmp_path: Path, relaunch: Start, reported_pids: list[int], restart: list[str]
) -> None:
    make_app(tmp_path, app=ESCAPING_APP)
    r = relaunch(["run", *restart, "--", PY, "app.py"])
    _escaped(r, 1, reported_pids)
    replace(tmp_path / "msg.py", "VALUE = 2\n")  # a warm start: the program forked by the zygote
    second = _escaped(r, 2, reported_pids)
    r.proc.kill()
    r.proc.wait()
    _all_gone(r, second, "every process of the program to die with relaunch (SIGKILL)")


# -- a program that exits at once, again and again ---------------------------------------


def test_program_exiting_in_a_loop_is_restarted_with_backoff(
    tmp_path: Path, relaunch: Start
) -> None:
    (tmp_path / "app.py").write_text(
        "import time\nprint(f'run {time.monotonic():.6f}', flush=True)\n"
    )
    r = relaunch(["run", "--on-exit", "restart", "--", PY, "app.py"])
    first = float(r.expect(r"^run (\d+\.\d+)$").group(1))
    cpu_before = cpu_seconds(r.proc.pid)

    def runs() -> list[float]:
        return [float(m) for m in re.findall(r"^run (\d+\.\d+)$", r.out.text(), re.M)]

    # Watch for three seconds of the program's own clock: until a run starts after that.
    wait_until(lambda: runs()[-1] >= first + 3.0, timeout=60, what="a run 3 s after the first")
    last = runs()[-1]
    cpu = cpu_seconds(r.proc.pid) - cpu_before
    window = runs()
    in_three_seconds = sum(1 for t in window if t < first + 3.0)
    print(
        f"\nexit loop: {in_three_seconds} starts in the first 3 s, {len(window)} in "
        f"{last - first:.2f} s; relaunch used {cpu:.2f} s CPU "
        f"({100 * cpu / (last - first):.1f}% of one core)"
    )
    assert in_three_seconds < 20, r.output()
    assert cpu / (last - first) < 0.25, f"relaunch used {cpu:.2f} s CPU in {last - first:.2f} s"
    r.signal(signal.SIGTERM)
    assert r.wait() == 0, r.output()


TRIGGER_LOOP_APP = """\
import time
import relaunch
print(f"run {time.monotonic():.6f}", flush=True)
relaunch.trigger_reload()
time.sleep(3600)
"""


def test_program_asking_for_a_reload_at_every_start_is_backed_off(
    tmp_path: Path, relaunch: Start
) -> None:
    """relaunch.trigger_reload() at start: restarts with growing delays (as for a program
    that exits at once), said once in the log."""
    make_app(tmp_path, app=TRIGGER_LOOP_APP)
    r = relaunch(["run", "--", PY, "app.py"])

    def runs() -> list[float]:
        return [float(m) for m in re.findall(r"^run (\d+\.\d+)$", r.out.text(), re.M)]

    wait_until(lambda: len(runs()) >= 6, timeout=60, what="six runs")
    starts = runs()
    # The delays before runs 2..6 are at least 0.1, 0.2, 0.4, 0.8 and 1.6 s: a lower
    # bound on the program's own clock, whatever the machine's load.
    print(f"\ntrigger_reload() at start: 6 starts in {starts[5] - starts[0]:.2f} s")
    assert starts[5] - starts[0] >= 3.0, (starts, r.output())
    assert r.err.count(r"asks for a reload .* of starting") == 1, r.output()
    assert r.proc.poll() is None, r.output()
    no_traceback_of_relaunch(r)


IN_PROCESS_TRIGGER_LOOP_APP = """\
import time
import relaunch
relaunch.start()
print(f"run {time.monotonic():.6f}", flush=True)
relaunch.trigger_reload()
time.sleep(3600)
"""


def test_in_process_mode_backs_off_a_reload_asked_for_at_every_start(tmp_path: Path) -> None:
    """The same loop with relaunch.start() (the process re-executes itself): the
    growing delay is carried from one execution to the next."""
    (tmp_path / "app.py").write_text(IN_PROCESS_TRIGGER_LOOP_APP)
    p = Proc([PY, "app.py"], tmp_path)
    try:

        def runs() -> list[float]:
            return [float(m) for m in re.findall(r"^run (\d+\.\d+)$", p.out.text(), re.M)]

        wait_until(lambda: len(runs()) >= 6, timeout=60, what="six runs")
        starts = runs()
        print(f"\nin-process trigger_reload() at start: 6 starts in {starts[5] - starts[0]:.2f} s")
        # CLOCK_MONOTONIC goes on across exec: the same lower bound as above.
        assert starts[5] - starts[0] >= 3.0, (starts, p.output())
        assert p.err.count(r"asks for a reload .* of starting") == 1, p.output()
    finally:
        p.close()


# -- a program that floods its output ---------------------------------------------------------

FLOOD_APP = """\
import os, sys, time
import msg
print(f"flood value={msg.VALUE} pid={os.getpid()}", flush=True)
line = ("x" * 1023 + "\\n").encode()
err = ("e" * 511 + "\\n").encode()
for i in range(30_000):  # 30 MB on stdout, 7.5 MB on stderr
    os.write(1, line)
    if i % 2 == 0:
        os.write(2, err)
print(f"flooded value={msg.VALUE}", flush=True)
time.sleep(3600)
"""


def test_program_flooding_its_output_still_reloads_and_stops(
    tmp_path: Path, relaunch: Start
) -> None:
    make_app(tmp_path, app=FLOOD_APP)
    r = relaunch(["run", "--", PY, "app.py"])
    first = int(r.expect(r"^flood value=1 pid=(\d+)$").group(1))
    replace(tmp_path / "msg.py", "VALUE = 2\n")  # while it writes
    second = int(r.expect(r"^flood value=2 pid=(\d+)$", timeout=60).group(1))
    r.expect(reload_line(1), stream="err", timeout=60)
    wait_until(lambda: not pid_alive(first), what="the first run to be gone")
    r.signal(signal.SIGTERM)  # while the second run floods
    assert r.wait(timeout=60) == 0, r.output()[-3000:]
    assert not pid_alive(second)
    assert reloads(r) == 1


# -- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_twice_kills_a_program_that_ignores_sigterm(tmp_path: Path, relaunch: Start) -> None:
    (tmp_path / "app.py").write_text(
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('pid', os.getpid(), flush=True)\n"
        "time.sleep(3600)\n"
    )
    # A grace period far longer than any wait below: only the second Ctrl-C can end this.
    r = relaunch(["run", "--grace", "300", "--", PY, "app.py"])
    child = int(r.expect(r"^pid (\d+)$").group(1))
    # Ctrl-C at a terminal signals the whole foreground process group: relaunch's.
    os.killpg(r.proc.pid, signal.SIGINT)
    r.expect(r"\] stopping$", stream="err")
    assert pid_alive(child), "the program ignores SIGTERM: it must still be running"
    os.killpg(r.proc.pid, signal.SIGINT)
    assert r.wait(timeout=20) == 130, r.output()
    wait_until(lambda: not pid_alive(child), timeout=10, what="the program to be killed")


# -- a stop sent the moment a warm child is forked ---------------------------------------------


def test_two_sighups_in_a_row_never_wait_out_the_grace(tmp_path: Path, relaunch: Start) -> None:
    """The second SIGHUP stops a warm child a few ms after the zygote forked it, before
    the child has made its own process group: the stop must still reach it."""
    make_app(tmp_path)
    r = relaunch(["run", "-v", "--restart", "warm", "--grace", "30", "--", PY, "app.py"])
    r.expect(r"warm-start process \d+ ready", stream="err")
    reload_re = re.compile(r"\] reload #(\d+): manual reload \(SIGHUP\); (.*)$")

    def last_reload_up(mark: int) -> bool:
        found = [reload_re.search(line) for line in r.err.lines[mark:]]
        outcomes = [m.group(2) for m in found if m]
        return bool(outcomes) and outcomes[-1].startswith("new process up")

    tries = 30
    for _ in range(tries):
        mark = r.err.mark()
        r.signal(signal.SIGHUP)
        time.sleep(random.uniform(0, 0.006))  # the stimulus: two signals 0-6 ms apart
        r.signal(signal.SIGHUP)  # (the kernel may merge the two: then one reload)
        try:
            # Long before a 30 s grace period could end.
            wait_until(lambda m=mark: last_reload_up(m), timeout=12, what="the last reload")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{r.output()}") from None
    took = [int(t) for t in re.findall(r"SIGHUP\); new process up in (\d+) ms", r.err.text())]
    print(
        f"\ntwo SIGHUPs 0-6 ms apart, {tries} tries: {len(took)} reloads up, slowest {max(took)} ms"
    )
    assert max(took) < 15_000, r.output()
    r.signal(signal.SIGTERM)
    assert r.wait() == 0, r.output()


# -- a crash that leaves workers in the program's group -------------------------------------

CRASH_WITH_WORKER_APP = """\
import os, signal, sys, time
import msg

def worker(on_sigterm):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, on_sigterm)
        os.write(ready_w, b"x")
        while True:
            time.sleep(1)
    os.read(ready_r, 1)
    return pid

def stopped(*_):
    with open("worker-sigterm", "w") as f:
        f.write("SIGTERM")
    os._exit(0)

polite = worker(stopped)
stubborn = worker(signal.SIG_IGN)
print(f"workers polite={polite} stubborn={stubborn}", flush=True)
raise RuntimeError("boom")
"""


def test_crash_leaving_workers_is_reported_at_once_and_they_get_sigterm(
    tmp_path: Path, relaunch: Start, reported_pids: list[int], restart: list[str]
) -> None:
    make_app(tmp_path, app=CRASH_WITH_WORKER_APP)
    r = relaunch(["run", *restart, "--grace", "30", "--", PY, "app.py"])
    found = r.expect(r"^workers polite=(\d+) stubborn=(\d+)$")
    polite, stubborn = int(found.group(1)), int(found.group(2))
    reported_pids.extend([polite, stubborn])
    # Long before the 30 s grace period could end, although one worker ignores SIGTERM.
    crashed_at = time.monotonic()  # (it raises right after printing that line)
    r.expect(r"program exited with code 1", stream="err", timeout=12)
    reported = (time.monotonic() - crashed_at) * 1000
    wait_until(
        lambda: (tmp_path / "worker-sigterm").exists(), timeout=12, what="the worker's SIGTERM"
    )
    wait_until(lambda: not pid_alive(polite), timeout=12, what="the polite worker to exit")
    assert pid_alive(stubborn), "it ignores SIGTERM: only the SIGKILL after the grace ends it"
    print(f"\ncrash with workers left in the group: reported {reported:.0f} ms after its last line")
    os.kill(stubborn, signal.SIGKILL)  # rather than wait 30 s for it
    r.signal(signal.SIGTERM)
    assert r.wait() == 0, r.output()


# -- the guardian itself is killed ------------------------------------------------------------


def _guardian(r: Relaunch) -> tuple[int, str] | None:
    """The guardian process of this relaunch, and its run token; None while there is none."""
    for pid in oslayer.live_children(r.proc.pid):
        command = oslayer.process_command(pid) or ""
        if "relaunch._inside.guardian" in command:
            return pid, command.split()[-1]
    return None


def _run_processes(token: str) -> list[int]:
    """Every process of the run: those with its token in their environment, and guardians."""
    found = set(oslayer.processes_with_env(f"_RELAUNCH_RUN={token}"))
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        command = oslayer.process_command(pid) or ""
        if "relaunch._inside.guardian" in command and command.endswith(token):
            found.add(pid)
    return sorted(p for p in found if pid_alive(p))


def test_killed_guardian_is_replaced_and_nothing_is_orphaned(
    tmp_path: Path, relaunch: Start, reported_pids: list[int], restart: list[str]
) -> None:
    make_app(tmp_path, app=ESCAPING_APP)
    r = relaunch(["run", *restart, "--", PY, "app.py"])
    _escaped(r, 1, reported_pids)
    replace(tmp_path / "msg.py", "VALUE = 2\n")  # warm: a run forked by the zygote
    mine = _escaped(r, 2, reported_pids)
    wait_until(lambda: _guardian(r) is not None, what="the guardian")
    first = _guardian(r)
    assert first is not None
    killed_at = time.monotonic()
    os.kill(first[0], signal.SIGKILL)
    r.expect(rf"the guardian process \({first[0]}\) died .*: started another", stream="err")
    print(f"\nguardian SIGKILLed: replaced in {(time.monotonic() - killed_at) * 1000:.0f} ms")
    second = _guardian(r)
    assert second is not None and second[0] != first[0] and second[1] == first[1]
    r.proc.kill()
    r.proc.wait()
    _all_gone(r, mine, "every process of the program to die with relaunch (SIGKILL)")
    wait_until(lambda: not _run_processes(first[1]), timeout=15, what="the run's processes")


STUBBORN_APP = """\
import os, signal, time
import msg
signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM ignored", flush=True))
print(f"stubborn value={msg.VALUE} pid={os.getpid()}", flush=True)
time.sleep(3600)
"""


def test_guardian_killed_while_relaunch_waits_out_a_grace_is_replaced(
    tmp_path: Path, relaunch: Start, reported_pids: list[int]
) -> None:
    """relaunch's own thread is busy for the whole grace period (the program ignores
    SIGTERM): the new guardian must not wait for it."""
    make_app(tmp_path, app=STUBBORN_APP)
    r = relaunch(["run", "--grace", "60", "--", PY, "app.py"])
    pid = int(r.expect(r"^stubborn value=1 pid=(\d+)$").group(1))
    reported_pids.append(pid)
    first = _guardian(r)
    assert first is not None
    replace(tmp_path / "msg.py", "VALUE = 2\n")  # the stop that waits out 60 s
    r.expect(r"^SIGTERM ignored$")
    os.kill(first[0], signal.SIGKILL)
    r.expect(rf"the guardian process \({first[0]}\) died .*: started another", stream="err")
    r.proc.kill()
    r.proc.wait()
    _all_gone(r, [pid], "the program to die with relaunch (SIGKILL)")
    wait_until(lambda: not _run_processes(first[1]), timeout=15, what="the run's processes")


def test_ctrl_c_after_the_guardian_was_killed_exits_cleanly(
    tmp_path: Path, relaunch: Start
) -> None:
    make_app(tmp_path)
    r = relaunch(["run", "--", PY, "app.py"])
    r.expect(r"^start pid=\d+ value=1$")
    wait_until(lambda: _guardian(r) is not None, what="the guardian")
    first = _guardian(r)
    assert first is not None
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: not pid_alive(first[0]), what="the guardian to die")
    r.signal(
        signal.SIGINT
    )  # to relaunch alone: the program's own KeyboardInterrupt is not the point
    assert r.wait() == 0, r.output()
    assert "Traceback" not in r.err.text(), r.output()
    wait_until(lambda: not _run_processes(first[1]), timeout=15, what="the run's processes")
