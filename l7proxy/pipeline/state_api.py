"""`/l7proxy/v1/`: access requests and locks over JSON, for `l7proxy request` and
`l7proxy lock`. The gateway authenticates the caller first, like every request; here each
call is authorized by the rules of `policy.access`, applied to the store, and audited as
one `access_request.*` or `lock.*` event beside the request's own.

    POST   /l7proxy/v1/access-requests                {grant, reason, duration}
    GET    /l7proxy/v1/access-requests[?state=S]
    GET    /l7proxy/v1/access-requests/ID
    POST   /l7proxy/v1/access-requests/ID/approve     {reason}
    POST   /l7proxy/v1/access-requests/ID/deny        {reason}
    POST   /l7proxy/v1/access-requests/ID/revoke      {reason?}
    POST   /l7proxy/v1/locks                    {user | group | connection, message, duration?}
    GET    /l7proxy/v1/locks
    DELETE /l7proxy/v1/locks/ID
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qs

import structlog
import trio

from l7proxy.pipeline.errors import Fault, GatewayRefusal
from l7proxy.state.codec import lock_document, request_document, rfc3339
from l7proxy.state.errors import StoreError
from l7proxy.state.store import Store
from l7proxy.telemetry.audit import AuditEvent, AuditLog
from l7proxy.wire.exchange import Exchange
from policy.access import (
    AccessRefused,
    AccessRequest,
    Grant,
    Lock,
    LockKind,
    RefusalKind,
    RequestState,
    Subjects,
    Verdict,
    create_lock,
    create_request,
    format_duration,
    may_see,
    parse_duration,
    review_request,
    revoke_request,
)
from policy.identity import Identity

log = structlog.get_logger("l7proxy.pipeline.state_api")

PREFIX = "/l7proxy/v1/"
# A call's JSON body is a few fields; anything larger is refused unread.
MAX_BODY_BYTES = 16 * 1024
# How often a gateway marks lapsed requests expired (and audits them).
EXPIRY_INTERVAL = 2.0

Answer = tuple[int, dict[str, object]]


class StateApi:
    """The endpoints above, over one `Store`; `clock` is Unix time (tests may pin it)."""

    def __init__(
        self,
        store: Store,
        *,
        grants: Sequence[Grant],
        admins: Subjects,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.configure(grants, admins)
        self.audit = audit
        self.clock = clock

    async def answer(self, exchange: Exchange, who: Identity, event: AuditEvent) -> Answer:
        """The status and JSON document for one call; refusals raise `GatewayRefusal`."""
        head = exchange.head
        handler = self._handler(head.method, head.path.removeprefix(PREFIX).strip("/").split("/"))
        if handler is None:
            raise GatewayRefusal(Fault.NOT_FOUND, f'the path "{head.path}" is not an l7proxy API')
        if isinstance(handler, str):
            raise GatewayRefusal(
                Fault.METHOD_NOT_ALLOWED, f'{head.method} is not allowed on "{head.path}"'
            )
        body = await _read_json(exchange) if head.method == "POST" else {}
        try:
            answer = await handler(_Call(who, body, head.query, event))
        except AccessRefused as exc:
            raise GatewayRefusal(_FAULTS[exc.kind], exc.message) from exc
        except StoreError as exc:
            raise GatewayRefusal(Fault.STATE_UNAVAILABLE, str(exc)) from exc
        event.reason = f"l7proxy API: {head.method} {head.path} answered by the gateway"
        return answer

    def configure(self, grants: Sequence[Grant], admins: Subjects) -> None:
        """The grants and admins of the configuration; a reload calls it again."""
        self.grants = {grant.name: grant for grant in grants}
        self.admins = admins

    def _handler(
        self, method: str, parts: list[str]
    ) -> Callable[[_Call], Awaitable[Answer]] | str | None:
        """The endpoint for a call; "" for a known path asked with the wrong method, None
        for an unknown path."""
        match method, parts:
            case "POST", ["access-requests"]:
                return self.create
            case "GET", ["access-requests"]:
                return self.list
            case "GET", ["access-requests", id]:
                return partial(self.show, id)
            case "POST", ["access-requests", id, "approve"]:
                return partial(self._review, id, Verdict.APPROVE)
            case "POST", ["access-requests", id, "deny"]:
                return partial(self._review, id, Verdict.DENY)
            case "POST", ["access-requests", id, "revoke"]:
                return partial(self.revoke, id)
            case "POST", ["locks"]:
                return self.create_lock
            case "GET", ["locks"]:
                return self.list_locks
            case "DELETE", ["locks", id]:
                return partial(self.delete_lock, id)
            case _, (
                ["access-requests"]
                | ["access-requests", _]
                | ["access-requests", _, "approve" | "deny" | "revoke"]
                | ["locks"]
                | ["locks", _]
            ):
                return ""
        return None

    def is_admin(self, who: Identity) -> bool:
        return self.admins.includes(who)

    # -- access requests ------------------------------------------------------------------
    async def create(self, call: _Call) -> Answer:
        grant = self._grant(_text(call.body, "grant"))
        duration = _duration(call.body, "duration")
        if duration is None:
            raise GatewayRefusal(Fault.BAD_REQUEST, 'an access request needs a "duration"')
        now = self.clock()
        request = create_request(
            grant,
            call.who,
            id=str(uuid.uuid4()),
            reason=_text(call.body, "reason"),
            duration=duration,
            now=now,
        )
        await self.store.create_request(request)
        self._audit_request("access_request.created", request, call, request.reason)
        return 201, request_document(request, now)

    async def list(self, call: _Call) -> Answer:
        wanted = _state_filter(call.query)
        now = self.clock()
        items = [
            request_document(r, now)
            for r in await self.store.list_requests()
            if self._visible(r, call.who) and wanted in (None, r.effective(now).state)
        ]
        return 200, {"kind": "AccessRequestList", "items": items}

    async def show(self, id: str, call: _Call) -> Answer:
        request = await self.store.get_request(id)
        if request is None or not self._visible(request, call.who):
            raise GatewayRefusal(Fault.NOT_FOUND, f"no access request {id} that you may see")
        return 200, request_document(request, self.clock())

    async def _review(self, id: str, verdict: Verdict, call: _Call) -> Answer:
        reason = _text(call.body, "reason")
        now = self.clock()

        def change(request: AccessRequest) -> AccessRequest:
            grant = self._grant(request.grant)
            return review_request(request, grant, call.who, verdict, reason=reason, now=now)

        request = await self._update(id, change)
        if request.state is not RequestState.PENDING:  # this review decided it
            self._audit_request(f"access_request.{request.state.value}", request, call, reason)
        return 200, request_document(request, now)

    async def revoke(self, id: str, call: _Call) -> Answer:
        reason = _text(call.body, "reason", required=False)
        now = self.clock()
        is_admin = self.is_admin(call.who)

        def change(request: AccessRequest) -> AccessRequest:
            grant = self.grants.get(request.grant)
            return revoke_request(request, grant, call.who, is_admin=is_admin, now=now)

        request = await self._update(id, change)
        self._audit_request("access_request.revoked", request, call, reason)
        return 200, request_document(request, now)

    async def _update(
        self, id: str, change: Callable[[AccessRequest], AccessRequest]
    ) -> AccessRequest:
        request = await self.store.update_request(id, change)
        if request is None:
            raise GatewayRefusal(Fault.NOT_FOUND, f"no access request {id}")
        return request

    def _grant(self, name: str) -> Grant:
        grant = self.grants.get(name)
        if grant is None:
            known = ", ".join(sorted(self.grants)) or "none are configured"
            raise GatewayRefusal(
                Fault.NOT_FOUND, f'no access request named "{name}" (known: {known})'
            )
        return grant

    def _visible(self, request: AccessRequest, who: Identity) -> bool:
        grant = self.grants.get(request.grant)
        return may_see(request, grant, who, is_admin=self.is_admin(who))

    # -- locks ----------------------------------------------------------------------------
    async def create_lock(self, call: _Call) -> Answer:
        named = [kind for kind in LockKind if kind.value in call.body]
        if len(named) != 1:
            raise GatewayRefusal(
                Fault.BAD_REQUEST, "a lock names exactly one of user, group or connection"
            )
        now = self.clock()
        lock = create_lock(
            named[0],
            _text(call.body, named[0].value),
            id=str(uuid.uuid4()),
            message=_text(call.body, "message"),
            by=call.who,
            is_admin=self.is_admin(call.who),
            duration=_duration(call.body, "duration"),
            now=now,
        )
        await self.store.create_lock(lock)
        self._audit_lock("lock.created", lock, call)
        return 201, lock_document(lock)

    async def list_locks(self, call: _Call) -> Answer:
        self._need_admin(call.who, "list locks")
        locks = await self.store.list_locks(self.clock())
        return 200, {"kind": "LockList", "items": [lock_document(lock) for lock in locks]}

    async def delete_lock(self, id: str, call: _Call) -> Answer:
        self._need_admin(call.who, "lift locks")
        lock = await self.store.delete_lock(id)
        if lock is None:
            raise GatewayRefusal(Fault.NOT_FOUND, f"no lock {id}")
        self._audit_lock("lock.deleted", lock, call)
        return 200, lock_document(lock)

    def _need_admin(self, who: Identity, action: str) -> None:
        if not self.is_admin(who):
            raise GatewayRefusal(
                Fault.FORBIDDEN, f'User "{who.username}" may not {action}: not an admin'
            )

    # -- audit ----------------------------------------------------------------------------
    def _audit_request(self, kind: str, request: AccessRequest, call: _Call, reason: str) -> None:
        self.audit.write_record(
            kind,
            {
                **_actor(call),
                "id": request.id,
                "grant": request.grant,
                "requester": request.requester,
                "reason": reason,
                "state": request.state.value,
                "duration": format_duration(request.duration),
                "expires": rfc3339(request.expires),
            },
        )

    def _audit_lock(self, kind: str, lock: Lock, call: _Call) -> None:
        self.audit.write_record(kind, {**_actor(call), **lock_document(lock)})

    async def expire_until_cancelled(self) -> None:
        while True:
            try:
                await self.expire_due()
            except StoreError as exc:
                log.warning("expiring access requests failed", error=str(exc))
            await trio.sleep(EXPIRY_INTERVAL)

    async def expire_due(self) -> None:
        """Mark lapsed requests expired, each audited once across every gateway."""
        for request in await self.store.expire_requests(self.clock()):
            self.audit.write_record(
                "access_request.expired",
                {
                    "id": request.id,
                    "grant": request.grant,
                    "requester": request.requester,
                    "state": request.state.value,
                    "expires": rfc3339(request.expires),
                },
            )


@dataclass(frozen=True, slots=True)
class _Call:
    """One call's inputs: the caller, the JSON body, the query, the request's event."""

    who: Identity
    body: Mapping[str, object]
    query: str
    event: AuditEvent


_FAULTS = {
    RefusalKind.FORBIDDEN: Fault.FORBIDDEN,
    RefusalKind.CONFLICT: Fault.CONFLICT,
    RefusalKind.INVALID: Fault.BAD_REQUEST,
}


def _actor(call: _Call) -> dict[str, object]:
    return {
        "audit_id": call.event.audit_id,
        "user": call.who.username,
        "groups": list(call.who.groups),
    }


async def _read_json(exchange: Exchange) -> Mapping[str, object]:
    body = b""
    while chunk := await exchange.receive():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise GatewayRefusal(
                Fault.BAD_REQUEST, f"an l7proxy API body is at most {MAX_BODY_BYTES} bytes"
            )
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        raise GatewayRefusal(Fault.BAD_REQUEST, f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise GatewayRefusal(Fault.BAD_REQUEST, "the body is not a JSON object")
    return document


def _text(body: Mapping[str, object], key: str, *, required: bool = True) -> str:
    value = body.get(key, None if required else "")
    if not isinstance(value, str):
        raise GatewayRefusal(Fault.BAD_REQUEST, f'"{key}" must be a string')
    return value


def _duration(body: Mapping[str, object], key: str) -> float | None:
    if key not in body:
        return None
    try:
        return parse_duration(_text(body, key))
    except ValueError as exc:
        raise GatewayRefusal(Fault.BAD_REQUEST, f'"{key}": {exc}') from exc


def _state_filter(query: str) -> RequestState | None:
    values = parse_qs(query).get("state")
    if not values:
        return None
    try:
        return RequestState(values[0])
    except ValueError:
        states = ", ".join(s.value for s in RequestState)
        raise GatewayRefusal(
            Fault.BAD_REQUEST, f'state "{values[0]}" is not one of {states}'
        ) from None
