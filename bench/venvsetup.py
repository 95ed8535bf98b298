"""Create and fill bench/.venv; runs under any Python 3.10+ and imports nothing third-party.

The venv gets the pinned reloaders from requirements.txt and, when the repo root has a
pyproject.toml, an editable install of relaunch. A failed relaunch install is recorded,
not raised: the relaunch rows are then reported as "not available".
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "REPO_ROOT",
    "VENV_DIR",
    "RelaunchStatus",
    "ensure_venv",
    "relaunch_status",
    "venv_python",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
STATE_FILE = VENV_DIR / "bench-state.json"
INSTALL_LOG = VENV_DIR / "relaunch-install.log"

State = dict[str, Any]  # bench-state.json: what was installed, from which file hashes


@dataclass(frozen=True)
class RelaunchStatus:
    available: bool
    reason: str


def venv_python() -> Path:
    # Not resolved: the venv's python is a symlink, and only the link path selects the venv.
    return VENV_DIR / "bin" / "python"


def ensure_venv(*, log: bool = True) -> None:
    """Create the venv if missing; (re)install whatever changed since the last run."""
    state = _read_state()
    if not venv_python().exists():
        _say(log, f"creating {VENV_DIR}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
        state = {}
    requirements_hash = _digest(REQUIREMENTS)
    if state.get("requirements") != requirements_hash:
        _say(log, f"installing {REQUIREMENTS.name}")
        done = _pip("install", "--quiet", "-r", str(REQUIREMENTS))
        if done.returncode != 0:
            raise SystemExit(f"[bench] pip install -r {REQUIREMENTS} failed:\n{done.stderr}")
        state["requirements"] = requirements_hash
        _write_state(state)
    state["relaunch"] = _ensure_relaunch(state.get("relaunch", {}), log)
    _write_state(state)


def relaunch_status() -> RelaunchStatus:
    """Whether the venv has a working ``relaunch`` command, and why not if it does not."""
    info = _read_state().get("relaunch", {})
    if not info.get("ok"):
        return RelaunchStatus(False, info.get("reason", "relaunch was not installed"))
    if not (VENV_DIR / "bin" / "relaunch").exists():
        return RelaunchStatus(False, "installed, but provides no `relaunch` command")
    return RelaunchStatus(True, "")


def _ensure_relaunch(previous: State, log: bool) -> State:
    pyproject = REPO_ROOT / "pyproject.toml"
    if not pyproject.exists():
        return {"ok": False, "reason": f"no {pyproject} yet"}
    digest = _digest(pyproject)
    if previous.get("ok") and previous.get("pyproject") == digest:
        return previous
    _say(log, f"pip install -e {REPO_ROOT}")
    done = _pip("install", "--quiet", "-e", str(REPO_ROOT))
    if done.returncode != 0:
        INSTALL_LOG.write_text(done.stdout + done.stderr)
        reason = f"pip install -e failed: {_pip_error(done.stderr)} (full output: {INSTALL_LOG})"
        _say(log, f"relaunch install failed (its rows will be 'not available'): {reason}")
        return {"ok": False, "pyproject": digest, "reason": reason}
    return {"ok": True, "pyproject": digest, "reason": ""}


def _pip_error(stderr: str) -> str:
    """The most telling line of pip's error output: an exception, else pip's own error."""
    lines = [
        line.strip() for line in stderr.splitlines() if not line.startswith("WARNING: Location")
    ]
    for pattern in (r"^\w+(Error|Exception)\b.*:", r"^error:"):
        found = [line for line in lines if re.match(pattern, line)]
        if found:
            return found[-1]
    return " ".join(lines[-3:])


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_python()), "-m", "pip", "--disable-pip-version-check", *args],
        check=False,
        text=True,
        capture_output=True,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_state() -> State:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(state: State) -> None:
    STATE_FILE.write_text(json.dumps(state, indent=2))


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[bench] {message}", file=sys.stderr, flush=True)
