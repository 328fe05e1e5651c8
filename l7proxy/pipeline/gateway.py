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
from dataclasses import dataclass

import structlog
import trio

from l7proxy.config.settings import Limits
from l7proxy.identity.oidc.authenticator import (
    Authenticated,
    AuthenticationError,
    ProviderUnavailable,
)
from l7proxy.pipeline.agents import AgentEndpoint
from l7proxy.pipeline.errors import Fault, GatewayRefusal, Outcome, fault_for_status, status_for
from l7proxy.pipeline.internal import Caller
from l7proxy.pipeline.live import Live
from l7proxy.pipeline.living import lift_hint, with_access
from l7proxy.pipeline.redaction import RedactingExchange, redacted_request_headers, redaction_for
from l7proxy.pipeline.reviews import ClusterAsker, Review, ReviewError, read_review, review_kind
from l7proxy.pipeline.reviews import answer as answer_review
from l7proxy.pipeline.routing import AgentRoute, LocalEndpoint, Misdirected, Route, route
from l7proxy.pipeline.session import Session, channel_protocol
from l7proxy.pipeline.shutdown import OpenStream, Shutdown
from l7proxy.pipeline.splice import SessionEnd, splice
from l7proxy.pipeline.state_api import StateApi
from l7proxy.state.view import StateView
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
from policy.grants import granted_by
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
# An upgrade's kind in `l7proxy_open_streams`, by its subresource.
_UPGRADES = {"exec": "exec", "attach": "attach", "portforward": "port-forward"}


@dataclass(frozen=True, slots=True)
class _Relay:
    """A forwarded request with its cluster's answer: what the relay steps share."""

    limits: Limits
    exchange: Exchange
    upstream: UpstreamRequest
    auth: Authenticated
    event: AuditEvent


class Gateway:
    """The gateway application served by the listener."""

    def __init__(
        self,
        live: Live,
        *,
        audit: AuditLog,
        metrics: Metrics,
        state_api: StateApi | None = None,
        state_view: StateView | None = None,
    ) -> None:
        self.live = live  # replaced whole by a reload, read once per request
        self.audit = audit
        self.metrics = metrics
        self.state_api = state_api  # None: no state store, /l7proxy/v1/ is not served
        self.state_view = state_view  # the grants and locks in force, for enforcement
        self.agents: AgentEndpoint | None = None  # /mcp/<connection>, when served
        self.ready = False  # set once the listeners are bound
        self.draining = False
        self.shutdown = Shutdown()

    @property
    def is_ready(self) -> bool:
        """`/readyz`: listening, every provider's keys fetched once, and not draining."""
        return self.ready and not self.draining and self.live.authenticator.keys_fetched

    # -- the straight line ----------------------------------------------------------------
    async def handle(self, exchange: Exchange, caller: Caller | None = None) -> None:
        """One request; `caller` is set for a request the gateway makes itself on behalf
        of a caller it already authenticated (an MCP tool's Kubernetes requests)."""
        head = exchange.head
        live = self.live
        started = time.monotonic()
        event = AuditEvent(
            audit_id=self.audit.ids.new(),
            method=head.method,
            path=head.path,
            client_addr=exchange.client_addr,
            user_agent=(head.header(b"user-agent") or b"").decode("latin-1"),
            http_version=head.http_version,
            parent_audit_id=caller.parent_audit_id if caller else "",
        )
        target = route(
            head.path,
            server_name=exchange.server_name,
            host=(head.header(b"host") or b"").decode("latin-1"),
            host_suffix=live.routing.host_suffix,
        )
        if target is LocalEndpoint.STATE_API and self.state_api is not None:
            await self._answer_state_api(exchange, self.state_api, event, caller)
            return
        if isinstance(target, AgentRoute):
            await self._answer_agent(exchange, target, event)
            return
        if not isinstance(target, Route):
            await self._answer_local(exchange, target, event)
            return
        with self.shutdown.request():  # a drain waits for it, audit event included
            self.metrics.in_flight.inc()
            try:
                connector = self._connector(live, target, event)
                auth = await self._authenticate(live, exchange, event, caller)
                attributes = self._resolve(exchange, target, event)
                live = with_access(live, self.state_view, auth.identity, target.connection)
                acting = self._impersonate(live, exchange, auth.identity, target, event)
                review = review_kind(attributes)
                if review is not None:
                    await self._answer_review(
                        live, exchange, review, acting, connector, target, attributes, event
                    )
                    return
                decision = self._authorize(live, exchange, acting, target, attributes, event)
                await self._forward(
                    live, exchange, connector, target, auth, decision, attributes, event
                )
            except GatewayRefusal as refusal:
                await self._refuse_quietly(exchange, refusal, event)
            finally:
                self.metrics.in_flight.dec()
                self._record(event, started)

    def _record(self, event: AuditEvent, started: float) -> None:
        """Every request, whatever became of it: one audit event, counted in /metrics."""
        self.audit.write(event, duration=time.monotonic() - started)
        self.metrics.observe(event, self.live.connectors)

    @staticmethod
    def _connector(live: Live, target: Route | AgentRoute, event: AuditEvent) -> Connector:
        event.connection = target.connection
        connector = live.connectors.get(target.connection)
        if connector is None:
            raise GatewayRefusal(
                Fault.UNKNOWN_CONNECTION, f'the gateway has no connection "{target.connection}"'
            )
        return connector

    @staticmethod
    async def _authenticate(
        live: Live, exchange: Exchange, event: AuditEvent, caller: Caller | None = None
    ) -> Authenticated:
        if caller is not None:  # verified when the caller's own request came in
            event.set_identity(caller.auth.identity)
            return caller.auth
        token = bearer_token(exchange.head.header(b"authorization"))
        if token is None:
            raise GatewayRefusal(Fault.UNAUTHENTICATED, "Unauthorized: no bearer token")
        try:
            result = await live.authenticator.authenticate(token)
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

    @staticmethod
    def _authorize(
        live: Live,
        exchange: Exchange,
        acting: Identity,
        target: Route,
        attributes: Attributes,
        event: AuditEvent,
    ) -> Decision:
        """The policy decision for the acting identity: the caller, or whom the caller
        impersonates where a policy grants it."""
        decision = live.policies.decide(acting, target.connection, attributes)
        needed = [decision]
        if decision.allowed and _upgrade_needs_create(exchange, attributes):
            # kube-apiserver ≥1.31 (AuthorizePodWebsocketUpgradeCreatePermission): an
            # exec/attach/port-forward upgrade on GET also needs `create`.
            create = live.policies.decide(
                acting, target.connection, dataclasses.replace(attributes, verb="create")
            )
            needed.append(create)
            if not create.allowed:
                decision = dataclasses.replace(
                    create,
                    reason=f"an upgraded {attributes.subresource} also needs create: "
                    f"{create.reason}",
                )
        event.set_decision(decision)
        event.policy = granted_by(decision.policy)[0]
        # The access request the request depends on, if any of its decisions needed one.
        event.grant = next((g for d in needed if (g := granted_by(d.policy)[1])), "")
        if not decision.allowed:
            message = forbidden_message(acting, attributes, target, decision)
            hint = lift_hint(live, acting, target.connection, attributes)
            raise GatewayRefusal(Fault.FORBIDDEN, message + hint)
        return decision

    @staticmethod
    def _impersonate(
        live: Live, exchange: Exchange, identity: Identity, target: Route, event: AuditEvent
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
            live.policies, identity, target.connection, request
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

    @staticmethod
    async def _answer_review(
        live: Live,
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
                policies=live.policies,
                attributes=attributes,
                ask_cluster=ClusterAsker(connector, acting, live.limits.upstream_response_timeout),
            )
        except ReviewError as exc:
            raise GatewayRefusal(Fault.BAD_REQUEST, str(exc)) from exc
        event.decision = "allow"
        event.reason = f"{review.value} answered by the gateway" + (
            f": {decision.reason}" if decision is not None else ""
        )
        await _send_json(exchange, 201, response, event)

    async def _answer_state_api(
        self, exchange: Exchange, api: StateApi, event: AuditEvent, caller: Caller | None
    ) -> None:
        """`/l7proxy/v1/`: access requests and locks, for the authenticated caller."""
        started = time.monotonic()
        try:
            auth = await self._authenticate(self.live, exchange, event, caller)
            status, document = await api.answer(exchange, auth.identity, event)
            event.decision = "allow"
            await _drain(exchange)  # a body sent where none is read (GET, DELETE)
            await _send_json(exchange, status, document, event)
        except GatewayRefusal as refusal:
            await self._refuse_quietly(exchange, refusal, event)
        except ClientDisconnected:
            event.ended_by = "client"
        finally:
            self._record(event, started)

    async def _forward(
        self,
        live: Live,
        exchange: Exchange,
        connector: Connector,
        target: Route,
        auth: Authenticated,
        decision: Decision,
        attributes: Attributes,
        event: AuditEvent,
    ) -> None:
        headers = request_headers_for_upstream(exchange.head.headers)
        if redaction_for(attributes, decision, live.policies, auth.identity, target.connection):
            headers = redacted_request_headers(exchange.head, headers)
            exchange = RedactingExchange(exchange, watch=attributes.verb == "watch")
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
            await self._forward_upgrade(live, exchange, pool, target, headers, upgrade, auth, event)
            return
        upstream = await self._open_upstream(exchange, pool, target, headers)
        await self._relay(_Relay(live.limits, exchange, upstream, auth, event))

    async def _relay(self, relay: _Relay) -> None:
        limits, exchange, upstream = relay.limits, relay.exchange, relay.upstream
        # The wait for the response head is timed from the end of the request body: a
        # slow upload still sending is not cut (the cluster may still answer early).
        timeout = limits.upstream_response_timeout
        head_wait = trio.CancelScope(
            deadline=math.inf if exchange.has_body else trio.current_time() + timeout
        )
        refusal: GatewayRefusal | None = None  # stays None when the client goes away mid-body
        try:
            if not exchange.has_body:  # most requests: nothing to copy beside the response
                refusal = await self._relay_response(relay, head_wait)
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        self._copy_request_body, relay, nursery.cancel_scope, head_wait
                    )
                    refusal = await self._relay_response(relay, head_wait)
                    nursery.cancel_scope.cancel()
        finally:
            if relay.event.ended_by == "complete":
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
        live: Live,
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
            await self._relay(_Relay(live.limits, exchange, answer, auth, event))  # a refusal
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
                recordings_dir=live.recordings_dir,
            )
            session.start()
            deadline, reason = _stream_deadline(live.limits, auth)
            stream = _open_stream(auth, event)
            try:
                kind = _UPGRADES.get(event.subresource)
                with self.shutdown.stream(stream), self.metrics.stream(kind):
                    ended = await splice(
                        client,
                        answer.stream,
                        deadline=deadline,
                        deadline_reason=reason,
                        idle_timeout=live.limits.upgrade_idle_timeout,
                        from_client=session.from_client,
                        from_cluster=session.from_cluster,
                    )
                    event.ended_by = ended.value
                event.ended_by = stream.ended_by or event.ended_by
            finally:
                session.end(event.ended_by)
        finally:
            with trio.CancelScope(shield=True):
                await answer.stream.aclose()

    async def _relay_response(
        self, relay: _Relay, head_wait: trio.CancelScope
    ) -> GatewayRefusal | None:
        """The cluster's response to the client, as it arrives. Runs beside the request
        body copy, so it returns its refusal rather than raising it out of the nursery."""
        exchange, event = relay.exchange, relay.event
        try:
            status, response_headers = await self._response_head(relay, head_wait)
        except GatewayRefusal as refusal:
            return refusal
        event.status = status
        event.upstream_audit_id = _header(response_headers, b"audit-id")
        try:
            await exchange.start_response(
                status, self._client_headers(response_headers, event.audit_id)
            )
            event.ended_by = await self._copy_response_body(relay)
            if event.ended_by != "cluster":
                # A response the cluster cut short is not ended cleanly: the client's
                # stream is reset (HTTP/2) or its connection closed (HTTP/1.1).
                await exchange.finish()
        except ClientDisconnected:
            event.ended_by = "client"
        except GatewayRefusal as refusal:  # a response that could not be rewritten
            return refusal
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

    @staticmethod
    async def _response_head(
        relay: _Relay, head_wait: trio.CancelScope
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        timeout = relay.limits.upstream_response_timeout
        try:
            with head_wait:
                return await relay.upstream.response_head()
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

    @staticmethod
    async def _copy_request_body(
        relay: _Relay, scope: trio.CancelScope, head_wait: trio.CancelScope
    ) -> None:
        """Stream the request body to the cluster, then start the wait for its answer. A
        client that goes away cancels the whole exchange; a cluster that stops reading is
        left to say why in its response."""
        exchange, upstream, event = relay.exchange, relay.upstream, relay.event
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
        head_wait.deadline = trio.current_time() + relay.limits.upstream_response_timeout

    async def _copy_response_body(self, relay: _Relay) -> str:
        """Stream the response as it comes; returns what ended it. A long response ends
        at the caller's token expiry or the configured maximum duration, never earlier."""
        exchange, upstream, event = relay.exchange, relay.upstream, relay.event
        deadline, reason = _stream_deadline(relay.limits, relay.auth)
        ended_by = reason.value
        event.ended_by = "client"  # stays so only if the client goes away mid-copy
        watching = self.metrics.stream("watch" if event.verb == "watch" else None)
        stream = _open_stream(relay.auth, event, deadline)
        with self.shutdown.stream(stream), watching:
            try:
                while chunk := await upstream.receive():
                    event.bytes_out += len(chunk)
                    await exchange.send(chunk)
            except UpstreamError as exc:
                log.info("upstream response cut short", audit_id=event.audit_id, error=str(exc))
                return "cluster"
            return "complete"
        return stream.ended_by or ended_by

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

    async def _answer_agent(
        self, exchange: Exchange, target: AgentRoute, event: AuditEvent
    ) -> None:
        """`/mcp/<connection>` and its protected resource metadata (RFC 9728), served by
        `self.agents` once the caller is authenticated; the metadata is public."""
        started = time.monotonic()
        try:
            await self._serve_agent(exchange, target, event)
        except GatewayRefusal as refusal:
            await self._refuse_quietly(exchange, refusal, event)
        finally:
            self._record(event, started)

    async def _serve_agent(self, exchange: Exchange, target: AgentRoute, event: AuditEvent) -> None:
        agents = self.agents
        if agents is None:
            raise GatewayRefusal(Fault.NOT_FOUND, "this gateway serves no MCP endpoint")
        self._connector(self.live, target, event)
        if target.metadata:
            await agents.metadata(exchange, target.connection, event)
            return
        try:
            auth = await self._authenticate(self.live, exchange, event)
        except GatewayRefusal as refusal:
            if refusal.fault is not Fault.UNAUTHENTICATED:
                raise
            challenge = agents.challenge(exchange, target.connection)
            raise GatewayRefusal(refusal.fault, refusal.message, challenge) from refusal
        await agents.serve(exchange, target.connection, auth, event)

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
        headers = [*status_headers(body, event.audit_id), *refusal.headers]
        await exchange.start_response(answer.reason.code, headers)
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
    if endpoint in (LocalEndpoint.NOT_FOUND, LocalEndpoint.STATE_API):  # no state store
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


def _open_stream(auth: Authenticated, event: AuditEvent, deadline: float = math.inf) -> OpenStream:
    """The stream a lock on its caller or connection, or the end of its grant, ends; and
    its scope's `deadline`, if any (one cancel scope for both: each costs ~10 µs)."""
    return OpenStream(
        auth.identity,
        event.connection,
        grant=event.grant,
        scope=trio.CancelScope(deadline=deadline),
    )


def _stream_deadline(limits: Limits, auth: Authenticated) -> tuple[float, SessionEnd]:
    """When a long response or session must end: the caller's token expiry (plus the
    configured grace) or the maximum duration, whichever comes first."""
    expiry = auth.expires_at + limits.token_expiry_grace
    deadline, reason = _wall_to_trio(expiry), SessionEnd.TOKEN_EXPIRY
    if limits.max_stream_duration > 0:
        limit = trio.current_time() + limits.max_stream_duration
        if limit < deadline:
            deadline, reason = limit, SessionEnd.DEADLINE
    return deadline, reason


async def _send_json(exchange: Exchange, status: int, document: object, event: AuditEvent) -> None:
    body = json.dumps(document).encode()
    event.status, event.bytes_out = status, len(body)
    await exchange.start_response(
        status,
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"audit-id", event.audit_id.encode()),
        ],
    )
    await exchange.send(body)
    await exchange.finish()


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
