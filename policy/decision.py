"""The outcome of one authorization decision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request is allowed, and enough about why to audit and explain it.

    `policy` names the policy whose rule decided ("" when no rule did), so a denial
    can point the operator at the exact rule; `binding_user_role` is the allowing
    policy's role to impersonate upstream; `policies` lists every policy that applied
    to the caller on the connection, which is what a "why not?" question needs.
    `denied_by_rule` tells an explicit deny rule from "nothing allowed it", which
    SelfSubjectAccessReview reports apart (`status.denied`). `redact_secrets` is set on
    an allowed decision when any policy that applied sets `redact_secrets`: one policy
    naming the caller is enough to keep Secret values from it.
    """

    allowed: bool
    policy: str
    binding_user_role: str | None
    reason: str
    policies: tuple[str, ...]
    denied_by_rule: bool = False
    redact_secrets: bool = False
