"""`l7proxy` command line: serve, check-config, config-schema, explain, request, lock, login…"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from l7proxy import __version__
from l7proxy.identity.login import (
    add_kubeconfig_arguments,
    add_login_arguments,
    run_kubeconfig,
    run_login,
)
from l7proxy.tools.access import add_lock_arguments, add_request_arguments, run_lock, run_request
from l7proxy.tools.demo import add_demo_arguments, run_demo

if TYPE_CHECKING:
    from l7proxy.config.settings import Config, Connection, Limits

_E = TypeVar("_E", bound=BaseException)

# `l7proxy login` runs before every kubectl command that needs a token: it must start fast,
# so the gateway's modules (trio, h2, the pipeline) are imported only by the commands that
# use them.

# Per connection, all of it: STS and DescribeCluster calls (20 s each at most), then the cluster.
PROBE_TIMEOUT = 90.0

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
    check.add_argument(
        "--probe",
        action="store_true",
        help="also reach every connection's cluster with its credential (GET /version; "
        "for eks, each role assumed through STS)",
    )
    commands.add_parser(
        "config-schema", help="print the configuration's JSON Schema (for editors and CI)"
    )
    explain = commands.add_parser(
        "explain", help="show the decision the policies make for a user and a request"
    )
    explain.add_argument("--config", required=True, type=Path, metavar="FILE")
    explain.add_argument("--user", required=True, metavar="USER")
    explain.add_argument("--group", action="append", default=[], metavar="GROUP")
    explain.add_argument("--connection", default="", metavar="NAME")
    explain.add_argument(
        "--with-grant",
        action="append",
        default=[],
        metavar="NAME",
        help="decide as if the user's access request for this grant were approved",
    )
    explain.add_argument("-n", "--namespace", default="", metavar="NS")
    explain.add_argument("verb")
    explain.add_argument("resource", help="e.g. pods, pods/log, deployments.apps, /version")
    explain.add_argument("name", nargs="?", default="")
    replay = commands.add_parser("replay", help="play an exec/attach session recording")
    replay.add_argument("file", type=Path, metavar="FILE")
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    replay.add_argument(
        "--max-wait", type=float, default=2.0, help="longest pause shown, in seconds"
    )
    login = commands.add_parser(
        "login", help="kubectl exec credential plugin: sign in, print an ExecCredential"
    )
    add_login_arguments(login)
    kubeconfig = commands.add_parser(
        "kubeconfig", help="write a kubeconfig for a gateway connection that uses `login`"
    )
    add_kubeconfig_arguments(kubeconfig)
    add_request_arguments(
        commands.add_parser("request", help="ask for, review and revoke access requests")
    )
    add_lock_arguments(commands.add_parser("lock", help="place, list and lift locks (admins)"))
    demo = commands.add_parser(
        "demo", help="start a sandbox cluster, an issuer and the gateway on loopback"
    )
    add_demo_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    match args.command:
        case "serve":
            return _serve(args.config, is_worker=args.worker)
        case "check-config":
            return _check_config(args.config, probe=args.probe)
        case "config-schema":
            return _config_schema()
        case "explain":
            return _explain(args)
        case "replay":
            return _replay(args.file, speed=args.speed, max_wait=args.max_wait)
        case "login":
            return run_login(args)
        case "kubeconfig":
            return run_kubeconfig(args)
        case "demo":
            return run_demo(args)
        case "request":
            return run_request(args)
        case "lock":
            return run_lock(args)
        case _:
            sys.stderr.write(EXAMPLE_HINT)
            return 2


def _config_schema() -> int:
    import json

    from l7proxy.config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from l7proxy.config.loader import ConfigError, load_config
    from l7proxy.tools.explain import ExplainError, Question, explain, lifting_grant

    try:
        config = load_config(args.config)
        question = Question(
            user=args.user,
            groups=tuple(args.group),
            verb=args.verb,
            resource=args.resource,
            name=args.name,
            namespace=args.namespace,
            connection=args.connection,
            with_grants=tuple(args.with_grant),
        )
        connection, decision = explain(config, question)
        lift = None if decision.allowed else lifting_grant(config, question, connection)
    except (ConfigError, ExplainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verdict = "allow" if decision.allowed else "deny"
    print(f"{verdict}: {decision.reason}")
    print(f"connection: {connection}")
    if decision.policies:
        print(f"policies: {', '.join(decision.policies)}")
    if decision.allowed and decision.binding_user_role:
        print(f"binding_user_role: {decision.binding_user_role}")
    if lift is not None:
        print(f"lifted by: l7proxy request create --grant {lift} (or explain --with-grant {lift})")
    return 0 if decision.allowed else 1


def _replay(path: Path, *, speed: float, max_wait: float) -> int:
    from l7proxy.tools.replay import RecordingError, replay

    if speed <= 0:
        print("error: --speed must be above 0", file=sys.stderr)
        return 1
    try:
        replay(path, sys.stdout.buffer, speed=speed, max_wait=max_wait)
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_config(path: Path, *, probe: bool = False) -> int:
    import trio

    from l7proxy.config.loader import ConfigError, load_config
    from l7proxy.config.summary import summarize
    from l7proxy.runtime.server import configure_logging

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summarize(config))
    if not probe:
        return 0
    # Service logs (an assumed role, a failed STS call) would repeat the lines below.
    configure_logging(logging.ERROR)
    results = trio.run(_probe_all, config.connections, config.limits)
    print("probe:")
    for _, text in results:
        for line in text.splitlines():  # an eks connection has a line per role
            print(f"  {line}")
    failed = sum(1 for ok, _ in results if not ok)
    if failed:
        print(
            f"error: {failed} of {len(results)} connections could not be reached as configured",
            file=sys.stderr,
        )
        return 1
    return 0


async def _probe_all(connections: Sequence[Connection], limits: Limits) -> list[tuple[bool, str]]:
    import trio

    """Every connection probed at once; results in configuration order, each line
    starting with the connection's name."""
    results: list[tuple[bool, str]] = [(False, "")] * len(connections)

    async def one(index: int, conn: Connection) -> None:
        results[index] = await _probe_one(conn, limits)

    async with trio.open_nursery() as nursery:
        for index, conn in enumerate(connections):
            nursery.start_soon(one, index, conn)
    return results


async def _probe_one(conn: Connection, limits: Limits) -> tuple[bool, str]:
    import trio

    from l7proxy.config.settings import EksConnection
    from l7proxy.upstream.credential import UpstreamCredentialError
    from l7proxy.upstream.pool import UpstreamError
    from l7proxy.upstream.static import probe_static

    try:
        with trio.fail_after(PROBE_TIMEOUT):
            if isinstance(conn, EksConnection):
                from l7proxy.upstream.eks.connector import probe  # keeps aiobotocore out otherwise

                return True, await probe(conn, limits)
            version = await probe_static(conn, limits)
            return True, f"{conn.name}: Kubernetes {version} (static credential)"
    except UpstreamCredentialError as exc:
        code = f" [{exc.code}]" if exc.code else ""
        return False, f"{conn.name}: FAILED{code}: {exc.message}"
    except UpstreamError as exc:
        return False, f"{conn.name}: FAILED: {exc}"
    except trio.TooSlowError:
        return False, f"{conn.name}: FAILED: no answer within {PROBE_TIMEOUT:g}s"


def _serve(path: Path, *, is_worker: bool) -> int:
    import trio

    from l7proxy.config.loader import ConfigError, load_config
    from l7proxy.runtime.workers import Workers
    from l7proxy.state import StoreError

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    workers = 1 if is_worker else config.workers
    if workers > 1 and config.listen.port == 0:
        print("error: several workers need a fixed listen port, not 0", file=sys.stderr)
        return 1
    try:
        trio.run(_migrate_state, config)
    except StoreError as exc:
        print(f"error: state store: {exc}", file=sys.stderr)
        return 1
    children = Workers(path, workers)  # before prometheus-client is imported, see there
    from l7proxy.runtime.server import (
        configure_logging,
        run_until_signalled,
        tune_garbage_collector,
    )

    configure_logging()
    tune_garbage_collector()
    unusable: list[ConfigError] = []
    try:
        trio.run(
            partial(
                run_until_signalled,
                config,
                reuse_port=workers > 1 or is_worker,
                forward=children.forward,
            )
        )
    except* ConfigError as group:  # a certificate or CA file the loader found but TLS refused
        unusable += _leaves(group, ConfigError)
    finally:
        children.stop()
    for error in unusable:
        print(f"error: {error}", file=sys.stderr)
    return 1 if unusable else 0


def _leaves(group: BaseExceptionGroup[_E], kind: type[_E]) -> list[_E]:
    """The exceptions of `kind` in `group`, however deeply nested."""
    found: list[_E] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc, kind)
        elif isinstance(exc, kind):
            found.append(exc)
    return found


async def _migrate_state(config: Config) -> None:
    """Create or upgrade the state store's schema once, before any worker starts, so a
    store that cannot be reached is one clear error (each worker checks again)."""
    from l7proxy.state import open_store

    store = open_store(config.state, config.source.parent)
    try:
        await store.migrate()
    finally:
        await store.aclose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
