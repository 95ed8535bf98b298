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

__all__ = [
    "checkout_table",
    "helpers_table",
    "machine_info",
    "markdown_report",
    "medians_table",
    "results_table",
    "write_results",
]

PACKAGES = (
    "watchfiles",
    "uvicorn",
    "gunicorn",
    "werkzeug",
    "hupper",
    "tornado",
    "waitress",
    "pandas",
    "django",
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


def medians_table(results: list[PairResult]) -> str:
    """Reload medians with one column per app, one row per reloader (failed polls in brackets)."""
    app_names = list(dict.fromkeys(r.app for r in results))
    by_pair = {(r.reloader, r.app): r for r in results}
    rows = [
        "| reloader | " + " | ".join(app_names) + " |",
        "|---|" + "---|" * len(app_names),
    ]
    for reloader in dict.fromkeys(r.reloader for r in results):
        cells = [reloader]
        for app in app_names:
            r = by_pair.get((reloader, app))
            if r is None:
                cells.append("")
            elif r.median_ms is not None:
                cells.append(f"{_ms(r.median_ms)} ({_int(r.failed_polls)})")
            else:
                cells.append(r.status)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def helpers_table(results: list[PairResult]) -> str:
    """Memory of relaunch's own processes per row: totals, then each process."""
    rows = [
        "| reloader | app | processes | RSS | USS | PSS | each process (RSS / USS / PSS) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r.helpers:
            continue
        each = "; ".join(
            f"`{_short_command(h.command)}` {_mib(h.rss)} / {_mib(h.uss)} / {_mib(h.pss)}"
            for h in r.helpers
        )
        cells = [
            r.reloader,
            r.app,
            str(len(r.helpers)),
            _mib(sum(h.rss for h in r.helpers)),
            _mib(sum(h.uss for h in r.helpers)),
            _mib(sum(h.pss for h in r.helpers)),
            each.replace("|", "\\|"),
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
        "each write of the edited file (msg.py; the Django project: catalog/views.py) "
        f"comes {config['settle']} s + 0-{config['jitter']} s (spread) "
        "after the server is serving and idle; "
        "latency = write until GET / (polled every 2 ms) shows the new value; "
        "failed polls = refused/reset/error responses summed over the measured rounds; "
        f"idle CPU = whole process tree over {config['idle_seconds']} s after the reloads, "
        "% of one core; "
        "starts per save = app imports per write of the edited file (1 is ideal).",
        "",
        results_table(results),
        "",
        "Reload median per app (failed polls in brackets):",
        "",
        medians_table(results),
    ]
    if any(r.helpers for r in results):
        parts += [
            "",
            "Memory of relaunch's own processes (every process of the row's tree but the one "
            "serving, whose pid the app's start log names; the zygote is among them), after "
            "the reloads, in MiB: RSS, USS (private) and PSS (shared pages split between "
            "the processes sharing them):",
            "",
            helpers_table(results),
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


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


def _short_command(command: str) -> str:
    """The command line without the venv's directory prefixes, to keep the table readable."""
    words = [Path(word).name if word.startswith("/") else word for word in command.split()]
    return " ".join(words)[:80]


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _note(status: str, reason: str) -> str:
    if status == "ok":
        return ""
    text = f"{status}: {reason}" if reason else status
    return " ".join(text.split()).replace("|", "\\|")[:240]
