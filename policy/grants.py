"""Standing policies plus the ones approved access requests add, decided as one set.

An approved request for a grant adds the grant's policy for its requester alone, under a
name that says which request it came from, so a decision it allows can be traced (and a
stream it allowed ended) when the request ends. Pure: the caller passes the requests in
force; nothing here reads a store or a clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from policy.access import AccessRequest, Grant
from policy.engine import PolicySet, rule_matches
from policy.identity import Identity
from policy.model import Policy
from protocols.attributes import Attributes

# Callers holding grants at once are few; each distinct set of their requests is compiled
# once and kept, within this bound.
GRANTED_SETS = 256
_MARK = " (access request "


class GrantedPolicies:
    def __init__(self, policies: Sequence[Policy], grants: Sequence[Grant]) -> None:
        self.standing = PolicySet(policies)
        self._policies = {policy.name: policy for policy in policies}
        self._grants = {grant.name: grant for grant in grants}
        self._sets: dict[tuple[str, tuple[str, ...]], PolicySet] = {}

    def with_requests(self, who: Identity, requests: Sequence[AccessRequest]) -> PolicySet:
        """The policies deciding for `who` while `requests` (theirs, approved) are in force."""
        granted = [
            dataclasses.replace(
                policy, name=f"{policy.name}{_MARK}{request.id})", users=(who.username,), groups=()
            )
            for request in requests
            if (grant := self._grants.get(request.grant)) is not None
            and (policy := self._policies.get(grant.policy)) is not None
        ]
        if not granted:
            return self.standing
        key = (who.username, tuple(policy.name for policy in granted))
        compiled = self._sets.get(key)
        if compiled is None:
            if len(self._sets) >= GRANTED_SETS:
                del self._sets[next(iter(self._sets))]
            compiled = self._sets[key] = PolicySet([*self._policies.values(), *granted])
        return compiled

    def lift(self, who: Identity, connection: str, attributes: Attributes) -> str | None:
        """The first grant `who` may request whose policy would allow this request."""
        for grant in self._grants.values():
            policy = self._policies.get(grant.policy)
            if (
                policy is not None
                and policy.connection == connection
                and grant.requesters.includes(who)
                and not any(rule_matches(rule, attributes) for rule in policy.deny)
                and any(rule_matches(rule, attributes) for rule in policy.allow)
            ):
                return grant.name
        return None


def granted_by(policy_name: str) -> tuple[str, str]:
    """(policy, access request id) of a decision's policy; the id is "" for a standing one."""
    name, mark, rest = policy_name.partition(_MARK)
    return (name, rest.removesuffix(")")) if mark else (policy_name, "")
