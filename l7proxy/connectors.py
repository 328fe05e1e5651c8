"""A connection's way into its cluster: an upstream pool and the service credential.

The caller's own credential never travels on: `credential_headers` supplies the
connection's, chosen by the allowing policy's `binding_user_role` where a connection has
several.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import trio

from l7proxy.settings import Connection, EksConnection, Limits, StaticConnection
from l7proxy.upstream import Origin, UpstreamPool, client_ssl_context
from policy.decision import Decision
from policy.identity import Identity

Headers = list[tuple[bytes, bytes]]


class UnsupportedConnection(Exception):
    """A configured connection type this build cannot reach yet."""


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
    """A bearer token read from a file, re-read when the file changes (rotated tokens)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._value = b""

    def value(self) -> bytes:
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._value = self.path.read_bytes().strip()
            self._stamp = stamp
        return self._value


class StaticConnector:
    def __init__(self, conn: StaticConnection, limits: Limits, nursery: trio.Nursery) -> None:
        context = client_ssl_context(
            cafile=str(conn.certificate_authority_file)
            if conn.certificate_authority_file
            else None,
            cert_file=str(conn.client_cert_file) if conn.client_cert_file else None,
            key_file=str(conn.client_key_file) if conn.client_key_file else None,
        )
        self.pool = UpstreamPool(Origin.from_url(conn.server), context, limits, nursery)
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
    raise UnsupportedConnection(f"unknown connection type {type(conn).__name__}")
