"""The compiled policy set: which policies apply to a caller, and what they decide.

Rule matching follows Kubernetes RBAC (`RuleAllows` in plugin/pkg/auth/authorizer/rbac
and the helpers in pkg/apis/rbac/v1/evaluation_helpers.go) so that a rule means here what
it would mean in a ClusterRole, plus two additions RBAC lacks: per-rule namespaces and
the `resource/*` form for "every subresource of resource".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from policy.decision import Decision
from policy.identity import Identity
from policy.model import Policy, Rule
from protocols.attributes import Attributes

_ALL = "*"
_GROUP = "group"
_USER = "user"
# Decisions remembered per (caller, connection, request shape); oldest forgotten first.
DECISION_CACHE_SIZE = 4096


def rule_matches(rule: Rule, attributes: Attributes) -> bool:
    """Whether `rule` covers the request: resource rules only ever match resource
    requests and non-resource rules only non-resource requests, as in RBAC."""
    if not _verb_matches(rule, attributes.verb):
        return False
    if not attributes.is_resource_request:
        return _non_resource_url_matches(rule, attributes.path)
    return (
        _api_group_matches(rule, attributes.api_group)
        and _resource_matches(rule, attributes.resource, attributes.subresource)
        and _resource_name_matches(rule, attributes.name)
        and _namespace_matches(rule, attributes.namespace)
    )


def _verb_matches(rule: Rule, verb: str) -> bool:
    return _ALL in rule.verbs or verb in rule.verbs


def _api_group_matches(rule: Rule, api_group: str) -> bool:
    return _ALL in rule.api_groups or api_group in rule.api_groups


def _resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    """RBAC's combined form: "pods" never matches a subresource request, "pods/exec"
    matches exactly, "*/scale" matches that subresource of anything; "pods/*" is ours."""
    combined = f"{resource}/{subresource}" if subresource else resource
    for ruled in rule.resources:
        if ruled in (_ALL, combined):
            return True
        if subresource and ruled in (f"*/{subresource}", f"{resource}/*"):
            return True
    return False


def _resource_name_matches(rule: Rule, name: str) -> bool:
    """As in RBAC, a nameless request (list, create) never matches a rule with names."""
    return not rule.resource_names or name in rule.resource_names


def _namespace_matches(rule: Rule, namespace: str) -> bool:
    """`*` also covers cluster-scoped requests (namespace ""); `""` covers only them."""
    return _ALL in rule.namespaces or namespace in rule.namespaces


def _non_resource_url_matches(rule: Rule, path: str) -> bool:
    for ruled in rule.non_resource_urls:
        if ruled in (_ALL, path):
            return True
        if ruled.endswith(_ALL) and path.startswith(ruled.rstrip(_ALL)):
            return True
    return False


def _quote(text: str) -> str:
    """Quote a name for a reason string, escaping what could forge a log line."""
    return json.dumps(text, ensure_ascii=False)


def _quote_all(texts: Iterable[str]) -> str:
    return ", ".join(_quote(text) for text in texts)


def _no_policy_reason(identity: Identity, connection: str) -> str:
    reason = (
        f"no policy for connection {_quote(connection)} applies to user {_quote(identity.username)}"
    )
    if identity.groups:
        noun = "group" if len(identity.groups) == 1 else "groups"
        reason += f" or {noun} {_quote_all(identity.groups)}"
    return reason


def _no_rule_reason(names: tuple[str, ...]) -> str:
    noun = "policy" if len(names) == 1 else "policies"
    return f"no rule of {noun} {_quote_all(names)} allows it"


class PolicySet:
    """Policies compiled once into indexes keyed by subject, so that deciding costs
    what the caller's own policies cost, not what the whole configuration costs."""

    __slots__ = (
        "_by_connection_subject",
        "_by_subject",
        "_decisions",
        "_names_matter",
        "_namespaces_matter",
        "_policies",
    )

    def __init__(self, policies: Sequence[Policy]) -> None:
        self._policies = tuple(policies)
        rules = [rule for policy in self._policies for rule in (*policy.allow, *policy.deny)]
        # Parts of a request no rule can tell apart are left out of the decision cache's
        # key, so `get pod a` and `get pod b` share one entry unless a rule names pods.
        self._names_matter = any(rule.resource_names for rule in rules)
        self._namespaces_matter = any(_ALL not in rule.namespaces for rule in rules)
        self._decisions: dict[tuple[object, ...], Decision] = {}
        by_subject: dict[tuple[str, str], list[int]] = {}
        by_connection_subject: dict[tuple[str, str, str], list[int]] = {}
        for index, policy in enumerate(self._policies):
            subjects = [(_GROUP, group) for group in policy.groups]
            subjects += [(_USER, user) for user in policy.users]
            for kind, name in subjects:
                by_subject.setdefault((kind, name), []).append(index)
                by_connection_subject.setdefault((policy.connection, kind, name), []).append(index)
        self._by_subject = {key: tuple(value) for key, value in by_subject.items()}
        self._by_connection_subject = {
            key: tuple(value) for key, value in by_connection_subject.items()
        }

    @staticmethod
    def _subjects(identity: Identity) -> list[tuple[str, str]]:
        return [(_USER, identity.username), *((_GROUP, group) for group in identity.groups)]

    def _ordered(self, indexes: Iterable[int]) -> tuple[Policy, ...]:
        """Back to config order, once each: allow rules are tried in config order."""
        return tuple(self._policies[index] for index in sorted(set(indexes)))

    def policies_for(self, identity: Identity, connection: str) -> tuple[Policy, ...]:
        """The policies on `connection` naming the caller or any of its groups."""
        return self._ordered(
            index
            for kind, name in self._subjects(identity)
            for index in self._by_connection_subject.get((connection, kind, name), ())
        )

    def connections_for(self, identity: Identity) -> tuple[str, ...]:
        """The connections some policy grants the caller, in config order."""
        policies = self._ordered(
            index
            for subject in self._subjects(identity)
            for index in self._by_subject.get(subject, ())
        )
        return tuple(dict.fromkeys(policy.connection for policy in policies))

    def decide(self, identity: Identity, connection: str, attributes: Attributes) -> Decision:
        """Any matching deny rule of any applicable policy wins; otherwise the first
        matching allow rule in config order; otherwise the request is denied.

        Decisions are remembered per (user, groups, connection, request shape): a decision
        depends on nothing else, and the same caller repeats the same kinds of request."""
        key = (identity.username, identity.groups, connection, self._shape(attributes))
        decision = self._decisions.get(key)
        if decision is None:
            decision = self.decide_uncached(identity, connection, attributes)
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                del self._decisions[next(iter(self._decisions))]
            self._decisions[key] = decision
        return decision

    def _shape(self, a: Attributes) -> tuple[object, ...]:
        """What rule matching reads of a request (see `rule_matches`)."""
        if not a.is_resource_request:
            return (False, a.verb, a.path)
        return (
            True,
            a.verb,
            a.api_group,
            a.resource,
            a.subresource,
            a.namespace if self._namespaces_matter else None,
            a.name if self._names_matter else None,
        )

    def decide_uncached(
        self, identity: Identity, connection: str, attributes: Attributes
    ) -> Decision:
        """`decide`, computed afresh."""
        applicable = self.policies_for(identity, connection)
        names = tuple(policy.name for policy in applicable)
        if not applicable:
            return Decision(
                allowed=False,
                policy="",
                binding_user_role=None,
                reason=_no_policy_reason(identity, connection),
                policies=(),
            )
        for policy in applicable:
            for number, rule in enumerate(policy.deny, start=1):
                if rule_matches(rule, attributes):
                    return Decision(
                        allowed=False,
                        policy=policy.name,
                        binding_user_role=None,
                        reason=f"denied by policy {_quote(policy.name)} deny rule {number}",
                        policies=names,
                        denied_by_rule=True,
                    )
        for policy in applicable:
            for number, rule in enumerate(policy.allow, start=1):
                if rule_matches(rule, attributes):
                    return Decision(
                        allowed=True,
                        policy=policy.name,
                        binding_user_role=policy.binding_user_role,
                        reason=f"allowed by policy {_quote(policy.name)} allow rule {number}",
                        policies=names,
                        redact_secrets=any(p.redact_secrets for p in applicable),
                    )
        return Decision(
            allowed=False,
            policy="",
            binding_user_role=None,
            reason=_no_rule_reason(names),
            policies=names,
        )
