"""What every connector shares: the `Connector` port the pipeline calls, the credential
error it answers 503 for, and the `/version` probe that checks a credential.

The caller's own credential never travels on: `credential_headers` supplies the
connection's, chosen by the allowing policy's `binding_user_role` where a connection has
several.
"""

from __future__ import annotations

import json
from typing import Protocol

import trio

from l7proxy.config.settings import Limits
from l7proxy.upstream.pool import UpstreamError, UpstreamFailure, UpstreamPool, exchange_whole
from policy.decision import Decision
from policy.identity import Identity

Headers = list[tuple[bytes, bytes]]

_PROBE_BODY_LIMIT = 64 * 1024


class UpstreamCredentialError(Exception):
    """The connection's service credential (or the cluster's address) cannot be had right now.

    The pipeline answers 503. The message is for a person to act on: it names the connection,
    the role key and ARN, and the AWS error code; it never carries a secret.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # the AWS error code, or "" when none applies


class CredentialMetrics(Protocol):
    """Where an EKS connection counts its STS calls and token-cache use (the gateway's
    `Metrics`)."""

    def sts_call(self, connection: str, *, failed: bool) -> None: ...

    def token_cache(self, connection: str, *, hit: bool) -> None: ...


class Connector(Protocol):
    async def upstream(self) -> UpstreamPool:
        """The cluster's pool; an EKS connection may first have to discover its address."""
        ...

    async def credential_headers(self, identity: Identity, decision: Decision) -> Headers: ...

    async def retire(self) -> None:
        """A reload replaced this connector: close what it holds once its requests are done."""
        ...


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
