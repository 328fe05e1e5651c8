"""Secret redaction on the request path (`redact_secrets: true` on a policy).

`redaction_for` decides, from the request's attributes and its decision, whether the
response must be rewritten; `RedactingExchange` wraps the client's exchange so the relay
code is unchanged: a watch is rewritten event by event as it streams, any other answer is
held whole (up to `MAX_BODY_BYTES`) and sent redacted at its end. The rules themselves are
in `protocols.secret_redaction`.
"""

from __future__ import annotations

from l7proxy.pipeline.errors import Fault, GatewayRefusal
from l7proxy.wire.exchange import Exchange, RequestHead, UpgradedStream
from policy.decision import Decision
from policy.engine import PolicySet
from policy.identity import Identity
from protocols.attributes import Attributes
from protocols.secret_redaction import (
    NotAcceptable,
    Unredactable,
    WatchRedactor,
    redact_body,
    redacted_accept,
)

# A whole Secrets answer held to be rewritten; a larger list should be read in pages.
MAX_BODY_BYTES = 32 * 1024 * 1024
_READS = ("get", "list", "watch")


def redaction_for(
    attributes: Attributes,
    decision: Decision,
    policies: PolicySet,
    caller: Identity,
    connection: str,
) -> bool:
    """Whether a read of Secrets is redacted: for the acting identity's decision, and —
    so that impersonating someone else cannot lift it — for the caller's own policies."""
    return (
        attributes.is_resource_request
        and attributes.api_group == ""
        and attributes.resource == "secrets"
        and attributes.verb in _READS
        and (
            decision.redact_secrets
            or any(p.redact_secrets for p in policies.policies_for(caller, connection))
        )
    )


def redacted_request_headers(
    head: RequestHead, headers: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The upstream headers with `Accept` narrowed to JSON and no compression asked for
    (the body is read here); raises a 406 refusal for a client that accepts no JSON."""
    try:
        accept = redacted_accept(head.header(b"accept"))
    except NotAcceptable as exc:
        raise GatewayRefusal(Fault.NOT_ACCEPTABLE, str(exc)) from exc
    kept = [(k, v) for k, v in headers if k not in (b"accept", b"accept-encoding")]
    return [*kept, (b"accept", accept)]


class RedactingExchange:
    """The client's exchange, with every Secret value in the response replaced."""

    def __init__(self, inner: Exchange, *, watch: bool) -> None:
        self._inner = inner
        self.head = inner.head
        self.client_addr = inner.client_addr
        self.server_name = inner.server_name
        self.has_body = inner.has_body
        self._watch = WatchRedactor() if watch else None
        self._held = bytearray()
        self._head: tuple[int, list[tuple[bytes, bytes]]] | None = None

    @property
    def response_started(self) -> bool:
        return self._head is not None or self._inner.response_started

    @response_started.setter
    def response_started(self, value: bool) -> None:  # the Exchange protocol's attribute
        self._inner.response_started = value

    async def receive(self) -> bytes:
        return await self._inner.receive()

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        kept = [(k, v) for k, v in headers if k not in (b"content-length", b"content-encoding")]
        if self._watch is not None:
            await self._inner.start_response(status, kept)
        else:
            self._head = (status, kept)  # sent with the body, so a failure can still refuse

    async def send(self, data: bytes) -> None:
        if self._watch is None:
            self._held += data
            if len(self._held) > MAX_BODY_BYTES:
                raise _refusal(
                    f"the answer is larger than {MAX_BODY_BYTES} bytes; list fewer with limit"
                )
            return
        try:
            events = list(self._watch.feed(data))
        except Unredactable as exc:
            raise _refusal(str(exc)) from exc
        for event in events:
            await self._inner.send(event)

    async def finish(self) -> None:
        try:
            rest = self._watch.end() if self._watch is not None else redact_body(bytes(self._held))
        except Unredactable as exc:
            raise _refusal(str(exc)) from exc
        if self._head is not None:
            status, headers = self._head
            headers = [*headers, (b"content-length", str(len(rest)).encode())]
            self._head = None
            await self._inner.start_response(status, headers)
        if rest:
            await self._inner.send(rest)
        await self._inner.finish()

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        return await self._inner.upgrade(headers)


def _refusal(why: str) -> GatewayRefusal:
    return GatewayRefusal(Fault.UNREDACTABLE, f"Secrets cannot be redacted: {why}")
