"""Assumed-role credentials per (role, caller), cached, single-flight, with backoff.

Each caller gets their own STS session, named after them, so CloudTrail and the cluster's
audit log (which sees the assumed-role ARN `.../assumed-role/<role>/<session name>`) attribute
every call to the person or agent behind it, not to the gateway.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from l7proxy.upstream.credential import CredentialMetrics, UpstreamCredentialError
from l7proxy.upstream.eks.aws_bridge import AwsBridge
from l7proxy.upstream.eks.token import AwsCredentials

log = structlog.get_logger("l7proxy.upstream.eks")

# Credentials are refreshed this long before they expire...
REFRESH_BEFORE = 5 * 60
# ...and, while STS fails, kept in use until this long before (a token minted from them must
# outlive the request that carries it).
USABLE_UNTIL_BEFORE = 60
# Whole-call deadline for one AWS call, retries included.
CALL_DEADLINE = 20.0

_SESSION_NAME_MAX = 64
_HASH_CHARS = 12
_NOT_STS = re.compile(r"[^A-Za-z0-9_+=,.@-]")

_HINTS = {
    "AccessDenied": "the role's trust policy must allow the gateway's own principal "
    "to sts:AssumeRole (and sts:SetSourceIdentity when source_identity is on)",
    "AccessDeniedException": "the gateway's own principal lacks the permission named",
    "Throttling": "AWS is throttling the gateway's calls",
    "ThrottlingException": "AWS is throttling the gateway's calls",
    "RequestLimitExceeded": "AWS is throttling the gateway's calls",
    "InvalidClientTokenId": "the gateway's own AWS credentials are not valid",
    "ExpiredToken": "the gateway's own AWS credentials have expired",
    "RegionDisabledException": "STS is not activated in this region for the account",
    "ResourceNotFoundException": "no cluster of that name in that region and account",
}


def session_name_for(username: str) -> str:
    """A RoleSessionName for a caller: readable, in STS's alphabet, 2-64 characters, and
    distinct per username (the hash covers what sanitising and truncating lose)."""
    digest = hashlib.sha256(username.encode()).hexdigest()[:_HASH_CHARS]
    readable = _NOT_STS.sub("-", username)[: _SESSION_NAME_MAX - _HASH_CHARS - 1] or "user"
    return f"{readable}-{digest}"


def aws_failure(what: str, exc: BotoCoreError | ClientError) -> UpstreamCredentialError:
    """A message a person can act on: which call, about what, the AWS error code, a hint."""
    if isinstance(exc, ClientError):
        error: dict[str, Any] = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        detail = f"{code}: {error.get('Message', '')}".rstrip(": ")
        hint = _HINTS.get(code)
        return UpstreamCredentialError(
            f"{what} failed: {detail}" + (f" ({hint})" if hint else ""), code=code
        )
    if isinstance(exc, NoCredentialsError):
        reason = (
            "the gateway has no AWS credentials (looked in the environment, shared config "
            "and profile, web identity, EKS Pod Identity and instance metadata)"
        )
    elif isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        reason = f"AWS is unreachable: {exc}"
    elif isinstance(exc, ReadTimeoutError):
        reason = f"AWS did not answer in time: {exc}"
    else:
        reason = str(exc)
    return UpstreamCredentialError(f"{what} failed: {reason}", code=type(exc).__name__)


class AwsCaller:
    """AWS calls through the bridge, each within a deadline (botocore's retries included),
    their failures as `UpstreamCredentialError`."""

    def __init__(self, bridge: AwsBridge, *, deadline: float = CALL_DEADLINE) -> None:
        self._bridge = bridge
        self._deadline = deadline

    async def call(
        self,
        what: str,
        service: str,
        region: str,
        endpoint_url: str | None,
        operation: str,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """`what` describes the call for a person: which connection, role or cluster."""
        try:
            with trio.fail_after(self._deadline):
                return await self._bridge.call(service, region, endpoint_url, operation, params)
        except trio.TooSlowError as exc:
            raise UpstreamCredentialError(
                f"{what} failed: AWS did not answer within {self._deadline:g}s", code="Timeout"
            ) from exc
        except (BotoCoreError, ClientError) as exc:
            raise aws_failure(what, exc) from exc


class Backoff:
    """After a failure, further attempts wait 1s, 2s, 4s... up to `cap`, answering at once
    with the last error meanwhile: a refusing or unreachable AWS sees one call per window
    rather than one per request."""

    def __init__(
        self, clock: Callable[[], float], *, first: float = 1.0, cap: float = 60.0
    ) -> None:
        self._clock = clock
        self._first = first
        self._cap = cap
        self._failures: dict[str, tuple[int, float, UpstreamCredentialError]] = {}

    def check(self, key: str) -> None:
        """Raise the last failure's error while its window lasts."""
        failure = self._failures.get(key)
        if failure is None:
            return
        _, retry_at, error = failure
        wait = retry_at - self._clock()
        if wait > 0:
            raise UpstreamCredentialError(
                f"{error.message}; next attempt in {math.ceil(wait)}s", code=error.code
            )

    def failed(self, key: str, error: UpstreamCredentialError) -> float:
        """Record a failure; returns the seconds until the next attempt."""
        count = self._failures[key][0] + 1 if key in self._failures else 1
        delay = min(self._cap, self._first * 2.0 ** (count - 1))
        self._failures[key] = (count, self._clock() + delay, error)
        return delay

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


@dataclass(frozen=True, slots=True)
class RoleSession:
    """One role assumed for one caller."""

    role_key: str
    role_arn: str
    session_name: str


@dataclass(slots=True)
class _Slot:
    lock: trio.Lock
    credentials: AwsCredentials | None = None


class AssumedRoles:
    """AssumeRole results per (role ARN, session name), refreshed `REFRESH_BEFORE` expiry.

    A burst of requests for one session makes one STS call: the first task calls, the rest
    wait on the session's lock and find the result. Failures back off per role (an STS that
    refuses or is unreachable does so for every caller of the role), and credentials already
    held keep serving until shortly before they expire.
    """

    def __init__(
        self,
        aws: AwsCaller,
        *,
        connection: str,
        region: str,
        sts_endpoint: str,
        duration: int = 3600,
        external_id: str | None = None,
        source_identity: bool = False,
        clock: Callable[[], float] = time.time,
        metrics: CredentialMetrics | None = None,
    ) -> None:
        self._aws = aws
        self._metrics = metrics
        self._connection = connection
        self._region = region
        self._sts_endpoint = sts_endpoint
        self._duration = duration
        self._external_id = external_id
        self._source_identity = source_identity
        self._clock = clock  # wall clock: STS expirations are wall-clock times
        self._backoff = Backoff(clock)
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def credentials(self, session: RoleSession) -> AwsCredentials:
        key = (session.role_arn, session.session_name)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(trio.Lock())
        held = slot.credentials
        if held is not None and self._clock() < held.expiration - REFRESH_BEFORE:
            return held
        async with slot.lock:
            held = slot.credentials
            if held is not None and self._clock() < held.expiration - REFRESH_BEFORE:
                return held  # another task refreshed them while this one waited
            try:
                self._backoff.check(session.role_arn)
                fresh = await self._assume(session)
            except UpstreamCredentialError:
                if held is not None and self._clock() < held.expiration - USABLE_UNTIL_BEFORE:
                    return held  # `_assume` has logged the failure
                raise
            slot.credentials = fresh
        self._forget_expired()
        return fresh

    async def _assume(self, session: RoleSession) -> AwsCredentials:
        params: dict[str, Any] = {
            "RoleArn": session.role_arn,
            "RoleSessionName": session.session_name,
            "DurationSeconds": self._duration,
        }
        if self._external_id is not None:
            params["ExternalId"] = self._external_id
        if self._source_identity:
            params["SourceIdentity"] = session.session_name
        what = (
            f'assuming role "{session.role_key}" ({session.role_arn}) '
            f"through STS {self._sts_endpoint}"
        )
        try:
            response = await self._aws.call(
                what, "sts", self._region, self._sts_endpoint, "assume_role", params
            )
        except UpstreamCredentialError as exc:
            self._count_call(failed=True)
            delay = self._backoff.failed(session.role_arn, exc)
            log.warning("assume role failed", error=exc.message, code=exc.code, retry_in=delay)
            raise
        self._count_call(failed=False)
        self._backoff.succeeded(session.role_arn)
        found = response["Credentials"]
        credentials = AwsCredentials(
            access_key_id=found["AccessKeyId"],
            secret_access_key=found["SecretAccessKey"],
            session_token=found["SessionToken"],
            expiration=found["Expiration"].timestamp(),
        )
        log.info(
            "assumed role",
            connection=self._connection,
            role=session.role_key,
            role_arn=session.role_arn,
            session_name=session.session_name,
            expires_in=round(credentials.expiration - self._clock()),
        )
        return credentials

    def _count_call(self, *, failed: bool) -> None:
        if self._metrics is not None:
            self._metrics.sts_call(self._connection, failed=failed)

    def _forget_expired(self) -> None:
        """Drop sessions of callers who have gone away, so the cache stays bounded."""
        now = self._clock()
        for key, slot in list(self._slots.items()):
            expired = slot.credentials is None or slot.credentials.expiration <= now
            if expired and not slot.lock.locked():
                del self._slots[key]
