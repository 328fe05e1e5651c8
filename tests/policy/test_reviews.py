"""Self-review answers in the shapes kubectl decodes, and what kubectl then prints.

The shapes follow k8s.io/api authorization/v1 (SelfSubjectAccessReview,
SelfSubjectRulesReview) and authentication/v1 (SelfSubjectReview); the printers below
restate what kubectl's pkg/cmd/auth/cani.go and whoami.go read from them.
"""

from __future__ import annotations

import json

import pytest

from policy.decision import Decision
from policy.engine import PolicySet
from policy.identity import Identity
from policy.model import Policy, Rule
from policy.reviews import (
    InvalidReview,
    access_review_attributes,
    access_review_response,
    rules_review_response,
    whoami_response,
)
from protocols.attributes import Attributes

ALICE = Identity(username="alice", groups=("devs",))


def kubectl_can_i_prints(review: dict[str, object]) -> str:
    """RunAccessCheck: "yes", or "no" with the reason and evaluation error."""
    status = review["status"]
    assert isinstance(status, dict)
    if status["allowed"]:
        return "yes"
    line = "no"
    for key in ("reason", "evaluationError"):
        if status.get(key):
            line += f" - {status[key]}"
    return line


def wire(obj: dict[str, object]) -> dict[str, object]:
    """What kubectl receives: the object through JSON."""
    decoded = json.loads(json.dumps(obj))
    assert isinstance(decoded, dict)
    return decoded


# --- SelfSubjectAccessReview: the question -------------------------------------


def test_resource_attributes_as_kubectl_can_i_sends_them() -> None:
    # kubectl auth can-i get pods --subresource=log -n default   (then /web as the name)
    spec = {
        "resourceAttributes": {
            "namespace": "default",
            "verb": "get",
            "resource": "pods",
            "subresource": "log",
            "name": "web",
        }
    }
    assert access_review_attributes(spec) == Attributes(
        is_resource_request=True,
        path="",
        verb="get",
        api_group="",
        api_version="*",
        namespace="default",
        resource="pods",
        subresource="log",
        name="web",
    )


def test_a_given_version_is_kept_and_absent_or_null_fields_are_empty() -> None:
    spec = {
        "resourceAttributes": {
            "verb": "list",
            "group": "apps",
            "version": "v1",
            "resource": "deployments",
            "namespace": None,
            "fieldSelector": {"rawSelector": "metadata.name=web"},
        }
    }
    got = access_review_attributes(spec)
    assert (got.api_group, got.api_version, got.namespace, got.name) == ("apps", "v1", "", "")


def test_non_resource_attributes() -> None:
    spec = {"nonResourceAttributes": {"path": "/logs/", "verb": "get"}, "resourceAttributes": None}
    assert access_review_attributes(spec) == Attributes(
        is_resource_request=False, path="/logs/", verb="get"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"resourceAttributes": {}, "nonResourceAttributes": {}},
            "spec.nonResourceAttributes: cannot be specified in combination with"
            " resourceAttributes",
        ),
        (
            {},
            "spec.resourceAttributes: exactly one of nonResourceAttributes or"
            " resourceAttributes must be specified",
        ),
        (
            {"resourceAttributes": None, "nonResourceAttributes": None},
            "spec.resourceAttributes: exactly one of nonResourceAttributes or"
            " resourceAttributes must be specified",
        ),
        ({"resourceAttributes": ["get"]}, "spec.resourceAttributes must be an object"),
        (
            {"resourceAttributes": {"verb": ["get"]}},
            "spec.resourceAttributes.verb must be a string",
        ),
        (
            {"nonResourceAttributes": {"path": 1}},
            "spec.nonResourceAttributes.path must be a string",
        ),
    ],
)
def test_malformed_specs_are_refused(spec: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidReview) as refused:
        access_review_attributes(spec)
    assert refused.value.message == message


def test_all_namespaces_is_allowed_only_by_a_rule_for_every_namespace() -> None:
    # kubectl auth can-i list pods -A sends no namespace.
    def can_list_pods_everywhere(namespaces: tuple[str, ...]) -> bool:
        rule = Rule(verbs=("list",), api_groups=("",), resources=("pods",), namespaces=namespaces)
        policy = Policy(name="p", connection="prod", groups=("devs",), allow=(rule,))
        spec = {"resourceAttributes": {"verb": "list", "resource": "pods"}}
        attributes = access_review_attributes(spec)
        return PolicySet([policy]).decide(ALICE, "prod", attributes).allowed

    assert can_list_pods_everywhere(("*",))
    assert not can_list_pods_everywhere(("default", "kube-system"))


# --- SelfSubjectAccessReview: the answer ---------------------------------------

REQUEST = {
    "kind": "SelfSubjectAccessReview",
    "apiVersion": "authorization.k8s.io/v1",
    "metadata": {"creationTimestamp": None},
    "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}},
    "status": {"allowed": False},
}
ALLOWED = Decision(
    allowed=True,
    policy="devs",
    binding_user_role="view",
    reason='allowed by policy "devs" allow rule 1',
    policies=("devs",),
)
DENIED_BY_RULE = Decision(
    allowed=False,
    policy="agents",
    binding_user_role=None,
    reason='denied by policy "agents" deny rule 2',
    policies=("devs", "agents"),
    denied_by_rule=True,
)
NOT_ALLOWED = Decision(
    allowed=False,
    policy="",
    binding_user_role=None,
    reason='no rule of policy "devs" allows it',
    policies=("devs",),
)


def test_allowed_answer_has_the_kubernetes_shape_and_echoes_the_spec() -> None:
    review = access_review_response(REQUEST, ALLOWED, cluster_allowed=True)
    assert wire(review) == {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": REQUEST["spec"],
        "status": {"allowed": True, "reason": 'allowed by policy "devs" allow rule 1'},
    }
    assert kubectl_can_i_prints(review) == "yes"


def test_allowed_by_policy_without_asking_the_cluster() -> None:
    review = access_review_response(REQUEST, ALLOWED, cluster_allowed=None)
    assert kubectl_can_i_prints(review) == "yes"


def test_a_deny_rule_is_reported_as_denied() -> None:
    review = access_review_response(REQUEST, DENIED_BY_RULE, cluster_allowed=None)
    assert review["status"] == {
        "allowed": False,
        "denied": True,
        "reason": 'denied by policy "agents" deny rule 2',
    }
    assert kubectl_can_i_prints(review) == 'no - denied by policy "agents" deny rule 2'


def test_no_matching_rule_is_not_allowed_but_not_denied() -> None:
    review = access_review_response(REQUEST, NOT_ALLOWED, cluster_allowed=True)
    assert review["status"] == {"allowed": False, "reason": 'no rule of policy "devs" allows it'}


def test_the_cluster_refusing_the_connection_role_overrides_the_policy() -> None:
    review = access_review_response(
        REQUEST,
        ALLOWED,
        cluster_allowed=False,
        cluster_reason='RBAC: role "view" does not grant it',
    )
    assert review["status"] == {
        "allowed": False,
        "reason": 'the cluster refused: RBAC: role "view" does not grant it',
    }
    assert kubectl_can_i_prints(review) == (
        'no - the cluster refused: RBAC: role "view" does not grant it'
    )
    silent = access_review_response(REQUEST, ALLOWED, cluster_allowed=False)
    assert silent["status"] == {"allowed": False, "reason": "the cluster refused"}


def test_a_policy_refusal_is_reported_even_if_the_cluster_also_refused() -> None:
    review = access_review_response(REQUEST, NOT_ALLOWED, cluster_allowed=False)
    assert review["status"] == {"allowed": False, "reason": 'no rule of policy "devs" allows it'}


# --- SelfSubjectRulesReview ----------------------------------------------------

READ_ALL = Rule(verbs=("get", "list", "watch"), api_groups=("*",), resources=("*",))
DEV_PODS = Rule(
    verbs=("*",),
    api_groups=("",),
    resources=("pods", "pods/exec"),
    resource_names=("web",),
    namespaces=("dev",),
)
NODES = Rule(verbs=("get",), api_groups=("",), resources=("nodes",), namespaces=("",))
VERSION = Rule(verbs=("get",), non_resource_urls=("/version", "/api/*"))
SECRETS = Rule(verbs=("*",), api_groups=("",), resources=("secrets",))


def test_rules_list_allow_rules_that_apply_in_the_namespace() -> None:
    policies = [
        Policy(name="read", connection="prod", allow=(READ_ALL, NODES, VERSION)),
        Policy(name="dev", connection="prod", allow=(DEV_PODS,)),
    ]
    review = wire(rules_review_response(policies, "dev"))
    assert review == {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"namespace": "dev"},
        "status": {
            "resourceRules": [
                {"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]},
                {
                    "verbs": ["*"],
                    "apiGroups": [""],
                    "resources": ["pods", "pods/exec"],
                    "resourceNames": ["web"],
                },
            ],
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/version", "/api/*"]}],
            "incomplete": True,
            "evaluationError": "the cluster may refuse some of these for the connection's role",
        },
    }


def test_rules_in_another_namespace_are_left_out() -> None:
    policies = [Policy(name="dev", connection="prod", allow=(DEV_PODS, NODES))]
    status = rules_review_response(policies, "staging")["status"]
    assert isinstance(status, dict)
    assert status["resourceRules"] == []
    assert status["nonResourceRules"] == []


def test_cluster_scoped_rules_are_listed_only_for_the_cluster_scope() -> None:
    policies = [Policy(name="read", connection="prod", allow=(READ_ALL, NODES, DEV_PODS))]
    review = rules_review_response(policies, "")
    assert review["spec"] == {}
    status = review["status"]
    assert isinstance(status, dict)
    assert [rule["resources"] for rule in status["resourceRules"]] == [["*"], ["nodes"]]


def test_applicable_deny_rules_are_named_in_the_evaluation_error() -> None:
    policies = [
        Policy(name="read", connection="prod", allow=(READ_ALL,), deny=(SECRETS,)),
        Policy(name="dev", connection="prod", allow=(DEV_PODS,), deny=(VERSION,)),
        Policy(name="elsewhere", connection="prod", deny=(DEV_PODS,)),
    ]
    status = rules_review_response(policies, "staging")["status"]
    assert isinstance(status, dict)
    assert status["incomplete"] is True
    assert status["evaluationError"] == (
        'deny rules of policies "read", "dev" also apply and cannot be listed;'
        " the cluster may refuse some of these for the connection's role"
    )
    single = rules_review_response(policies[:1], "staging")["status"]
    assert isinstance(single, dict)
    assert str(single["evaluationError"]).startswith('deny rules of policy "read" also apply')


def test_no_policies_list_nothing_but_still_lists() -> None:
    status = rules_review_response([], "default")["status"]
    assert isinstance(status, dict)
    assert (status["resourceRules"], status["nonResourceRules"]) == ([], [])


# --- SelfSubjectReview ---------------------------------------------------------


def kubectl_whoami_prints(review: dict[str, object]) -> list[tuple[str, str]]:
    """printTableSelfSubjectAccessReview: only the fields that are set, extras sorted."""
    status = review["status"]
    assert isinstance(status, dict)
    info = status["userInfo"]
    rows = [("Username", info.get("username", "")), ("UID", info.get("uid", ""))]
    rows = [(k, v) for k, v in rows if v]
    if info.get("groups"):
        rows.append(("Groups", "[" + " ".join(info["groups"]) + "]"))
    for key in sorted(info.get("extra", {})):
        rows.append((f"Extra: {key}", "[" + " ".join(info["extra"][key]) + "]"))
    return rows


def test_whoami_v1_shape_and_what_kubectl_prints() -> None:
    identity = Identity(
        username="alice@example.com",
        groups=("devs", "oncall"),
        uid="u-1",
        extra=(("acr", ("mfa",)),),
    )
    review = whoami_response(
        identity,
        api_version="authentication.k8s.io/v1",
        connection="prod",
        policies=["devs", "oncall"],
    )
    assert wire(review) == {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "status": {
            "userInfo": {
                "username": "alice@example.com",
                "uid": "u-1",
                "groups": ["devs", "oncall"],
                "extra": {
                    "acr": ["mfa"],
                    "l7proxy.io/connection": ["prod"],
                    "l7proxy.io/policies": ["devs", "oncall"],
                },
            }
        },
    }
    assert kubectl_whoami_prints(review) == [
        ("Username", "alice@example.com"),
        ("UID", "u-1"),
        ("Groups", "[devs oncall]"),
        ("Extra: acr", "[mfa]"),
        ("Extra: l7proxy.io/connection", "[prod]"),
        ("Extra: l7proxy.io/policies", "[devs oncall]"),
    ]


def test_whoami_v1beta1_omits_empty_fields_and_gateway_keys_win() -> None:
    identity = Identity(username="ci-bot", extra=(("l7proxy.io/connection", ("forged",)),))
    review = whoami_response(
        identity, api_version="authentication.k8s.io/v1beta1", connection="dev", policies=[]
    )
    assert review["apiVersion"] == "authentication.k8s.io/v1beta1"
    assert review["status"] == {
        "userInfo": {
            "username": "ci-bot",
            "extra": {"l7proxy.io/connection": ["dev"], "l7proxy.io/policies": []},
        }
    }


def test_whoami_in_an_unknown_version_is_refused() -> None:
    with pytest.raises(InvalidReview) as refused:
        whoami_response(
            ALICE, api_version="authentication.k8s.io/v2", connection="prod", policies=[]
        )
    assert refused.value.message == (
        "SelfSubjectReview is not served in version 'authentication.k8s.io/v2'"
    )
