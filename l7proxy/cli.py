"""`l7proxy` command line: serve, check-config, --version."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from l7proxy import __version__
from l7proxy.config import ConfigError, load_config, summarize
from l7proxy.connectors import UnsupportedConnection
from l7proxy.server import configure_logging, run_until_signalled

EXAMPLE_HINT = """\
l7proxy needs a configuration file. Start from the example in the README
("Configuration"), then:

    l7proxy check-config --config gateway.yaml
    l7proxy serve --config gateway.yaml
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l7proxy",
        description="Identity-aware Layer 7 gateway for the Kubernetes API.",
    )
    parser.add_argument("--version", action="version", version=f"l7proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gateway in the foreground")
    serve.add_argument("--config", required=True, type=Path, metavar="FILE")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    check = commands.add_parser("check-config", help="validate a configuration and summarise it")
    check.add_argument("--config", required=True, type=Path, metavar="FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    match args.command:
        case "serve":
            return _serve(args.config, is_worker=args.worker)
        case "check-config":
            return _check_config(args.config)
        case _:
            sys.stderr.write(EXAMPLE_HINT)
            return 2


def _check_config(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summarize(config))
    return 0


def _serve(path: Path, *, is_worker: bool) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    configure_logging()
    workers = 1 if is_worker else config.workers
    if workers > 1 and config.listen.port == 0:
        print("error: several workers need a fixed listen port, not 0", file=sys.stderr)
        return 1
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "l7proxy", "serve", "--config", str(path), "--worker"]
        )
        for _ in range(workers - 1)
    ]
    try:
        trio.run(partial(run_until_signalled, config, reuse_port=workers > 1 or is_worker))
    except UnsupportedConnection as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
