"""An EKS connection: the caller's role session from STS, as a token the cluster accepts.

For each request the allowing policy's `binding_user_role` picks the role; the role is
assumed in a session named after the caller; the session's credentials presign the
`k8s-aws-v1.` token that goes upstream as the bearer token. Credentials and tokens are cached,
so STS sees one call per caller and role per credential lifetime, and none per request.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable

import trio

from l7proxy.config.settings import EksConnection, Limits
from l7proxy.upstream.credential import (
    CredentialMetrics,
    Headers,
    UpstreamCredentialError,
    cluster_version,
)
from l7proxy.upstream.eks.aws_bridge import AwsBridge
from l7proxy.upstream.eks.credentials import (
    CALL_DEADLINE,
    USABLE_UNTIL_BEFORE,
    AssumedRoles,
    AwsCaller,
    Backoff,
    RoleSession,
    session_name_for,
)
from l7proxy.upstream.eks.token import (
    TOKEN_REFRESH_AFTER,
    AwsCredentials,
    EksToken,
    mint_token,
    regional_sts_endpoint,
)
from l7proxy.upstream.pool import (
    ClusterTLS,
    Origin,
    UpstreamError,
    UpstreamPool,
)
from policy.decision import Decision
from policy.identity import Identity

_PROBE_IDENTITY = Identity(username="l7proxy-check-config")


class EksConnector:
    """One EKS connection's pool and credentials.

    Keeps one task in `nursery`, until the nursery is cancelled, that owns the AWS bridge, so
    the bridge's thread ends with the gateway. The pool is opened on first use because the
    cluster's address and CA may first have to come from DescribeCluster.
    """

    def __init__(
        self,
        conn: EksConnection,
        limits: Limits,
        nursery: trio.Nursery,
        *,
        clock: Callable[[], float] = time.time,
        call_deadline: float = CALL_DEADLINE,
        metrics: CredentialMetrics | None = None,
    ) -> None:
        self.conn = conn
        self._metrics = metrics
        self._limits = limits
        self._nursery = nursery
        self._clock = clock
        self._bridge = AwsBridge()
        self._aws = AwsCaller(self._bridge, deadline=call_deadline)
        self._sts_endpoint = conn.sts_endpoint or regional_sts_endpoint(conn.region)
        self._roles = AssumedRoles(
            self._aws,
            connection=conn.name,
            region=conn.region,
            sts_endpoint=self._sts_endpoint,
            duration=conn.session_duration,
            external_id=conn.external_id,
            source_identity=conn.source_identity,
            clock=clock,
            metrics=metrics,
        )
        self._role_arns = dict(conn.roles)
        self._tokens: dict[tuple[str, str], tuple[AwsCredentials, EksToken]] = {}
        self._pool: UpstreamPool | None = None
        self._pool_lock = trio.Lock()
        self._discovery_backoff = Backoff(clock)
        self._bridge_owner = trio.CancelScope()
        nursery.start_soon(self._own_bridge)

    async def upstream(self) -> UpstreamPool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await self._open_pool()
        return self._pool

    async def credential_headers(self, identity: Identity, decision: Decision) -> Headers:
        key, arn = self._role(decision)
        session = RoleSession(key, arn, session_name_for(identity.username))
        credentials = await self._roles.credentials(session)
        token = self._token(session, credentials)
        return [(b"authorization", b"Bearer " + token.value.encode())]

    def _role(self, decision: Decision) -> tuple[str, str]:
        key = decision.binding_user_role
        if key is None and len(self.conn.roles) == 1:
            key = self.conn.roles[0][0]
        arn = self._role_arns.get(key) if key is not None else None
        if key is None or arn is None:
            known = ", ".join(k for k, _ in self.conn.roles)
            raise UpstreamCredentialError(
                f'no role "{key}" for policy "{decision.policy}" to bind '
                f"(the connection's roles: {known})"
            )
        return key, arn

    def _token(self, session: RoleSession, credentials: AwsCredentials) -> EksToken:
        """The session's token, re-minted after `TOKEN_REFRESH_AFTER` or with new credentials
        (a token dies with the credentials that signed it)."""
        key = (session.role_arn, session.session_name)
        now = self._clock()
        cached = self._tokens.get(key)
        if cached is not None:
            signed_with, token = cached
            refresh_at = min(
                token.signed_at + TOKEN_REFRESH_AFTER,
                signed_with.expiration - USABLE_UNTIL_BEFORE,
            )
            if signed_with is credentials and now < refresh_at:
                self._count_token(hit=True)
                return token
        self._count_token(hit=False)
        token = mint_token(
            credentials,
            cluster_name=self.conn.cluster_name,
            region=self.conn.region,
            sts_endpoint=self._sts_endpoint,
        )
        for stale, (signed_with, _) in list(self._tokens.items()):
            if signed_with.expiration <= now:
                del self._tokens[stale]
        self._tokens[key] = (credentials, token)
        return token

    def _count_token(self, *, hit: bool) -> None:
        if self._metrics is not None:
            self._metrics.token_cache(self.conn.name, hit=hit)

    async def _open_pool(self) -> UpstreamPool:
        server, ca_data = self.conn.server, self.conn.certificate_authority_data
        source = "the configuration"
        if server is None or ca_data is None:
            found_server, found_ca = await self._describe_cluster()
            server, ca_data = server or found_server, ca_data or found_ca
            source = "the configuration and DescribeCluster"
        try:
            origin = Origin.from_url(server)
            tls = ClusterTLS(cadata=base64.b64decode(ca_data, validate=True).decode())
            return UpstreamPool(origin, tls, self._limits, self._nursery)
        except (ValueError, ssl.SSLError) as exc:
            raise UpstreamCredentialError(
                f"the server or certificate_authority_data from {source} is unusable "
                f"(expected an https URL and a base64 PEM CA): {exc}"
            ) from exc

    async def _describe_cluster(self) -> tuple[str, str]:
        """The cluster's endpoint and CA, asked once with the gateway's own credentials."""
        name, region = self.conn.cluster_name, self.conn.region
        what = (
            f'DescribeCluster "{name}" in {region} '
            "(or configure server and certificate_authority_data)"
        )
        self._discovery_backoff.check(name)
        try:
            response = await self._aws.call(
                what, "eks", region, self.conn.eks_endpoint, "describe_cluster", {"name": name}
            )
        except UpstreamCredentialError as exc:
            self._discovery_backoff.failed(name, exc)
            raise
        self._discovery_backoff.succeeded(name)
        cluster = response["cluster"]
        endpoint = cluster.get("endpoint")
        ca_data = cluster.get("certificateAuthority", {}).get("data")
        if not endpoint or not ca_data:
            raise UpstreamCredentialError(
                f"{what}: the cluster has no endpoint or CA yet (status {cluster.get('status')})"
            )
        return str(endpoint), str(ca_data)

    async def _own_bridge(self) -> None:
        try:
            with self._bridge_owner:
                await trio.sleep_forever()
        finally:
            await self._bridge.aclose()

    async def retire(self) -> None:
        """The pool first (its last requests may still mint tokens), then the bridge."""
        if self._pool is not None:
            await self._pool.retire()
        self._bridge_owner.cancel()


async def probe(conn: EksConnection, limits: Limits | None = None) -> str:
    """For `check-config --probe`: assume each role once and GET /version with its token.

    Returns one line per role; raises `UpstreamCredentialError` (AWS or the cluster refused)
    or `UpstreamError` (the cluster is unreachable) on the first failure.
    """
    limits = limits or Limits()
    lines: list[str] = []
    failure: UpstreamCredentialError | UpstreamError | None = None
    async with trio.open_nursery() as nursery:
        connector = EksConnector(conn, limits, nursery)
        try:
            pool = await connector.upstream()
            try:
                for key, arn in conn.roles:
                    version = await _version(connector, pool, key, limits)
                    lines.append(f"{conn.name} as {key} ({arn}): Kubernetes {version}")
            finally:
                await pool.aclose()
        except (UpstreamCredentialError, UpstreamError) as exc:
            failure = exc  # raised outside the nursery, so callers need no ExceptionGroup
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return "\n".join(lines)


async def _version(connector: EksConnector, pool: UpstreamPool, key: str, limits: Limits) -> str:
    decision = Decision(True, "", key, "check-config --probe", ())
    headers = await connector.credential_headers(_PROBE_IDENTITY, decision)
    try:
        return await cluster_version(
            pool, headers, limits, hint="is the role mapped in the cluster's access entries?"
        )
    except UpstreamCredentialError as exc:
        raise UpstreamCredentialError(f'as role "{key}", {exc.message}', code=exc.code) from exc
