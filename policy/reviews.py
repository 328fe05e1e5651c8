"""The answers the gateway gives itself to kubectl's questions about the caller.

`kubectl auth can-i` creates a SelfSubjectAccessReview, `kubectl auth can-i --list` a
SelfSubjectRulesReview and `kubectl auth whoami` a SelfSubjectReview. Forwarded, the
cluster would answer for the connection's service credential, not for the caller, so
the gateway answers from the caller's policies instead, in the shapes of k8s.io/api
authorization/v1 and authentication/v1 that kubectl decodes (JSON names and
`omitempty` as there). kubectl prints `status.reason` and `status.evaluationError`
after "no", warns with `evaluationError` when a rules list is `incomplete`, and prints
`status.userInfo` for whoami.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from policy.decision import Decision
from policy.identity import Identity
from policy.model import Policy, Rule
from protocols.attributes import Attributes

_AUTHORIZATION_V1 = "authorization.k8s.io/v1"
_SELF_SUBJECT_REVIEW_VERSIONS = frozenset(
    {
        "authentication.k8s.io/v1",
        "authentication.k8s.io/v1beta1",
        "authentication.k8s.io/v1alpha1",
    }
)
_ALL = "*"
CONNECTION_EXTRA = "l7proxy.io/connection"
POLICIES_EXTRA = "l7proxy.io/policies"
_RESOURCE_FIELDS = ("namespace", "verb", "group", "version", "resource", "subresource", "name")
_NON_RESOURCE_FIELDS = ("path", "verb")


class InvalidReview(ValueError):
    """A review request kube-apiserver would refuse as invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def access_review_attributes(spec: Mapping[str, object]) -> Attributes:
    """The attributes a SelfSubjectAccessReview `spec` asks about.

    As kube-apiserver's ResourceAttributesFrom: no version means every version ("*"),
    and an empty namespace means every namespace, which only rules for `*` (or for
    cluster-scoped requests) cover. Field and label selectors are ignored: they only
    narrow a request, so an answer without them is never too generous.
    """
    resource = _section(spec, "resourceAttributes")
    non_resource = _section(spec, "nonResourceAttributes")
    if resource is not None and non_resource is not None:
        raise InvalidReview(
            "spec.nonResourceAttributes: cannot be specified in combination with resourceAttributes"
        )
    if resource is not None:
        fields = _strings(resource, "resourceAttributes", _RESOURCE_FIELDS)
        return Attributes(
            is_resource_request=True,
            path="",
            verb=fields["verb"],
            api_group=fields["group"],
            api_version=fields["version"] or _ALL,
            namespace=fields["namespace"],
            resource=fields["resource"],
            subresource=fields["subresource"],
            name=fields["name"],
        )
    if non_resource is not None:
        fields = _strings(non_resource, "nonResourceAttributes", _NON_RESOURCE_FIELDS)
        return Attributes(is_resource_request=False, path=fields["path"], verb=fields["verb"])
    raise InvalidReview(
        "spec.resourceAttributes: exactly one of nonResourceAttributes or"
        " resourceAttributes must be specified"
    )


def _section(spec: Mapping[str, object], key: str) -> Mapping[str, object] | None:
    """An attributes object of the spec; JSON null counts as absent, as in Go."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidReview(f"spec.{key} must be an object")
    return value


def _strings(section: Mapping[str, object], key: str, names: Sequence[str]) -> dict[str, str]:
    """The named string fields; absent or null is "", as Go decodes them."""
    fields: dict[str, str] = {}
    for name in names:
        value = section.get(name)
        if value is None:
            fields[name] = ""
        elif isinstance(value, str):
            fields[name] = value
        else:
            raise InvalidReview(f"spec.{key}.{name} must be a string")
    return fields


def access_review_response(
    request_body: Mapping[str, object],
    decision: Decision,
    *,
    cluster_allowed: bool | None,
    cluster_reason: str = "",
) -> dict[str, object]:
    """The SelfSubjectAccessReview to answer with, its spec echoed as sent.

    Allowed only if the policies allow it and the cluster, when it was asked
    (`cluster_allowed` is None when it was not), did not refuse the connection's
    credential. `status.denied` marks a deny rule, which no other grant can outweigh.
    """
    refused_by_cluster = decision.allowed and cluster_allowed is False
    status: dict[str, object] = {"allowed": decision.allowed and not refused_by_cluster}
    if decision.denied_by_rule:
        status["denied"] = True
    if refused_by_cluster:
        status["reason"] = (
            f"the cluster refused: {cluster_reason}" if cluster_reason else "the cluster refused"
        )
    else:
        status["reason"] = decision.reason
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": _AUTHORIZATION_V1,
        "metadata": {"creationTimestamp": None},
        "spec": request_body.get("spec", {}),
        "status": status,
    }


def rules_review_response(policies: Sequence[Policy], namespace: str) -> dict[str, object]:
    """The SelfSubjectRulesReview for `namespace` ("" for cluster scope), listing the
    allow rules of `policies`, the caller's policies on the connection.

    The list is always `incomplete`: deny rules cannot be expressed in it (kube lists
    grants only), and the cluster may refuse more than the policies do.
    """
    resource_rules: list[dict[str, object]] = []
    non_resource_rules: list[dict[str, object]] = []
    for policy in policies:
        for rule in policy.allow:
            if rule.resources and _applies_in(rule, namespace):
                resource_rules.append(_resource_rule(rule))
            if rule.non_resource_urls:
                non_resource_rules.append(
                    {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
                )
    spec = {"namespace": namespace} if namespace else {}
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": _AUTHORIZATION_V1,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": True,
            "evaluationError": _rules_evaluation_error(policies, namespace),
        },
    }


def _applies_in(rule: Rule, namespace: str) -> bool:
    """As the engine matches namespaces: `*` covers all, `""` cluster scope only."""
    return _ALL in rule.namespaces or namespace in rule.namespaces


def _resource_rule(rule: Rule) -> dict[str, object]:
    listed: dict[str, object] = {"verbs": list(rule.verbs)}
    for key, values in (
        ("apiGroups", rule.api_groups),
        ("resources", rule.resources),
        ("resourceNames", rule.resource_names),
    ):
        if values:
            listed[key] = list(values)
    return listed


def _rules_evaluation_error(policies: Sequence[Policy], namespace: str) -> str:
    cluster = "the cluster may refuse some of these for the connection's role"
    denying = [
        policy.name
        for policy in policies
        if any(
            rule.non_resource_urls or (rule.resources and _applies_in(rule, namespace))
            for rule in policy.deny
        )
    ]
    if not denying:
        return cluster
    noun = "policy" if len(denying) == 1 else "policies"
    names = ", ".join(json.dumps(name, ensure_ascii=False) for name in denying)
    return f"deny rules of {noun} {names} also apply and cannot be listed; {cluster}"


def whoami_response(
    identity: Identity, *, api_version: str, connection: str, policies: Sequence[str]
) -> dict[str, object]:
    """The SelfSubjectReview for the verified caller, in the version kubectl asked for.

    `extra` also carries the connection and the policies that apply there, which is
    what a caller asking "who am I to this cluster?" needs next; the gateway's keys win
    over claims of the same name.
    """
    if api_version not in _SELF_SUBJECT_REVIEW_VERSIONS:
        raise InvalidReview(f"SelfSubjectReview is not served in version {api_version!r}")
    extra: dict[str, list[str]] = {key: list(values) for key, values in identity.extra}
    extra[CONNECTION_EXTRA] = [connection]
    extra[POLICIES_EXTRA] = list(policies)
    user_info: dict[str, object] = {}
    if identity.username:
        user_info["username"] = identity.username
    if identity.uid:
        user_info["uid"] = identity.uid
    if identity.groups:
        user_info["groups"] = list(identity.groups)
    user_info["extra"] = extra
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user_info},
    }
