"""A configuration file turned into the gateway's `Live` snapshot, first at start and
again on every SIGHUP, reusing what did not change: the pools and cached credentials of
unchanged connections, the fetched signing keys of unchanged identity providers."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import trio

from l7proxy.config.loader import ConfigError, load_config
from l7proxy.config.settings import Config
from l7proxy.identity.oidc.authenticator import Authenticator
from l7proxy.pipeline.live import Live
from l7proxy.telemetry.metrics import Metrics
from l7proxy.upstream.connectors import build_connector
from l7proxy.upstream.credential import Connector
from l7proxy.wire.listener import server_ssl_context
from policy.grants import GrantedPolicies

log = structlog.get_logger("l7proxy.runtime")


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The listener's TLS context; a certificate or key the loader found but TLS cannot
    use (not PEM, the key not matching) is a `ConfigError` too."""
    tls = config.listen.tls
    if tls is None:
        return None
    try:
        return server_ssl_context(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            str(config.source),
            f"cannot use {tls.cert_file} with {tls.key_file}: {exc}",
            key="listen.tls",
        ) from None


def build_live(
    config: Config,
    nursery: trio.Nursery,
    metrics: Metrics,
    previous: tuple[Config, Live] | None = None,
) -> Live:
    """The snapshot for `config`. Connectors live in `nursery`; one whose connection and
    limits are as in `previous` is kept, so its pool and credentials carry on."""
    connectors: dict[str, Connector] = {}
    for index, conn in enumerate(config.connections):
        if previous and _same(previous[0], config, conn.name):
            connectors[conn.name] = previous[1].connectors[conn.name]
        else:
            with _unusable_files(config, f"connections[{index}]"):
                connectors[conn.name] = build_connector(conn, config.limits, nursery, metrics)
    if previous and previous[0].providers == config.providers:
        authenticator = previous[1].authenticator
    else:
        with _unusable_files(config, "identity.providers"):
            authenticator = Authenticator(config.providers, metrics=metrics)
    grants = GrantedPolicies(config.policies, config.access_requests)
    return Live(
        authenticator=authenticator,
        policies=grants.standing,
        grants=grants,
        connectors=connectors,
        limits=config.limits,
        routing=config.routing,
        recordings_dir=config.audit.recordings_dir,
    )


def replaced_connectors(old: Live, new: Live) -> list[Connector]:
    """The connectors of `old` that `new` does not keep (removed or changed connections)."""
    kept = {id(connector) for connector in new.connectors.values()}
    return [c for c in old.connectors.values() if id(c) not in kept]


@contextmanager
def _unusable_files(config: Config, key: str) -> Iterator[None]:
    """A CA or client certificate the loader found but TLS cannot use, as a `ConfigError`."""
    try:
        yield
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(str(config.source), f"cannot use its TLS files: {exc}", key=key) from None


def _same(old: Config, new: Config, connection: str) -> bool:
    return old.limits == new.limits and old.connection(connection) == new.connection(connection)


def reread(config: Config) -> tuple[Config, ssl.SSLContext | None]:
    """The configuration file of `config` read and validated again, with its TLS context."""
    fresh = load_config(config.source)
    return fresh, tls_context(fresh)


def log_changes(old: Config, new: Config) -> None:
    """What a reload changed; and what it cannot change on a running process (sockets,
    workers and the audit file are bound, spawned or opened once)."""
    before = {c.name: c for c in old.connections}
    after = {c.name: c for c in new.connections}
    log.info(
        "configuration reloaded",
        file=str(new.source),
        policies=len(new.policies),
        connections_added=sorted(after.keys() - before.keys()),
        connections_removed=sorted(before.keys() - after.keys()),
        connections_changed=sorted(
            name for name in after.keys() & before.keys() if after[name] != before[name]
        ),
        providers_changed=old.providers != new.providers,
    )
    restart_only = (
        (
            "listen.address",
            (old.listen.host, old.listen.port) != (new.listen.host, new.listen.port),
        ),
        ("workers", old.workers != new.workers),
        ("audit.sink", old.audit.sink != new.audit.sink),
    )
    pending = [key for key, changed in restart_only if changed]
    if pending:
        log.warning("these keys take effect only at the next start", keys=pending)
