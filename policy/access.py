"""Living access, as pure rules: access requests (granted for a while on approval) and locks
(cut off now). No I/O and no clock: every function takes the time `now` (Unix seconds).

A request's state machine:

    pending  --min_approvals approvals-->  approved  --revoke-->  revoked
    pending  --one denial-->               denied
    pending  --an hour undecided-->        expired
    approved --its duration over-->        expired

`effective` reads a stored request at a time: a pending or approved request whose `expires`
has passed is expired whether or not a sweeper has written that down yet, so no grant
outlives its end by the sweeper's delay.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from policy.identity import Identity

# A pending request nobody decided on lapses after this long.
PENDING_TTL = 3600.0


class AccessRefused(Exception):
    """A transition the rules do not allow; `kind` says how the caller is at fault."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class RefusalKind(enum.Enum):
    FORBIDDEN = "forbidden"  # the caller may not do this
    CONFLICT = "conflict"  # the request is not in a state that allows it
    INVALID = "invalid"  # the input is malformed


@dataclass(frozen=True, slots=True)
class Subjects:
    """Who a rule names: any of these users, or anyone in one of these groups."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def includes(self, identity: Identity) -> bool:
        return identity.username in self.users or any(g in self.groups for g in identity.groups)


@dataclass(frozen=True, slots=True)
class Grant:
    """One `access_requests` entry: what may be asked for, by whom, approved by whom."""

    name: str
    policy: str  # a policy of the file, added for the requester while approved
    requesters: Subjects
    approvers: Subjects
    min_approvals: int = 1
    max_duration: float = 3600.0  # seconds; a longer request is capped to this


class RequestState(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Verdict(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Review:
    reviewer: str
    verdict: Verdict
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """`expires` is when a pending request lapses, or when an approved grant ends."""

    id: str
    grant: str
    requester: str
    reason: str
    duration: float  # seconds, already capped to the grant's max_duration
    state: RequestState
    created: float
    expires: float
    reviews: tuple[Review, ...] = ()
    revoked_by: str = ""

    def effective(self, now: float) -> AccessRequest:
        """The request as it stands at `now` (see the module's docstring)."""
        live = self.state in (RequestState.PENDING, RequestState.APPROVED)
        if live and now >= self.expires:
            return replace(self, state=RequestState.EXPIRED)
        return self


def create_request(
    grant: Grant, requester: Identity, *, id: str, reason: str, duration: float, now: float
) -> AccessRequest:
    if not grant.requesters.includes(requester):
        raise AccessRefused(
            RefusalKind.FORBIDDEN,
            f'User "{requester.username}" may not request "{grant.name}": '
            "not one of its requesters",
        )
    _need_reason(reason)
    if not duration > 0:
        raise AccessRefused(RefusalKind.INVALID, "the duration must be above 0")
    return AccessRequest(
        id=id,
        grant=grant.name,
        requester=requester.username,
        reason=reason,
        duration=min(duration, grant.max_duration),
        state=RequestState.PENDING,
        created=now,
        expires=now + PENDING_TTL,
    )


def review_request(
    request: AccessRequest,
    grant: Grant,
    reviewer: Identity,
    verdict: Verdict,
    *,
    reason: str,
    now: float,
) -> AccessRequest:
    """One approval or denial. A denial decides at once; the `min_approvals`-th approval
    from distinct approvers approves, and the grant runs from then for its duration."""
    current = _in_state(request, now, RequestState.PENDING, verdict.value)
    if reviewer.username == request.requester:
        raise AccessRefused(
            RefusalKind.FORBIDDEN,
            f'User "{reviewer.username}" may not review their own request {request.id}',
        )
    if not grant.approvers.includes(reviewer):
        raise AccessRefused(
            RefusalKind.FORBIDDEN,
            f'User "{reviewer.username}" may not review requests for "{grant.name}": '
            "not one of its approvers",
        )
    if any(r.reviewer == reviewer.username for r in current.reviews):
        raise AccessRefused(
            RefusalKind.CONFLICT,
            f'User "{reviewer.username}" has already reviewed request {request.id}',
        )
    _need_reason(reason)
    reviews = (*current.reviews, Review(reviewer.username, verdict, reason, now))
    if verdict is Verdict.DENY:
        return replace(current, reviews=reviews, state=RequestState.DENIED)
    approvals = sum(1 for r in reviews if r.verdict is Verdict.APPROVE)
    if approvals >= grant.min_approvals:
        return replace(
            current, reviews=reviews, state=RequestState.APPROVED, expires=now + current.duration
        )
    return replace(current, reviews=reviews)


def revoke_request(
    request: AccessRequest, grant: Grant | None, by: Identity, *, is_admin: bool, now: float
) -> AccessRequest:
    """An approved grant ends now; its requester, its approvers and admins may end it."""
    current = _in_state(request, now, RequestState.APPROVED, "revoke")
    allowed = (
        is_admin
        or by.username == request.requester
        or (grant is not None and grant.approvers.includes(by))
    )
    if not allowed:
        raise AccessRefused(
            RefusalKind.FORBIDDEN,
            f'User "{by.username}" may not revoke request {request.id}: '
            "neither its requester, an approver of its grant, nor an admin",
        )
    return replace(current, state=RequestState.REVOKED, expires=now, revoked_by=by.username)


def may_see(request: AccessRequest, grant: Grant | None, who: Identity, *, is_admin: bool) -> bool:
    """Admins see every request; others their own and those they may approve."""
    return (
        is_admin
        or request.requester == who.username
        or (grant is not None and grant.approvers.includes(who))
    )


def active_grants(
    requests: Iterable[AccessRequest], who: Identity, now: float
) -> tuple[AccessRequest, ...]:
    """The approved requests of `who` in force at `now`."""
    return tuple(
        r
        for r in requests
        if r.requester == who.username and r.effective(now).state is RequestState.APPROVED
    )


def _in_state(
    request: AccessRequest, now: float, wanted: RequestState, action: str
) -> AccessRequest:
    current = request.effective(now)
    if current.state is not wanted:
        raise AccessRefused(
            RefusalKind.CONFLICT,
            f"cannot {action} request {request.id}: it is {current.state.value}, "
            f"not {wanted.value}",
        )
    return current


def _need_reason(reason: str) -> None:
    if not reason.strip():
        raise AccessRefused(RefusalKind.INVALID, "a reason is required")


# -- locks ----------------------------------------------------------------------------------
class LockKind(enum.Enum):
    USER = "user"
    GROUP = "group"
    CONNECTION = "connection"


@dataclass(frozen=True, slots=True)
class Lock:
    """Refuses every request it matches from `created` until `expires` (None: until lifted)."""

    id: str
    kind: LockKind
    target: str  # the user, group or connection name
    message: str
    created_by: str
    created: float
    expires: float | None = None

    def active(self, now: float) -> bool:
        return self.expires is None or now < self.expires

    def matches(self, who: Identity, connection: str) -> bool:
        match self.kind:
            case LockKind.USER:
                return who.username == self.target
            case LockKind.GROUP:
                return self.target in who.groups
            case LockKind.CONNECTION:
                return connection == self.target


def create_lock(
    kind: LockKind,
    target: str,
    *,
    id: str,
    message: str,
    by: Identity,
    is_admin: bool,
    duration: float | None,
    now: float,
) -> Lock:
    if not is_admin:
        raise AccessRefused(
            RefusalKind.FORBIDDEN, f'User "{by.username}" may not place locks: not an admin'
        )
    if not target:
        raise AccessRefused(RefusalKind.INVALID, f"a {kind.value} lock needs a {kind.value} name")
    if not message.strip():
        raise AccessRefused(RefusalKind.INVALID, "a lock needs a message")
    if duration is not None and not duration > 0:
        raise AccessRefused(RefusalKind.INVALID, "the duration must be above 0")
    expires = None if duration is None else now + duration
    return Lock(id, kind, target, message, by.username, now, expires)


def locks_matching(
    locks: Iterable[Lock], who: Identity, connection: str, now: float
) -> tuple[Lock, ...]:
    """The locks in force at `now` on `who` (by user or group) or on `connection`."""
    return tuple(lock for lock in locks if lock.active(now) and lock.matches(who, connection))


# -- durations ------------------------------------------------------------------------------
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> float:
    """`30m`, `4h`, `1h30m`, `90s`, `2d` as seconds; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f'"{text}" is not a duration like 30m, 4h or 1h30m')
    seconds = sum(
        int(value) * unit for value, (_, unit) in zip(match.groups(), _UNITS, strict=True) if value
    )
    return float(seconds)


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration` for whole seconds: 5400 → `1h30m`."""
    left = round(seconds)
    parts = []
    for suffix, unit in _UNITS:
        if left >= unit:
            parts.append(f"{left // unit}{suffix}")
            left %= unit
    return "".join(parts) or "0s"
