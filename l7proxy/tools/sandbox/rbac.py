"""SelfSubjectAccessReview in the sandbox: RBAC per user, with the gateway's own rule
matcher (the rules are RBAC's, so the matcher is the same)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from l7proxy.tools.sandbox.status import ApiError
from policy.engine import rule_matches
from policy.model import Rule
from policy.reviews import InvalidReview, access_review_attributes

ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class SandboxRbac:
    """`rules` maps a username to its RBAC rules; None lets every user do everything."""

    def __init__(self, rules: Mapping[str, Sequence[Rule]] | None = None) -> None:
        self._rules = None if rules is None else {user: tuple(r) for user, r in rules.items()}

    def access_review(self, user: str, body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body or b"{}")
            spec = document["spec"]
            attributes = access_review_attributes(spec)
        except (ValueError, KeyError, TypeError, InvalidReview) as exc:
            raise ApiError(400, "BadRequest", f"invalid SelfSubjectAccessReview: {exc}") from exc
        if self._rules is None:
            allowed, reason = True, "the sandbox allows everyone everything"
        else:
            rules = self._rules.get(user, ())
            allowed = any(rule_matches(rule, attributes) for rule in rules)
            reason = "allowed by RBAC" if allowed else f'RBAC: no rule for user "{user}"'
        return {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": {"allowed": allowed, "reason": reason},
        }
