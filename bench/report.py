"""Machine info and the Markdown / JSON reports."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

from session import CheckoutResult, PairResult

__all__ = ["checkout_table", "machine_info", "markdown_report", "results_table", "write_results"]

PACKAGES = (
    "watchfiles",
    "uvicorn",
    "gunicorn",
    "werkzeug",
    "hupper",
    "tornado",
    "waitress",
    "pandas",
    "relaunch",
)


def machine_info() -> dict[str, object]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
    }


def results_table(results: list[PairResult]) -> str:
    rows = [
        "| reloader | app | reload median | p90 | failed polls | idle CPU | first start "
        "| starts per save | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            r.reloader,
            r.app,
            _ms(r.median_ms),
            _ms(r.p90_ms),
            _int(r.failed_polls),
            "-" if r.idle_cpu_percent is None else f"{r.idle_cpu_percent:.1f}%",
            "-" if r.startup_s is None else f"{r.startup_s:.2f} s",
            "-"
            if r.starts_during_edits is None or not r.edits
            else f"{r.starts_during_edits / r.edits:.2g}",
            _note(r.status, r.reason),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def checkout_table(results: list[CheckoutResult]) -> str:
    rows = [
        "| reloader | (re)starts after a 500-file git checkout | serving after | notes |",
        "|---|---|---|---|",
    ]
    for r in results:
        serving = "-" if r.serving_after is None else ("yes" if r.serving_after else "no")
        rows.append(
            f"| {r.reloader} | {_int(r.starts)} | {serving} | {_note(r.status, r.reason)} |"
        )
    return "\n".join(rows)


def markdown_report(
    results: list[PairResult],
    checkouts: list[CheckoutResult],
    machine: dict[str, object],
    config: dict[str, object],
) -> str:
    packages = machine["packages"]
    assert isinstance(packages, dict)
    versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    parts = [
        "# Reload benchmark: latest results",
        "",
        f"- date: {machine['date']}",
        f"- machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['platform']}",
        f"- load average at start: {machine['load_average']}",
        f"- Python {machine['python']}; {versions}",
        f"- command: `{config['command']}`",
        f"- {config['rounds']} measured rounds after {config['warmup']} warm-up per row; "
        f"each write of msg.py comes {config['settle']} s + 0-{config['jitter']} s (spread) "
        "after the server is serving and idle; "
        "latency = write until GET / (polled every 2 ms) shows the new value; "
        "failed polls = refused/reset/error responses summed over the measured rounds; "
        f"idle CPU = whole process tree over {config['idle_seconds']} s after the reloads, "
        "% of one core; "
        "starts per save = app imports per write of msg.py (1 is ideal).",
        "",
        results_table(results),
    ]
    if checkouts:
        parts += [
            "",
            f"`git checkout` switching all {checkouts[0].files_changed} modules "
            "of an imported package; "
            f"(re)starts counted {config['checkout_wait']} s later (1 is ideal):",
            "",
            checkout_table(checkouts),
        ]
    return "\n".join(parts) + "\n"


def write_results(
    out_dir: Path,
    results: list[PairResult],
    checkouts: list[CheckoutResult],
    machine: dict[str, object],
    config: dict[str, object],
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    payload = {
        "machine": machine,
        "config": config,
        "results": [r.as_dict() for r in results],
        "checkout": [c.as_dict() for c in checkouts],
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown_report(results, checkouts, machine, config))
    return json_path, md_path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _note(status: str, reason: str) -> str:
    if status == "ok":
        return ""
    text = f"{status}: {reason}" if reason else status
    return " ".join(text.split()).replace("|", "\\|")[:240]
