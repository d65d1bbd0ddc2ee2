"""The ``gwd`` command: run, check, version."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Sequence

from gwd import __version__
from gwd.config import BUILTIN_SOURCE, Config, ConfigError, load_config, parse_address
from gwd.logs import setup_logging

EXIT_CONFIG = 78
"""sysexits' EX_CONFIG: a unit can refuse to restart on it (RestartPreventExitStatus=78)."""
EXIT_RUNTIME = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwd", description="gwd, a self-hosted API gateway daemon.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve a config (the built-in default without -c)")
    run.add_argument("-c", "--config", metavar="FILE", help="config file (TOML)")
    run.add_argument("--listen", metavar="HOST:PORT", type=_address, help="override server.listen")
    run.add_argument("--workers", metavar="N", type=_worker_count, help="override server.workers (0: one per CPU)")
    run.set_defaults(command=_run)

    check = commands.add_parser("check", help="validate a config file and exit")
    check.add_argument("-c", "--config", metavar="FILE", help="config file (TOML); the built-in default without it")
    check.set_defaults(command=_check)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(command=lambda args: print(f"gwd {__version__}") or 0)
    return parser


def _address(text: str) -> Any:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_count(text: str) -> int:
    if not text.isdigit() or int(text) > 1024:
        raise argparse.ArgumentTypeError(f"expected a number of workers from 0 to 1024, got {text!r}")
    return int(text)


def _load_or_report(path: str | None, overrides: dict[str, Any]) -> Config | None:
    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path or BUILTIN_SOURCE}: {len(exc.problems)} problem(s); nothing was started", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config, {})
    if config is None:
        return EXIT_CONFIG
    print(f"{config.source}: OK ({len(config.routes)} routes, {len(config.stages)} stages)")
    return 0


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.listen is not None:
        overrides["listen"] = args.listen
    if args.workers is not None:
        overrides["workers"] = args.workers
    config = _load_or_report(args.config, overrides)
    if config is None:
        return EXIT_CONFIG
    setup_logging(config.log.level)
    # Imported here so that `gwd check` stays light.
    from gwd.buckets import BucketTable
    from gwd.supervisor import Supervisor
    from gwd.worker import run_worker

    # Created before any fork, so every worker of every generation shares it.
    buckets = BucketTable(config.throttle.table_size)
    try:
        supervisor = Supervisor(
            config, lambda: load_config(args.config, overrides), functools.partial(run_worker, buckets=buckets)
        )
    except OSError as exc:
        print(f"gwd: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return supervisor.run()
