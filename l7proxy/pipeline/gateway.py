"""The request path, top to bottom:

    route → authenticate → resolve → authorize → [local answer]
          → upstream credential → forward head → stream bodies both ways → audit

Each stage is a function with a typed input and output; a stage that refuses raises
`GatewayRefusal`, which becomes one `Status` response in `_refuse`. Audit happens in
`handle`'s `finally`, so every request — allowed, refused or cut short — leaves one event.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import structlog
import trio

from l7proxy.config.settings import Limits, Routing
from l7proxy.identity.oidc.authenticator import (
    Authenticated,
    AuthenticationError,
    Authenticator,
    ProviderUnavailable,
)
from l7proxy.pipeline.errors import Fault, GatewayRefusal, Outcome, fault_for_status, status_for
from l7proxy.pipeline.reviews import ClusterAsker, Review, ReviewError, read_review, review_kind
from l7proxy.pipeline.reviews import answer as answer_review
from l7proxy.pipeline.routing import LocalEndpoint, Misdirected, Route, route
from l7proxy.pipeline.session import Session, channel_protocol
from l7proxy.pipeline.splice import SessionEnd, splice
from l7proxy.telemetry.audit import AuditEvent, AuditLog
from l7proxy.telemetry.metrics import Metrics
from l7proxy.upstream.credential import Connector, UpstreamCredentialError
from l7proxy.upstream.pool import (
    Switched,
    UpstreamError,
    UpstreamFailure,
    UpstreamPool,
    UpstreamRequest,
)
from l7proxy.wire.exchange import ClientDisconnected, Exchange, UpgradeNotPossible
from policy.decision import Decision
from policy.engine import PolicySet
from policy.identity import Identity
from policy.impersonation import authorize_impersonation
from protocols.attributes import Attributes, UnresolvableRequest, resolve
from protocols.headers import (
    impersonation_headers,
    request_headers_for_upstream,
    response_headers_for_client,
    upgrade_token,
)
from protocols.impersonation_headers import InvalidImpersonation, parse_impersonation
from protocols.path_safety import UnsafeRequest, check_target
from protocols.status import StatusReason, status_body, status_headers

log = structlog.get_logger("l7proxy.pipeline.gateway")

# A refused request's body is read and dropped up to this size so the connection can be
# reused; a larger body closes the connection instead.
DRAIN_LIMIT = 64 * 1024
# Time allowed for releasing a cancelled upstream request.
CLEANUP_TIMEOUT = 2.0


class Gateway:
    """The gateway application served by the listener."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        policies: PolicySet,
        connectors: dict[str, Connector],
        audit: AuditLog,
        metrics: Metrics,
        limits: Limits,
        recordings_dir: Path | None = None,
        routing: Routing | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.policies = policies
        self.connectors = connectors
        self.audit = audit
        self.metrics = metrics
        self.limits = limits
        self.recordings_dir = recordings_dir
        self.routing = routing or Routing()
        self.ready = False  # set once the listeners are bound
        self.draining = False

    @property
    def is_ready(self) -> bool:
        """`/readyz`: listening, every provider's keys fetched once, and not draining."""
        return self.ready and not self.draining and self.authenticator.keys_fetched

    # -- the straight line ----------------------------------------------------------------
    async def handle(self, exchange: Exchange) -> None:
        head = exchange.head
        started = time.monotonic()
        event = AuditEvent(
            audit_id=self.audit.ids.new(),
            method=head.method,
            path=head.path,
            client_addr=exchange.client_addr,
            user_agent=(head.header(b"user-agent") or b"").decode("latin-1"),
            http_version=head.http_version,
        )
        target = route(
            head.path,
            server_name=exchange.server_name,
            host=(head.header(b"host") or b"").decode("latin-1"),
            host_suffix=self.routing.host_suffix,
        )
        if not isinstance(target, Route):
            await self._answer_local(exchange, target, event)
            return
        self.metrics.in_flight.inc()
        try:
            connector = self._connector(target, event)
            auth = await self._authenticate(exchange, event)
            attributes = self._resolve(exchange, target, event)
            acting = self._impersonate(exchange, auth.identity, target, event)
            review = review_kind(attributes)
            if review is not None:
                await self._answer_review(
                    exchange, review, acting, connector, target, attributes, event
                )
                return
            decision = self._authorize(exchange, acting, target, attributes, event)
            await self._forward(exchange, connector, target, auth, decision, event)
        except GatewayRefusal as refusal:
            await self._refuse_quietly(exchange, refusal, event)
        finally:
            self.metrics.in_flight.dec()
            self._record(event, started)

    def _record(self, event: AuditEvent, started: float) -> None:
        """Every request, whatever became of it: one audit event, counted in /metrics."""
        self.audit.write(event, duration=time.monotonic() - started)
        self.metrics.observe(event)

    def _connector(self, target: Route, event: AuditEvent) -> Connector:
        event.connection = target.connection
        connector = self.connectors.get(target.connection)
        if connector is None:
            raise GatewayRefusal(
                Fault.UNKNOWN_CONNECTION, f'the gateway has no connection "{target.connection}"'
            )
        return connector

    async def _authenticate(self, exchange: Exchange, event: AuditEvent) -> Authenticated:
        token = bearer_token(exchange.head.header(b"authorization"))
        if token is None:
            raise GatewayRefusal(Fault.UNAUTHENTICATED, "Unauthorized: no bearer token")
        try:
            result = await self.authenticator.authenticate(token)
        except ProviderUnavailable as exc:
            raise GatewayRefusal(
                Fault.IDP_UNAVAILABLE, f"cannot verify tokens: {exc.reason}"
            ) from exc
        except AuthenticationError as exc:
            raise GatewayRefusal(Fault.UNAUTHENTICATED, f"Unauthorized: {exc.reason}") from exc
        event.set_identity(result.identity)
        return result

    def _resolve(self, exchange: Exchange, target: Route, event: AuditEvent) -> Attributes:
        try:
            check_target(exchange.head.target)
        except UnsafeRequest as exc:
            raise GatewayRefusal(Fault.BAD_REQUEST, exc.message) from exc
        try:
            attributes = resolve(exchange.head.method, target.path, exchange.head.query)
        except UnresolvableRequest as exc:
            raise GatewayRefusal(Fault.BAD_REQUEST, str(exc)) from exc
        event.set_attributes(attributes)
        return attributes

    def _authorize(
        self,
        exchange: Exchange,
        acting: Identity,
        target: Route,
        attributes: Attributes,
        event: AuditEvent,
    ) -> Decision:
        """The policy decision for the acting identity: the caller, or whom the caller
        impersonates where a policy grants it."""
        decision = self.policies.decide(acting, target.connection, attributes)
        if decision.allowed and _upgrade_needs_create(exchange, attributes):
            # kube-apiserver ≥1.31 (AuthorizePodWebsocketUpgradeCreatePermission): an
            # exec/attach/port-forward upgrade on GET also needs `create`.
            create = self.policies.decide(
                acting, target.connection, dataclasses.replace(attributes, verb="create")
            )
            if not create.allowed:
                decision = dataclasses.replace(
                    create,
                    reason=f"an upgraded {attributes.subresource} also needs create: "
                    f"{create.reason}",
                )
        event.set_decision(decision)
        if not decision.allowed:
            raise GatewayRefusal(
                Fault.FORBIDDEN, forbidden_message(acting, attributes, target, decision)
            )
        return decision

    def _impersonate(
        self, exchange: Exchange, identity: Identity, target: Route, event: AuditEvent
    ) -> Identity:
        """Whom the request acts as: the caller, or — kube-apiserver's impersonation rules,
        where a policy grants RBAC's `impersonate` — the identity it names. The
        `Impersonate-*` headers themselves never travel on."""
        try:
            request = parse_impersonation(exchange.head.headers)
        except InvalidImpersonation as exc:
            raise GatewayRefusal(Fault.BAD_REQUEST, exc.message) from exc
        if request is None:
            return identity
        decision, acting = authorize_impersonation(
            self.policies, identity, target.connection, request
        )
        if not decision.allowed:
            event.set_decision(decision)
            headers = ", ".join(impersonation_headers(exchange.head.headers))
            raise GatewayRefusal(
                Fault.FORBIDDEN,
                f"{_subject(identity)} cannot impersonate ({headers}) on connection "
                f'"{target.connection}": {decision.reason}',
            )
        event.impersonated_user = acting.username
        event.impersonated_groups = acting.groups
        return acting

    async def _answer_review(
        self,
        exchange: Exchange,
        review: Review,
        acting: Identity,
        connector: Connector,
        target: Route,
        attributes: Attributes,
        event: AuditEvent,
    ) -> None:
        """can-i, can-i --list and whoami, answered from the caller's own policies."""
        try:
            document = await read_review(exchange)
            response, decision = await answer_review(
                review,
                document,
                identity=acting,
                connection=target.connection,
                policies=self.policies,
                attributes=attributes,
                ask_cluster=ClusterAsker(connector, acting, self.limits.upstream_response_timeout),
            )
        except ReviewError as exc:
            raise GatewayRefusal(Fault.BAD_REQUEST, str(exc)) from exc
        event.decision = "allow"
        event.reason = f"{review.value} answered by the gateway" + (
            f": {decision.reason}" if decision is not None else ""
        )
        body = json.dumps(response).encode()
        event.status, event.bytes_out = 201, len(body)
        await exchange.start_response(
            201,
            [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"audit-id", event.audit_id.encode()),
            ],
        )
        await exchange.send(body)
        await exchange.finish()

    async def _forward(
        self,
        exchange: Exchange,
        connector: Connector,
        target: Route,
        auth: Authenticated,
        decision: Decision,
        event: AuditEvent,
    ) -> None:
        headers = request_headers_for_upstream(exchange.head.headers)
        try:
            pool = await connector.upstream()
            headers += await connector.credential_headers(auth.identity, decision)
        except UpstreamCredentialError as exc:
            code = f" [{exc.code}]" if exc.code and exc.code not in exc.message else ""
            raise GatewayRefusal(
                Fault.UPSTREAM_CREDENTIAL, f'connection "{target.connection}": {exc.message}{code}'
            ) from exc
        upgrade = upgrade_token(exchange.head.headers)
        if upgrade is not None and exchange.head.http_version == "1.1":
            await self._forward_upgrade(exchange, pool, target, headers, upgrade, auth, event)
            return
        upstream = await self._open_upstream(exchange, pool, target, headers)
        await self._relay(exchange, upstream, auth, event)

    async def _relay(
        self, exchange: Exchange, upstream: UpstreamRequest, auth: Authenticated, event: AuditEvent
    ) -> None:
        # The wait for the response head is timed from the end of the request body: a
        # slow upload still sending is not cut (the cluster may still answer early).
        timeout = self.limits.upstream_response_timeout
        head_wait = trio.CancelScope(
            deadline=math.inf if exchange.has_body else trio.current_time() + timeout
        )
        refusal: GatewayRefusal | None = None  # stays None when the client goes away mid-body
        try:
            if not exchange.has_body:  # most requests: nothing to copy beside the response
                refusal = await self._relay_response(exchange, upstream, auth, event, head_wait)
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        self._copy_request_body,
                        exchange,
                        upstream,
                        event,
                        nursery.cancel_scope,
                        head_wait,
                    )
                    refusal = await self._relay_response(exchange, upstream, auth, event, head_wait)
                    nursery.cancel_scope.cancel()
        finally:
            if event.ended_by == "complete":
                # Read to its end, the request is released without waiting on the cluster
                # (nothing to reset), so it needs no shielded, timed scope of its own.
                await upstream.aclose()
            else:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
                    await upstream.aclose()
        if refusal is not None:
            raise refusal

    async def _forward_upgrade(
        self,
        exchange: Exchange,
        pool: UpstreamPool,
        target: Route,
        headers: list[tuple[bytes, bytes]],
        upgrade: bytes,
        auth: Authenticated,
        event: AuditEvent,
    ) -> None:
        """exec, attach, port-forward: a fresh HTTP/1.1 connection to the cluster asks for
        the same upgrade; on its 101 the client gets a 101 and the two streams are spliced."""
        headers = [*headers, (b"connection", b"Upgrade"), (b"upgrade", upgrade)]
        try:
            answer = await pool.upgrade(
                exchange.head.method, target.upstream_target(exchange.head.query), headers
            )
        except UpstreamError as exc:
            raise _upstream_refusal(exc, target.connection) from exc
        if not isinstance(answer, Switched):
            await self._relay(exchange, answer, auth, event)  # refused by the cluster
            return
        event.status = 101
        event.upgrade = _upgrade_name(upgrade, answer.headers)
        event.upstream_audit_id = _header(answer.headers, b"audit-id")
        response = self._client_headers(answer.headers, event.audit_id)
        response += [
            (b"connection", b"Upgrade"),
            (b"upgrade", _header(answer.headers, b"upgrade").encode() or upgrade),
        ]
        try:
            try:
                client = await exchange.upgrade(response)
            except (UpgradeNotPossible, ClientDisconnected):
                event.ended_by = "client"
                return

            session = Session(
                event,
                exchange.head.query,
                protocol=channel_protocol(answer.headers),
                audit=self.audit,
                recordings_dir=self.recordings_dir,
            )
            session.start()
            deadline, reason = self._stream_deadline(auth)
            event.ended_by = "gateway shutdown"  # unless the splice returns
            try:
                ended = await splice(
                    client,
                    answer.stream,
                    deadline=deadline,
                    deadline_reason=reason,
                    idle_timeout=self.limits.upgrade_idle_timeout,
                    from_client=session.from_client,
                    from_cluster=session.from_cluster,
                )
                event.ended_by = ended.value
            finally:
                session.end(event.ended_by)
        finally:
            with trio.CancelScope(shield=True):
                await answer.stream.aclose()

    def _stream_deadline(self, auth: Authenticated) -> tuple[float, SessionEnd]:
        """When a long response or session must end: the caller's token expiry (plus the
        configured grace) or the maximum duration, whichever comes first."""
        expiry = auth.expires_at + self.limits.token_expiry_grace
        deadline, reason = _wall_to_trio(expiry), SessionEnd.TOKEN_EXPIRY
        if self.limits.max_stream_duration > 0:
            limit = trio.current_time() + self.limits.max_stream_duration
            if limit < deadline:
                deadline, reason = limit, SessionEnd.DEADLINE
        return deadline, reason

    async def _relay_response(
        self,
        exchange: Exchange,
        upstream: UpstreamRequest,
        auth: Authenticated,
        event: AuditEvent,
        head_wait: trio.CancelScope,
    ) -> GatewayRefusal | None:
        """The cluster's response to the client, as it arrives. Runs beside the request
        body copy, so it returns its refusal rather than raising it out of the nursery."""
        try:
            status, response_headers = await self._response_head(upstream, head_wait)
        except GatewayRefusal as refusal:
            return refusal
        event.status = status
        event.upstream_audit_id = _header(response_headers, b"audit-id")
        try:
            await exchange.start_response(
                status, self._client_headers(response_headers, event.audit_id)
            )
            event.ended_by = await self._copy_response_body(exchange, upstream, auth, event)
            if event.ended_by != "cluster":
                # A response the cluster cut short is not ended cleanly: the client's
                # stream is reset (HTTP/2) or its connection closed (HTTP/1.1).
                await exchange.finish()
        except ClientDisconnected:
            event.ended_by = "client"
        return None

    async def _open_upstream(
        self,
        exchange: Exchange,
        pool: UpstreamPool,
        target: Route,
        headers: list[tuple[bytes, bytes]],
    ) -> UpstreamRequest:
        try:
            return await pool.request(
                exchange.head.method,
                target.upstream_target(exchange.head.query),
                headers,
                has_body=exchange.has_body,
            )
        except UpstreamError as exc:
            raise _upstream_refusal(exc, target.connection) from exc

    async def _response_head(
        self, upstream: UpstreamRequest, head_wait: trio.CancelScope
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        timeout = self.limits.upstream_response_timeout
        try:
            with head_wait:
                return await upstream.response_head()
        except UpstreamError as exc:
            raise _upstream_refusal(exc, "") from exc
        raise GatewayRefusal(
            Fault.UPSTREAM_TIMEOUT, f"the cluster did not answer within {timeout:g}s"
        )

    @staticmethod
    def _client_headers(
        headers: list[tuple[bytes, bytes]], audit_id: str
    ) -> list[tuple[bytes, bytes]]:
        kept = [(k, v) for k, v in response_headers_for_client(headers) if k != b"audit-id"]
        kept.append((b"audit-id", audit_id.encode()))
        return kept

    async def _copy_request_body(
        self,
        exchange: Exchange,
        upstream: UpstreamRequest,
        event: AuditEvent,
        scope: trio.CancelScope,
        head_wait: trio.CancelScope,
    ) -> None:
        """Stream the request body to the cluster, then start the wait for its answer. A
        client that goes away cancels the whole exchange; a cluster that stops reading is
        left to say why in its response."""
        if not exchange.has_body:
            return
        try:
            while chunk := await exchange.receive():
                event.bytes_in += len(chunk)
                await upstream.send(chunk)
            await upstream.end_body()
        except ClientDisconnected:
            event.ended_by = "client"
            scope.cancel()
        except UpstreamError as exc:
            log.info(
                "cluster stopped reading the request body", audit_id=event.audit_id, error=str(exc)
            )
        head_wait.deadline = trio.current_time() + self.limits.upstream_response_timeout

    async def _copy_response_body(
        self, exchange: Exchange, upstream: UpstreamRequest, auth: Authenticated, event: AuditEvent
    ) -> str:
        """Stream the response as it comes; returns what ended it. A long response ends
        at the caller's token expiry or the configured maximum duration, never earlier."""
        deadline, reason = self._stream_deadline(auth)
        ended_by = reason.value
        event.ended_by = "client"  # stays so only if the client goes away mid-copy
        with trio.move_on_at(deadline):
            try:
                while chunk := await upstream.receive():
                    event.bytes_out += len(chunk)
                    await exchange.send(chunk)
            except UpstreamError as exc:
                log.info("upstream response cut short", audit_id=event.audit_id, error=str(exc))
                return "cluster"
            return "complete"
        return ended_by

    # -- answers the gateway makes itself -----------------------------------------------
    async def _answer_local(
        self, exchange: Exchange, endpoint: LocalEndpoint | Misdirected, event: AuditEvent
    ) -> None:
        refusal = _unserved(exchange, endpoint)
        if refusal is not None:
            started = time.monotonic()
            try:
                await self._refuse_quietly(exchange, refusal, event)
            finally:
                self._record(event, started)
            return
        if endpoint is LocalEndpoint.METRICS:
            body, content_type = self.metrics.render()
        else:
            healthy = endpoint is LocalEndpoint.HEALTHZ or self.is_ready
            body, content_type = (b"ok" if healthy else b"not ready"), b"text/plain; charset=utf-8"
            if not healthy:
                await self._send_whole(exchange, 503, body, content_type)
                return
        await self._send_whole(exchange, 200, body, content_type)

    @staticmethod
    async def _send_whole(
        exchange: Exchange, status: int, body: bytes, content_type: bytes
    ) -> None:
        await _drain(exchange)
        await exchange.start_response(
            status, [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        )
        await exchange.send(body)
        await exchange.finish()

    async def _refuse_quietly(
        self, exchange: Exchange, refusal: GatewayRefusal, event: AuditEvent
    ) -> None:
        try:
            await self._refuse(exchange, refusal, event)
        except ClientDisconnected:
            event.ended_by = "client"

    async def _refuse(self, exchange: Exchange, refusal: GatewayRefusal, event: AuditEvent) -> None:
        answer = status_for(refusal.fault)
        event.status = answer.reason.code
        event.decision = answer.outcome.value
        if answer.outcome is not Outcome.DENY or not event.reason:
            event.reason = refusal.message
        if exchange.response_started:
            return  # the head is out: a Status can no longer be sent; the stream just ends
        await _drain(exchange)
        body = status_body(answer.reason, refusal.message)
        await exchange.start_response(answer.reason.code, status_headers(body, event.audit_id))
        await exchange.send(body)
        await exchange.finish()

    async def refuse(self, exchange: Exchange | None, reason: StatusReason, message: str) -> str:
        """A request the listener refused before `handle`: audit it, and answer it when
        there is an exchange to answer on (the listener answers HTTP/1.1 itself)."""
        started = time.monotonic()
        event = AuditEvent(audit_id=self.audit.ids.new())
        if exchange is not None:
            event.method = exchange.head.method
            event.path = exchange.head.path[:256]
            event.client_addr = exchange.client_addr
            event.http_version = exchange.head.http_version
        refusal = GatewayRefusal(fault_for_status(reason), message)
        try:
            if exchange is not None:
                await self._refuse_quietly(exchange, refusal, event)
            else:
                answer = status_for(refusal.fault)
                event.status, event.decision, event.reason = (
                    answer.reason.code,
                    answer.outcome.value,
                    message,
                )
        finally:
            self._record(event, started)
        return event.audit_id


def bearer_token(value: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer …` header (RFC 6750 §2.1), or None."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    if not token:
        return None
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return None


def _subject(identity: Identity) -> str:
    groups = ", ".join(f'"{g}"' for g in identity.groups) or "none"
    return f'User "{identity.username}" (groups {groups})'


def _unserved(exchange: Exchange, endpoint: LocalEndpoint | Misdirected) -> GatewayRefusal | None:
    """The refusal for a request that routes to no cluster and no endpoint of the gateway's."""
    if isinstance(endpoint, Misdirected):
        return GatewayRefusal(Fault.MISDIRECTED, endpoint.message)
    if endpoint is LocalEndpoint.NOT_FOUND:
        return GatewayRefusal(
            Fault.NOT_FOUND,
            f'the path "{exchange.head.path}" is not served here; '
            "clusters are under /k8s/<connection>/",
        )
    return None


def forbidden_message(identity: Identity, a: Attributes, target: Route, decision: Decision) -> str:
    """kube-apiserver's wording, plus the groups, the connection and the deciding rule."""
    if a.is_resource_request:
        resource = a.resource + (f"/{a.subresource}" if a.subresource else "")
        what = f'{resource} "{a.name}"' if a.name else resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        action = f'cannot {a.verb} resource "{resource}" in API group "{a.api_group}" {scope}'
    else:
        what = f'"{a.path}"'
        action = f'cannot {a.verb} path "{a.path}"'
    return (
        f"{what} is forbidden: {_subject(identity)} {action} "
        f'on connection "{target.connection}": {decision.reason}'
    )


def _upstream_refusal(exc: UpstreamError, connection: str) -> GatewayRefusal:
    where = f'connection "{connection}": ' if connection else ""
    match exc.failure:
        case UpstreamFailure.CONNECT:
            return GatewayRefusal(Fault.UPSTREAM_UNREACHABLE, f"{where}{exc}")
        case UpstreamFailure.TIMEOUT:
            return GatewayRefusal(Fault.UPSTREAM_TIMEOUT, f"{where}{exc}")
        case UpstreamFailure.PROTOCOL:
            return GatewayRefusal(Fault.UPSTREAM_PROTOCOL, f"{where}{exc}")


def _upgrade_needs_create(exchange: Exchange, a: Attributes) -> bool:
    return (
        a.verb == "get"
        and a.resource == "pods"
        and a.subresource in ("exec", "attach", "portforward")
        and upgrade_token(exchange.head.headers) is not None
    )


def _upgrade_name(upgrade: bytes, response: list[tuple[bytes, bytes]]) -> str:
    """For the audit event: the upgrade and the subprotocol the cluster chose, e.g.
    `websocket v5.channel.k8s.io` or `SPDY/3.1 portforward.k8s.io`."""
    chosen = _header(response, b"sec-websocket-protocol") or _header(
        response, b"x-stream-protocol-version"
    )
    name = upgrade.decode("latin-1")
    return f"{name} {chosen}" if chosen else name


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _wall_to_trio(wall: float) -> float:
    if not math.isfinite(wall):
        return math.inf
    return trio.current_time() + (wall - time.time())


async def _drain(exchange: Exchange) -> None:
    """Read what is left of a request body we will not forward, up to `DRAIN_LIMIT`."""
    if not exchange.has_body:
        return
    seen = 0
    with trio.move_on_after(1.0):
        while seen <= DRAIN_LIMIT and (chunk := await exchange.receive()):
            seen += len(chunk)
