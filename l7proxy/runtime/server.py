"""Assemble a running gateway from a validated `Config`."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from functools import partial

import structlog
import trio

from l7proxy.config.settings import Config
from l7proxy.identity.oidc.authenticator import Authenticator
from l7proxy.mcp.endpoint import McpEndpoint
from l7proxy.pipeline.gateway import Gateway
from l7proxy.telemetry.audit import AuditLog
from l7proxy.telemetry.metrics import Metrics
from l7proxy.upstream.connectors import build_connector
from l7proxy.upstream.credential import Connector
from l7proxy.wire.listener import serve, server_ssl_context
from policy.engine import PolicySet


def configure_logging(level: int = logging.INFO) -> None:
    """Service logs: JSON lines on stderr (audit events go to the audit sink, not here).
    A logged exception is rendered as its type, message and frames (`dict_tracebacks`, no
    local variables, so no token or body held in a frame reaches the log)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic collections for a long-running server: what is alive at start
    (modules, configuration) moves to the permanent generation, and the youngest generation
    is collected every 50,000 allocations instead of 700. A proxied request allocates a few
    thousand objects, so the default threshold ran several collections per request, each
    walking whatever the connections hold. Reference counting still frees almost
    everything at once; only cycles wait a little longer."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def run_until_signalled(config: Config, *, reuse_port: bool = False) -> None:
    """`run_gateway` until SIGINT or SIGTERM, then stop: listeners close, requests in
    flight are cancelled, and each leaves its audit event."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_gateway, config, reuse_port=reuse_port))
            async for signum in signals:
                structlog.get_logger("l7proxy").info("stopping", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


_KEY_FETCH_RETRY = 2.0  # seconds between attempts while a provider's keys are missing


async def _fetch_keys_until_ready(authenticator: Authenticator) -> None:
    """Fetch every provider's signing keys at start, retrying, so `/readyz` can turn 200."""
    while not authenticator.keys_fetched:
        await trio.sleep(_KEY_FETCH_RETRY)
        await authenticator.fetch_keys()


async def run_gateway(
    config: Config,
    *,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; reports the bound addresses once ready."""
    log = structlog.get_logger("l7proxy")
    audit = AuditLog(config.audit.sink)
    try:
        async with trio.open_nursery() as nursery:
            connectors: dict[str, Connector] = {
                conn.name: build_connector(conn, config.limits, nursery)
                for conn in config.connections
            }
            gateway = Gateway(
                authenticator=Authenticator(config.providers),
                policies=PolicySet(config.policies),
                connectors=connectors,
                audit=audit,
                metrics=Metrics(),
                limits=config.limits,
                recordings_dir=config.audit.recordings_dir,
                routing=config.routing,
            )
            tls = config.listen.tls
            gateway.agents = McpEndpoint(
                gateway, config.providers, scheme="https" if tls else "http"
            )
            context = server_ssl_context(str(tls.cert_file), str(tls.key_file)) if tls else None
            bound = await nursery.start(
                partial(
                    serve,
                    gateway.handle,
                    refuse=gateway.refuse,
                    host=config.listen.host,
                    port=config.listen.port,
                    ssl_context=context,
                    limits=config.limits,
                    reuse_port=reuse_port,
                )
            )
            gateway.ready = True
            await gateway.authenticator.fetch_keys()  # so a healthy start is ready at once
            nursery.start_soon(_fetch_keys_until_ready, gateway.authenticator)
            log.info(
                "listening",
                addresses=[f"{h}:{p}" for h, p in bound],
                tls=tls is not None,
                connections=sorted(connectors),
            )
            task_status.started(bound)
    finally:
        audit.close()
