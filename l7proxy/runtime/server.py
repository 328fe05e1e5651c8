"""Assemble a running gateway from a validated `Config`."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from collections.abc import Callable
from functools import partial

import structlog
import trio

from l7proxy.config.loader import ConfigError
from l7proxy.config.settings import Config
from l7proxy.identity.oidc.authenticator import Authenticator
from l7proxy.mcp.endpoint import McpEndpoint
from l7proxy.pipeline.gateway import CLEANUP_TIMEOUT, Gateway
from l7proxy.pipeline.living import enforce_on_streams
from l7proxy.pipeline.state_api import StateApi
from l7proxy.runtime.reload import (
    build_live,
    log_changes,
    replaced_connectors,
    reread,
    tls_context,
)
from l7proxy.state import StateView, Store, open_store
from l7proxy.telemetry.audit import AuditLog
from l7proxy.telemetry.metrics import Metrics
from l7proxy.wire.listener import ListenerControl, serve

_log = structlog.get_logger("l7proxy")


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


async def run_until_signalled(
    config: Config,
    *,
    reuse_port: bool = False,
    forward: Callable[[int], None] = lambda signum: None,
) -> None:
    """`run_gateway` until SIGTERM or SIGINT, then drain and stop; SIGHUP reloads the
    configuration file. `forward` passes SIGHUP and SIGTERM on (to the other workers). A
    second SIGTERM or SIGINT while draining stops at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(partial(run_server, config, reuse_port=reuse_port))
            async for signum in signals:
                if signum != signal.SIGINT:
                    forward(signum)
                if signum == signal.SIGHUP:
                    server.reload()
                elif server.gateway.draining:
                    _log.info("stopping now", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                else:
                    _log.info(
                        "draining",
                        signal=signal.Signals(signum).name,
                        grace=server.config.limits.shutdown_grace,
                    )
                    nursery.start_soon(_drain_then_stop, server, nursery.cancel_scope)


async def _drain_then_stop(server: Server, scope: trio.CancelScope) -> None:
    await server.drain()
    scope.cancel()


_KEY_FETCH_RETRY = 2.0  # seconds between attempts while a provider's keys are missing


async def _fetch_keys_until_ready(authenticator: Authenticator) -> None:
    """Fetch every provider's signing keys, retrying, so `/readyz` can turn 200."""
    await authenticator.fetch_keys()
    while not authenticator.keys_fetched:
        await trio.sleep(_KEY_FETCH_RETRY)
        await authenticator.fetch_keys()


class Server:
    """A running gateway: its configuration, reloaded whole or not at all, and its drain."""

    def __init__(
        self,
        config: Config,
        nursery: trio.Nursery,
        audit: AuditLog,
        metrics: Metrics,
        state: tuple[StateApi, StateView],
    ) -> None:
        self.config = config
        self.nursery = nursery
        self.metrics = metrics
        self.control = ListenerControl(tls_context(config))
        live = build_live(config, nursery, metrics)
        self.gateway = Gateway(
            live, audit=audit, metrics=metrics, state_api=state[0], state_view=state[1]
        )
        scheme = "https" if config.listen.tls else "http"
        self.gateway.agents = McpEndpoint(self.gateway, scheme=scheme)
        self.bound: list[tuple[str, int]] = []
        metrics.reloaded(successful=True)

    def reload(self) -> bool:
        """Read the file again; a valid one serves every request from now on, an invalid
        one changes nothing but the metric and logs its located error."""
        try:
            config, context = reread(self.config)
            live = build_live(config, self.nursery, self.metrics, (self.config, self.gateway.live))
        except ConfigError as exc:
            _log.error(
                "configuration reload failed; the running configuration stays", error=str(exc)
            )
            self.metrics.reloaded(successful=False)
            return False
        if live.authenticator is not self.gateway.live.authenticator:
            self.nursery.start_soon(_fetch_keys_until_ready, live.authenticator)
        for connector in replaced_connectors(self.gateway.live, live):
            self.nursery.start_soon(connector.retire)
        self.gateway.live, self.control.ssl_context = live, context
        if self.gateway.state_api is not None:  # who may request, approve and lock
            self.gateway.state_api.configure(config.access_requests, config.admins)
        log_changes(self.config, config)
        self.config = config
        self.metrics.reloaded(successful=True)
        return True

    async def drain(self) -> None:
        """Stop accepting, let requests in flight finish within the grace, then end the
        streams still open (each audited as ended by the gateway's shutdown)."""
        gateway = self.gateway
        gateway.draining = True
        self.control.draining.set()
        with trio.move_on_after(self.config.limits.shutdown_grace):
            await gateway.shutdown.wait_idle()
        ended = gateway.shutdown.end_streams()
        with trio.move_on_after(CLEANUP_TIMEOUT):
            await gateway.shutdown.wait_idle()
        _log.info("drained", streams_ended=ended, requests_left=gateway.shutdown.in_flight)


async def run_server(
    config: Config,
    *,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; reports the `Server` once listening."""
    audit = AuditLog(config.audit.sink)
    store = open_store(config.state, config.source.parent)
    try:
        await store.migrate()
        async with trio.open_nursery() as nursery:
            state = await _start_state(nursery, store, config, audit)
            server = Server(config, nursery, audit, Metrics(), state)
            gateway = server.gateway
            nursery.start_soon(enforce_on_streams, state[1], gateway.shutdown)
            server.bound = await nursery.start(
                partial(
                    serve,
                    gateway.handle,
                    refuse=gateway.refuse,
                    host=config.listen.host,
                    port=config.listen.port,
                    ssl_context=None,
                    limits=config.limits,
                    reuse_port=reuse_port,
                    control=server.control,
                )
            )
            gateway.ready = True
            await gateway.live.authenticator.fetch_keys()  # so a healthy start is ready at once
            nursery.start_soon(_fetch_keys_until_ready, gateway.live.authenticator)
            _log.info(
                "listening",
                addresses=[f"{h}:{p}" for h, p in server.bound],
                tls=config.listen.tls is not None,
                connections=sorted(gateway.live.connectors),
            )
            task_status.started(server)
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
        audit.close()


async def run_gateway(
    config: Config,
    *,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; reports the bound addresses once ready."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(partial(run_server, config, reuse_port=reuse_port))
        task_status.started(server.bound)


async def _start_state(
    nursery: trio.Nursery, store: Store, config: Config, audit: AuditLog
) -> tuple[StateApi, StateView]:
    """The state store's API and this worker's view of it, with their background tasks:
    the view's poll (started once it has tried the store) and the expiry sweep."""
    api = StateApi(store, grants=config.access_requests, admins=config.admins, audit=audit)
    view = StateView(store)
    await nursery.start(view.run)
    nursery.start_soon(api.expire_until_cancelled)
    return api, view
