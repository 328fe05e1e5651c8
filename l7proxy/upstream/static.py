"""A `static` connection: a fixed server, its CA, and a token file or a client certificate."""

from __future__ import annotations

import math
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import trio

from l7proxy.config.settings import Limits, StaticConnection
from l7proxy.upstream.credential import Headers, UpstreamCredentialError, cluster_version
from l7proxy.upstream.pool import ClusterTLS, Origin, UpstreamError, UpstreamPool
from policy.decision import Decision
from policy.identity import Identity


class TokenFile:
    """A bearer token read from a file, re-read when the file changes (rotated tokens).
    The file is looked at no more than once per `CHECK_INTERVAL` seconds, not once per
    request: projected tokens rotate well before they expire."""

    CHECK_INTERVAL = 1.0

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._checked = -math.inf
        self._value = b""

    def value(self) -> bytes:
        now = self._clock()
        if now - self._checked < self.CHECK_INTERVAL:
            return self._value
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._value = self.path.read_bytes().strip()
            self._stamp = stamp
        self._checked = now
        return self._value


class StaticConnector:
    def __init__(self, conn: StaticConnection, limits: Limits, nursery: trio.Nursery) -> None:
        tls = ClusterTLS(
            cafile=str(conn.certificate_authority_file)
            if conn.certificate_authority_file
            else None,
            cert_file=str(conn.client_cert_file) if conn.client_cert_file else None,
            key_file=str(conn.client_key_file) if conn.client_key_file else None,
        )
        self.pool = UpstreamPool(Origin.from_url(conn.server), tls, limits, nursery)
        self._token = TokenFile(conn.token_file) if conn.token_file else None

    async def upstream(self) -> UpstreamPool:
        return self.pool

    async def retire(self) -> None:
        await self.pool.retire()

    async def credential_headers(self, identity: Identity, decision: Decision) -> Headers:
        if self._token is None:
            return []  # the client certificate in the TLS context is the credential
        try:
            token = self._token.value()
        except OSError as exc:
            raise UpstreamCredentialError(
                f"cannot read token_file {self._token.path}: {exc.strerror or exc}"
            ) from exc
        return [(b"authorization", b"Bearer " + token)]


_PROBE_IDENTITY = Identity(username="l7proxy-check-config")
_PROBE_BODY_LIMIT = 64 * 1024


async def probe_static(conn: StaticConnection, limits: Limits | None = None) -> str:
    """For `check-config --probe`: GET /version with the connection's own credential, so a
    wrong server, CA or token shows before the first user does. A cluster refuses a bad
    bearer token even on /version; returns the cluster's version.

    Raises `UpstreamCredentialError` (unusable CA or certificate, unreadable token, refused
    credential) or `UpstreamError` (unreachable, too slow, malformed answer).
    """
    limits = limits or Limits()
    failure: UpstreamCredentialError | UpstreamError | None = None
    version = ""
    async with trio.open_nursery() as nursery:
        try:
            try:
                connector = StaticConnector(conn, limits, nursery)
            except (ssl.SSLError, OSError) as exc:
                raise UpstreamCredentialError(
                    f"unusable certificate_authority_file or client certificate: {exc}"
                ) from exc
            try:
                decision = Decision(True, "", None, "check-config --probe", ())
                headers = await connector.credential_headers(_PROBE_IDENTITY, decision)
                version = await cluster_version(
                    connector.pool,
                    headers,
                    limits,
                    hint="does the cluster accept the connection's credential?",
                )
            finally:
                await connector.pool.aclose()
        except (UpstreamCredentialError, UpstreamError) as exc:
            failure = exc  # raised outside the nursery, so callers need no ExceptionGroup
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return version
