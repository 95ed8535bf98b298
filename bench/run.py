"""Side-by-side reload benchmark: ``python bench/run.py --help``.

Run with any Python 3.10+: it creates/updates bench/.venv, then re-runs itself inside it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import venvsetup
from reloaders import RELOADERS

KNOWN_APPS = ("small", "big", "pandas", "inproject", "django")  # the keys of apps.APPS
DEFAULT_APPS = ",".join(KNOWN_APPS)
RELOADER_ORDER = tuple(RELOADERS)  # relaunch variants first, then the others


_SETUP_DONE = "BENCH_SETUP_DONE"  # not RELAUNCH_*: relaunch rejects unknown ones


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="measured reloads per row (default 8)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured reloads first (default 1)"
    )
    parser.add_argument("--apps", default=DEFAULT_APPS, help=f"comma list (default {DEFAULT_APPS})")
    parser.add_argument(
        "--reloaders", default=",".join(RELOADER_ORDER), help="comma list (default: all)"
    )
    parser.add_argument(
        "--no-checkout", action="store_true", help="skip the 500-file git checkout test"
    )
    parser.add_argument(
        "--round-timeout", type=float, default=30.0, help="seconds per reload (default 30)"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=90.0, help="seconds to first response"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=3.0, help="idle CPU window (default 3)"
    )
    parser.add_argument("--settle", type=float, default=0.5, help="quiet seconds before each write")
    parser.add_argument(
        "--jitter",
        type=float,
        default=1.0,
        help="extra wait before each write, spread over 0..N s (default 1)",
    )
    parser.add_argument(
        "--checkout-wait", type=float, default=3.0, help="seconds to count restarts"
    )
    parser.add_argument(
        "--out", type=Path, default=venvsetup.BENCH_DIR / "results", help="results directory"
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the generated apps and server logs"
    )
    parser.add_argument("--setup-only", action="store_true", help="only create/update bench/.venv")
    args = parser.parse_args(argv)
    _validate(parser, args)
    return args


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.app_names = _split(args.apps)
    args.reloader_names = _split(args.reloaders)
    for name in args.app_names:
        if name not in KNOWN_APPS:
            parser.error(f"unknown app {name!r}; choose from {', '.join(KNOWN_APPS)}")
    for name in args.reloader_names:
        if name not in RELOADER_ORDER:
            parser.error(f"unknown reloader {name!r}; choose from {', '.join(RELOADER_ORDER)}")
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == venvsetup.VENV_DIR.resolve()


def reexec_in_venv(argv: list[str]) -> None:
    python = str(venvsetup.venv_python())
    os.execv(python, [python, str(Path(__file__).resolve()), *argv])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def benchmark(args: argparse.Namespace) -> int:
    # Imported here, not at the top: they need the venv's packages (psutil).
    import apps
    import djangoproject
    import report
    from session import CheckoutResult, PairResult, Settings, run_checkout, run_pair

    if "big" in args.app_names:
        apps.ensure_biglib()
    if "inproject" in args.app_names:
        apps.ensure_projlib()
    if "django" in args.app_names:
        _log("the Django project: generated and migrated once into bench/.venv ...")
        djangoproject.ensure_project()
    status = venvsetup.relaunch_status()
    workdir = Path(tempfile.mkdtemp(prefix="relaunch-bench-"))
    settings = Settings(
        rounds=args.rounds,
        warmup=args.warmup,
        round_timeout=args.round_timeout,
        start_timeout=args.start_timeout,
        idle_seconds=args.idle_seconds,
        settle=args.settle,
        jitter=args.jitter,
        checkout_wait=args.checkout_wait,
        python=venvsetup.venv_python(),
        workdir=workdir,
        relaunch_reason="" if status.available else f"relaunch not installed: {status.reason}",
    )
    machine = report.machine_info()
    results: list[PairResult] = []
    checkouts: list[CheckoutResult] = []
    _log(f"work dir {workdir}")
    try:
        for name in args.reloader_names:
            reloader = RELOADERS[name]
            for app_name in args.app_names:
                _log(f"{name} / {app_name} ...")
                results.append(run_pair(reloader, apps.APPS[app_name], settings))
                _log(report.results_table(results[-1:]).splitlines()[-1])
            if not args.no_checkout:
                _log(f"{name} / 500-file checkout ...")
                checkouts.append(run_checkout(reloader, settings))
                _log(report.checkout_table(checkouts[-1:]).splitlines()[-1])
    except KeyboardInterrupt:
        _log("interrupted: servers stopped; partial results below, nothing written")
        print(report.results_table(results))
        return 130
    finally:
        _cleanup(workdir, keep=args.keep_tmp)
    config = _config(args)
    print(report.markdown_report(results, checkouts, machine, config))
    for path in report.write_results(args.out, results, checkouts, machine, config):
        _log(f"wrote {path}")
    return 0


def _config(args: argparse.Namespace) -> dict[str, object]:
    return {
        "command": "python bench/run.py " + shlex.join(sys.argv[1:]),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "apps": args.app_names,
        "reloaders": args.reloader_names,
        "round_timeout": args.round_timeout,
        "idle_seconds": args.idle_seconds,
        "settle": args.settle,
        "jitter": args.jitter,
        "checkout_wait": args.checkout_wait,
    }


def _cleanup(workdir: Path, *, keep: bool) -> None:
    if keep:
        _log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    # Handled signals are reset for the servers we start, ignored ones are inherited. Started
    # in the background (SIGINT ignored), the servers would ignore SIGINT too, and reloaders
    # that stop their child with SIGINT (watchfiles) would wait 5 s before each SIGKILL.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    args = parse_args(argv)
    if not os.environ.get(_SETUP_DONE):
        venvsetup.ensure_venv()
        os.environ[_SETUP_DONE] = "1"
    if args.setup_only:
        return 0
    if not in_bench_venv():
        reexec_in_venv(argv)
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
