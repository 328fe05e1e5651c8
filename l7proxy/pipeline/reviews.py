"""The reviews the gateway answers itself: `kubectl auth can-i` (SelfSubjectAccessReview),
`kubectl auth can-i --list` (SelfSubjectRulesReview) and `kubectl auth whoami`
(SelfSubjectReview).

Forwarded, the cluster would answer for the connection's service credential; the caller
needs the answer for itself. A can-i is allowed only if the caller's policies allow it
*and* the cluster allows it for the service credential, so the gateway asks the cluster
too — with that credential — before saying yes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

import trio

from l7proxy.upstream.credential import Connector, UpstreamCredentialError
from l7proxy.upstream.pool import UpstreamError, exchange_whole
from l7proxy.wire.exchange import Exchange
from policy.decision import Decision
from policy.engine import PolicySet
from policy.identity import Identity
from policy.reviews import (
    InvalidReview,
    access_review_attributes,
    access_review_response,
    rules_review_response,
    whoami_response,
)
from protocols import k8s_protobuf
from protocols.attributes import Attributes

# A review is a small JSON object; anything larger is not one.
MAX_REVIEW_BYTES = 64 * 1024
_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class Review(enum.Enum):
    ACCESS = "selfsubjectaccessreviews"
    RULES = "selfsubjectrulesreviews"
    WHOAMI = "selfsubjectreviews"


_GROUPS = {
    Review.ACCESS: "authorization.k8s.io",
    Review.RULES: "authorization.k8s.io",
    Review.WHOAMI: "authentication.k8s.io",
}


def review_kind(attributes: Attributes) -> Review | None:
    """Which review a request creates, if it is one the gateway answers."""
    if not attributes.is_resource_request or attributes.verb != "create" or attributes.name:
        return None
    for review in Review:
        if attributes.resource == review.value and attributes.api_group == _GROUPS[review]:
            return review
    return None


class ReviewError(Exception):
    """The review request cannot be answered: not JSON, too large, or invalid."""


async def read_review(exchange: Exchange) -> Mapping[str, object]:
    body = b""
    while chunk := await exchange.receive():
        body += chunk
        if len(body) > MAX_REVIEW_BYTES:
            raise ReviewError(f"a review request is at most {MAX_REVIEW_BYTES} bytes")
    content_type = exchange.head.header(b"content-type") or b""
    try:
        if content_type.startswith(k8s_protobuf.CONTENT_TYPE):
            document = k8s_protobuf.decode_review(body)
        else:
            document = json.loads(body or b"{}")
    except ValueError as exc:
        raise ReviewError(f"the review request cannot be read: {exc}") from exc
    if not isinstance(document, dict):
        raise ReviewError("the review request is not a JSON object")
    return document


async def answer(
    review: Review,
    document: Mapping[str, object],
    *,
    identity: Identity,
    connection: str,
    policies: PolicySet,
    attributes: Attributes,
    ask_cluster: ClusterAsker,
) -> tuple[dict[str, object], Decision | None]:
    """The review object to return, and the policy decision behind a can-i."""
    spec = document.get("spec", {})
    if not isinstance(spec, Mapping):
        raise ReviewError("spec must be an object")
    try:
        match review:
            case Review.ACCESS:
                reviewed = access_review_attributes(spec)
                decision = policies.decide(identity, connection, reviewed)
                allowed, reason = (
                    await ask_cluster(document, decision) if decision.allowed else (None, "")
                )
                return access_review_response(
                    document, decision, cluster_allowed=allowed, cluster_reason=reason
                ), decision
            case Review.RULES:
                namespace = spec.get("namespace", "")
                response = rules_review_response(
                    policies.policies_for(identity, connection), str(namespace or "")
                )
                return response, None
            case Review.WHOAMI:
                version = f"{attributes.api_group}/{attributes.api_version}"
                names = [p.name for p in policies.policies_for(identity, connection)]
                return whoami_response(
                    identity, api_version=version, connection=connection, policies=names
                ), None
    except InvalidReview as exc:
        raise ReviewError(str(exc)) from exc


class ClusterAsker:
    """Asks the cluster the same SelfSubjectAccessReview with the service credential
    that the allowing policy binds (for EKS: its role)."""

    def __init__(self, connector: Connector, identity: Identity, timeout: float) -> None:
        self.connector = connector
        self.identity = identity
        self.timeout = timeout

    async def __call__(
        self, document: Mapping[str, object], decision: Decision
    ) -> tuple[bool, str]:
        try:
            pool = await self.connector.upstream()
            credential = await self.connector.credential_headers(self.identity, decision)
        except UpstreamCredentialError as exc:
            return False, f"the cluster could not be asked: {exc.message}"
        body = json.dumps(dict(document)).encode()
        headers = [
            *credential,
            (b"content-type", b"application/json"),
            (b"accept", b"application/json"),
        ]
        try:
            with trio.fail_after(self.timeout):
                status, answer = await exchange_whole(
                    pool, "POST", _ACCESS_REVIEWS, headers, body, limit=MAX_REVIEW_BYTES
                )
        except trio.TooSlowError:
            return False, f"the cluster did not answer within {self.timeout:g}s"
        except UpstreamError as exc:
            return False, f"the cluster could not be asked: {exc}"
        return _cluster_verdict(status, answer)


def _cluster_verdict(status: int, body: bytes) -> tuple[bool, str]:
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    if status != 201 or not isinstance(document, dict):
        message = document.get("message", "") if isinstance(document, dict) else ""
        return False, f"HTTP {status} {message}".strip()
    verdict = document.get("status", {})
    if not isinstance(verdict, dict):
        return False, "malformed review status"
    reason = str(verdict.get("reason", "") or "")
    return bool(verdict.get("allowed", False)), reason
