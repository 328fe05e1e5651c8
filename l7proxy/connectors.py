"""A connection's way into its cluster: an upstream pool and the service credential.

The caller's own credential never travels on: `credential_headers` supplies the
connection's, chosen by the allowing policy's `binding_user_role` where a connection has
several.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, assert_never

import trio

from l7proxy.settings import Connection, EksConnection, Limits, StaticConnection
from l7proxy.upstream import (
    ClusterTLS,
    Origin,
    UpstreamError,
    UpstreamFailure,
    UpstreamPool,
    exchange_whole,
)
from policy.decision import Decision
from policy.identity import Identity

Headers = list[tuple[bytes, bytes]]


class UpstreamCredentialError(Exception):
    """The connection's service credential (or the cluster's address) cannot be had right now.

    The pipeline answers 503. The message is for a person to act on: it names the connection,
    the role key and ARN, and the AWS error code; it never carries a secret.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # the AWS error code, or "" when none applies


class Connector(Protocol):
    async def upstream(self) -> UpstreamPool:
        """The cluster's pool; an EKS connection may first have to discover its address."""
        ...

    async def credential_headers(self, identity: Identity, decision: Decision) -> Headers: ...


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


def build_connector(conn: Connection, limits: Limits, nursery: trio.Nursery) -> Connector:
    if isinstance(conn, StaticConnection):
        return StaticConnector(conn, limits, nursery)
    if isinstance(conn, EksConnection):
        # Imported here: it imports this module, and it keeps aiobotocore out of gateways
        # that have no EKS connection.
        from l7proxy.eks.connector import EksConnector

        return EksConnector(conn, limits, nursery)
    assert_never(conn)


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


async def cluster_version(
    pool: UpstreamPool, headers: Headers, limits: Limits, *, hint: str
) -> str:
    """`GET /version` with a connection's credential, for `check-config --probe`."""
    try:
        with trio.fail_after(limits.upstream_response_timeout):
            status, body = await exchange_whole(
                pool,
                "GET",
                "/version",
                [(b"accept", b"application/json"), *headers],
                limit=_PROBE_BODY_LIMIT,
            )
    except trio.TooSlowError as exc:
        raise UpstreamError(UpstreamFailure.TIMEOUT, "GET /version") from exc
    text = body.decode(errors="replace")
    if status != 200:
        raise UpstreamCredentialError(
            f"GET /version answered HTTP {status}: {text[:300]} ({hint})", code=f"HTTP{status}"
        )
    try:
        return str(json.loads(text)["gitVersion"])
    except (ValueError, KeyError, TypeError):
        return f"(unrecognised /version answer: {text[:100]})"
