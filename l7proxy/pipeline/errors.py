"""Why a request ends without reaching the cluster (or with the cluster unreachable).

Every refusal is one `Refusal` value; `status_for` maps it to a Kubernetes `Status` in
exactly one place, with an exhaustive match, and the audit event takes its decision from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocols.status import StatusReason


class Outcome(enum.Enum):
    """The audit event's `decision` for a request that ended this way."""

    DENY = "deny"
    UNAUTHENTICATED = "unauthenticated"
    ERROR = "error"


class Fault(enum.Enum):
    BAD_REQUEST = enum.auto()  # the request cannot be read as the cluster would read it
    UNAUTHENTICATED = enum.auto()  # no token, or a token that does not verify
    FORBIDDEN = enum.auto()  # policy or the impersonation rule refuse it
    UNKNOWN_CONNECTION = enum.auto()  # /k8s/<name>/ names no connection
    NOT_FOUND = enum.auto()  # outside /k8s/ and the gateway's own endpoints
    MISDIRECTED = enum.auto()  # SNI and Host name different connections
    IDP_UNAVAILABLE = enum.auto()  # the identity provider's keys cannot be had
    UPSTREAM_CREDENTIAL = enum.auto()  # the service credential cannot be had
    UPSTREAM_UNREACHABLE = enum.auto()  # connecting to the cluster failed
    UPSTREAM_TIMEOUT = enum.auto()  # the cluster did not answer in time
    UPSTREAM_PROTOCOL = enum.auto()  # the cluster's answer was malformed or cut short
    HEAD_TOO_LARGE = enum.auto()
    URL_TOO_LONG = enum.auto()
    SLOW_CLIENT = enum.auto()
    METHOD_NOT_ALLOWED = enum.auto()  # a gateway endpoint asked with the wrong method
    CONFLICT = enum.auto()  # an access request not in a state that allows the action
    STATE_UNAVAILABLE = enum.auto()  # the state store cannot be reached
    NOT_ACCEPTABLE = enum.auto()  # a redacted read asked only for a type it cannot get
    UNREDACTABLE = enum.auto()  # a response to redact exceeds what can be held to redact it


class GatewayRefusal(Exception):
    """Raised by a pipeline stage; becomes one `Status` response and one audit event."""

    def __init__(
        self, fault: Fault, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.fault = fault
        self.message = message
        self.headers = headers  # added to the Status response, e.g. a 401's challenge


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    reason: StatusReason
    outcome: Outcome


def status_for(fault: Fault) -> StatusAnswer:
    match fault:
        case Fault.BAD_REQUEST:
            return StatusAnswer(StatusReason.BadRequest, Outcome.DENY)
        case Fault.UNAUTHENTICATED:
            return StatusAnswer(StatusReason.Unauthorized, Outcome.UNAUTHENTICATED)
        case Fault.FORBIDDEN:
            return StatusAnswer(StatusReason.Forbidden, Outcome.DENY)
        case Fault.UNKNOWN_CONNECTION | Fault.NOT_FOUND:
            return StatusAnswer(StatusReason.NotFound, Outcome.DENY)
        case Fault.MISDIRECTED:
            return StatusAnswer(StatusReason.MisdirectedRequest, Outcome.DENY)
        case Fault.METHOD_NOT_ALLOWED:
            return StatusAnswer(StatusReason.MethodNotAllowed, Outcome.DENY)
        case Fault.CONFLICT:
            return StatusAnswer(StatusReason.Conflict, Outcome.DENY)
        case Fault.IDP_UNAVAILABLE | Fault.UPSTREAM_CREDENTIAL | Fault.STATE_UNAVAILABLE:
            return StatusAnswer(StatusReason.ServiceUnavailable, Outcome.ERROR)
        case Fault.UPSTREAM_UNREACHABLE | Fault.UPSTREAM_PROTOCOL:
            return StatusAnswer(StatusReason.BadGateway, Outcome.ERROR)
        case Fault.UPSTREAM_TIMEOUT:
            return StatusAnswer(StatusReason.Timeout, Outcome.ERROR)
        case Fault.HEAD_TOO_LARGE:
            return StatusAnswer(StatusReason.RequestHeaderFieldsTooLarge, Outcome.DENY)
        case Fault.URL_TOO_LONG:
            return StatusAnswer(StatusReason.URITooLong, Outcome.DENY)
        case Fault.SLOW_CLIENT:
            return StatusAnswer(StatusReason.Timeout, Outcome.DENY)
        case Fault.NOT_ACCEPTABLE:
            return StatusAnswer(StatusReason.NotAcceptable, Outcome.DENY)
        case Fault.UNREDACTABLE:
            return StatusAnswer(StatusReason.InternalError, Outcome.ERROR)


def fault_for_status(reason: StatusReason) -> Fault:
    """The listener's refusals (made before a request head exists) as faults."""
    match reason:
        case StatusReason.RequestHeaderFieldsTooLarge:
            return Fault.HEAD_TOO_LARGE
        case StatusReason.URITooLong:
            return Fault.URL_TOO_LONG
        case StatusReason.Timeout:
            return Fault.SLOW_CLIENT
        case _:
            return Fault.BAD_REQUEST
