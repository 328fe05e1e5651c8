"""Audit events: one JSON object per request, written when the request ends.

Events are values the pipeline fills in; this module only renders and writes them. Writes
are synchronous so an event is never lost to a cancelled request. Nothing here ever sees a
token or a body: the event has no field that could hold one.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import structlog

from policy.decision import Decision
from policy.identity import Identity
from protocols.attributes import Attributes


@dataclass(slots=True)
class AuditEvent:
    """The contract's audit fields, filled in stage by stage."""

    audit_id: str
    method: str = ""
    path: str = ""
    client_addr: str = ""
    user_agent: str = ""
    http_version: str = ""
    ts: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()
    connection: str = ""
    policy: str = ""
    grant: str = ""  # the access request whose grant allowed it; "" for a standing policy
    binding_user_role: str = ""
    decision: str = "error"
    reason: str = ""
    verb: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    duration_ms: float = 0.0
    upgrade: str = ""
    recording: str = ""
    ended_by: str = ""
    impersonated_user: str = ""
    impersonated_groups: tuple[str, ...] = ()
    upstream_audit_id: str = ""
    # Set on a request the gateway made for another event (an MCP tool call's requests).
    parent_audit_id: str = ""

    def set_identity(self, identity: Identity) -> None:
        self.user = identity.username
        self.groups = identity.groups

    def set_attributes(self, attributes: Attributes) -> None:
        self.verb = attributes.verb
        self.api_group = attributes.api_group
        self.api_version = attributes.api_version
        self.namespace = attributes.namespace
        self.resource = attributes.resource
        self.subresource = attributes.subresource
        self.name = attributes.name

    def set_decision(self, decision: Decision) -> None:
        self.policy = decision.policy
        self.binding_user_role = decision.binding_user_role or ""
        self.reason = decision.reason
        self.decision = "allow" if decision.allowed else "deny"


_FIELDS = tuple(field.name for field in dataclasses.fields(AuditEvent))
_field_values = operator.attrgetter(*_FIELDS)


class _Clock:
    """RFC 3339 UTC timestamps with microseconds; the seconds part is formatted once per
    second, not once per event."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"


class AuditLog:
    """Writes events to stdout or appends them to a file, one JSON line each (rendered by
    structlog's JSON renderer, written straight to the line-buffered file: this runs once
    per request, so no logger pipeline in between)."""

    def __init__(self, sink: str) -> None:
        self._file: IO[str]
        if sink == "stdout":
            self._file = sys.stdout
            self._owned = False
        else:
            path = Path(sink)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)
            self._owned = True
        self._render = structlog.processors.JSONRenderer()
        self._clock = _Clock()

    def write(self, event: AuditEvent, *, duration: float) -> None:
        event.ts = self._clock.now()
        event.duration_ms = round(duration * 1000, 3)
        # By hand rather than dataclasses.asdict, which deep-copies: this runs per request.
        fields = dict(zip(_FIELDS, _field_values(event), strict=True))
        fields["groups"] = list(event.groups)
        fields["impersonated_groups"] = list(event.impersonated_groups)
        self._emit(fields)

    def write_session(self, kind: str, event: AuditEvent, details: Mapping[str, object]) -> None:
        """A session's start or end (`kind`), beside the request's own event."""
        fields: dict[str, object] = {
            "type": kind,
            "ts": self._clock.now(),
            "audit_id": event.audit_id,
            "user": event.user,
            "groups": list(event.groups),
            "connection": event.connection,
            "namespace": event.namespace,
            "pod": event.name,
            "subresource": event.subresource,
            "upgrade": event.upgrade,
            "recording": event.recording,
            **details,
        }
        self._emit(fields)

    def write_record(self, kind: str, fields: Mapping[str, object]) -> None:
        """An event that is no request's, with its `type` (`access_request.created`,
        `lock.deleted`, `mcp.tool_call`, …)."""
        self._emit({"type": kind, "ts": self._clock.now(), **fields})

    def _emit(self, fields: dict[str, object]) -> None:
        line = cast(str, self._render(None, "info", fields))  # json.dumps: a str
        self._file.write(line + "\n")
        if not self._owned:
            self._file.flush()  # stdout may be a pipe: each event leaves whole, at once

    def close(self) -> None:
        if self._owned:
            self._file.close()
