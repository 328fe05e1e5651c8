"""Audit events: one JSON object per request, written when the request ends.

Events are values the pipeline fills in; this module only renders and writes them. Writes
are synchronous so an event is never lost to a cancelled request. Nothing here ever sees a
token or a body: the event has no field that could hold one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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


def _rfc3339(now: float) -> str:
    micros = int(now * 1_000_000) % 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{micros:06d}Z"


def _drop_event_key(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.pop("event", None)
    return event_dict


class AuditLog:
    """Writes events to stdout or appends them to a file, one line each."""

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
        self._logger = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[_drop_event_key, structlog.processors.JSONRenderer()],
        )

    def write(self, event: AuditEvent, *, duration: float) -> None:
        event.ts = _rfc3339(time.time())
        event.duration_ms = round(duration * 1000, 3)
        # By hand rather than dataclasses.asdict, which deep-copies: this runs per request.
        fields = {name: getattr(event, name) for name in _FIELDS}
        fields["groups"] = list(event.groups)
        fields["impersonated_groups"] = list(event.impersonated_groups)
        self._logger.info("audit", **fields)

    def write_session(self, kind: str, event: AuditEvent, details: Mapping[str, object]) -> None:
        """A session's start or end (`kind`), beside the request's own event."""
        fields: dict[str, object] = {
            "type": kind,
            "ts": _rfc3339(time.time()),
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
        self._logger.info("session", **fields)

    def close(self) -> None:
        if self._owned:
            self._file.close()
