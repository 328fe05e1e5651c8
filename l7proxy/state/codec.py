"""Access requests and locks as JSON: the stored form (times as Unix seconds) and the
contract's documents for the HTTP API and `--output json` (times as RFC 3339)."""

from __future__ import annotations

import json
import time
from typing import Any

from l7proxy.state.errors import CorruptRecord
from policy.access import (
    AccessRequest,
    Lock,
    LockKind,
    RequestState,
    Review,
    Verdict,
    format_duration,
)


def encode_request(request: AccessRequest) -> str:
    return json.dumps(
        {
            "id": request.id,
            "grant": request.grant,
            "requester": request.requester,
            "reason": request.reason,
            "duration": request.duration,
            "state": request.state.value,
            "created": request.created,
            "expires": request.expires,
            "reviews": [
                {"reviewer": r.reviewer, "verdict": r.verdict.value, "reason": r.reason, "at": r.at}
                for r in request.reviews
            ],
            "revoked_by": request.revoked_by,
        }
    )


def decode_request(text: str) -> AccessRequest:
    try:
        data: dict[str, Any] = json.loads(text)
        return AccessRequest(
            id=str(data["id"]),
            grant=str(data["grant"]),
            requester=str(data["requester"]),
            reason=str(data["reason"]),
            duration=float(data["duration"]),
            state=RequestState(data["state"]),
            created=float(data["created"]),
            expires=float(data["expires"]),
            reviews=tuple(
                Review(str(r["reviewer"]), Verdict(r["verdict"]), str(r["reason"]), float(r["at"]))
                for r in data["reviews"]
            ),
            revoked_by=str(data["revoked_by"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"a stored access request does not decode: {exc}") from exc


def encode_lock(lock: Lock) -> str:
    return json.dumps(
        {
            "id": lock.id,
            "kind": lock.kind.value,
            "target": lock.target,
            "message": lock.message,
            "created_by": lock.created_by,
            "created": lock.created,
            "expires": lock.expires,
        }
    )


def decode_lock(text: str) -> Lock:
    try:
        data: dict[str, Any] = json.loads(text)
        expires = data["expires"]
        return Lock(
            id=str(data["id"]),
            kind=LockKind(data["kind"]),
            target=str(data["target"]),
            message=str(data["message"]),
            created_by=str(data["created_by"]),
            created=float(data["created"]),
            expires=None if expires is None else float(expires),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"a stored lock does not decode: {exc}") from exc


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def request_document(request: AccessRequest, now: float) -> dict[str, object]:
    """The contract's `{id, grant, requester, reason, duration, state, reviews, created,
    expires}`, in the state the request has at `now`."""
    current = request.effective(now)
    document: dict[str, object] = {
        "id": current.id,
        "grant": current.grant,
        "requester": current.requester,
        "reason": current.reason,
        "duration": format_duration(current.duration),
        "state": current.state.value,
        "reviews": [
            {
                "reviewer": r.reviewer,
                "decision": r.verdict.value,
                "reason": r.reason,
                "at": rfc3339(r.at),
            }
            for r in current.reviews
        ],
        "created": rfc3339(current.created),
        "expires": rfc3339(current.expires),
    }
    if current.revoked_by:
        document["revoked_by"] = current.revoked_by
    return document


def lock_document(lock: Lock) -> dict[str, object]:
    """`{id, user | group | connection, message, created_by, created, expires}`; `expires`
    is null for a lock that holds until lifted."""
    return {
        "id": lock.id,
        lock.kind.value: lock.target,
        "message": lock.message,
        "created_by": lock.created_by,
        "created": rfc3339(lock.created),
        "expires": None if lock.expires is None else rfc3339(lock.expires),
    }
