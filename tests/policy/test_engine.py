"""Decisions of the compiled policy set, one behaviour per test."""

from __future__ import annotations

import pytest

from policy.engine import PolicySet
from policy.identity import Identity
from policy.model import Policy, Rule
from protocols.attributes import Attributes

ALICE = Identity(username="alice", groups=("devs", "oncall"))
BOB = Identity(username="bob", groups=("devs",))


def resource(
    verb: str = "get",
    resource: str = "pods",
    *,
    namespace: str = "default",
    api_group: str = "",
    subresource: str = "",
    name: str = "",
) -> Attributes:
    return Attributes(
        is_resource_request=True,
        path="/fake",  # matching never reads the path of a resource request
        verb=verb,
        api_prefix="api" if not api_group else "apis",
        api_group=api_group,
        api_version="v1",
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def non_resource(path: str, verb: str = "get") -> Attributes:
    return Attributes(is_resource_request=False, path=path, verb=verb)


def allows(rule: Rule, attributes: Attributes) -> bool:
    """Decide with a single policy granting `rule` to group devs on connection prod."""
    policy = Policy(name="p", connection="prod", groups=("devs",), allow=(rule,))
    return PolicySet([policy]).decide(BOB, "prod", attributes).allowed


def pods(**overrides: tuple[str, ...]) -> Rule:
    fields: dict[str, tuple[str, ...]] = {
        "verbs": ("get",),
        "api_groups": ("",),
        "resources": ("pods",),
    }
    fields.update(overrides)
    return Rule(**fields)


# --- combining policies -------------------------------------------------------


def test_deny_rule_beats_allow_rule_of_another_policy() -> None:
    allow = Policy(
        name="devs-admin", connection="prod", groups=("devs",), allow=(pods(verbs=("*",)),)
    )
    deny = Policy(
        name="agents-readonly",
        connection="prod",
        groups=("oncall",),
        deny=(pods(verbs=("create",)), pods(verbs=("delete",))),
    )
    decision = PolicySet([allow, deny]).decide(ALICE, "prod", resource("delete"))
    assert not decision.allowed
    assert decision.policy == "agents-readonly"
    assert decision.binding_user_role is None
    assert decision.reason == 'denied by policy "agents-readonly" deny rule 2'
    assert decision.denied_by_rule
    assert decision.policies == ("devs-admin", "agents-readonly")


def test_deny_rule_beats_allow_rule_of_the_same_policy() -> None:
    policy = Policy(
        name="p",
        connection="prod",
        groups=("devs",),
        allow=(pods(verbs=("*",)),),
        deny=(pods(resources=("pods/exec",), verbs=("*",)),),
    )
    policies = PolicySet([policy])
    assert policies.decide(BOB, "prod", resource("get")).allowed
    assert not policies.decide(BOB, "prod", resource("create", subresource="exec")).allowed


def test_caller_in_several_groups_gets_the_union_of_their_policies() -> None:
    readers = Policy(name="readers", connection="prod", groups=("devs",), allow=(pods(),))
    writers = Policy(
        name="writers", connection="prod", groups=("oncall",), allow=(pods(verbs=("delete",)),)
    )
    policies = PolicySet([readers, writers])
    assert policies.decide(ALICE, "prod", resource("get")).allowed
    decision = policies.decide(ALICE, "prod", resource("delete"))
    assert decision.allowed
    assert decision.policy == "writers"
    assert decision.reason == 'allowed by policy "writers" allow rule 1'
    assert not policies.decide(BOB, "prod", resource("delete")).allowed


def test_first_matching_allow_rule_in_config_order_decides_and_names_binding_role() -> None:
    first = Policy(
        name="first",
        connection="prod",
        groups=("oncall",),
        binding_user_role="admin",
        allow=(pods(verbs=("list",)), pods()),
    )
    second = Policy(
        name="second",
        connection="prod",
        groups=("devs",),
        binding_user_role="view",
        allow=(pods(),),
    )
    decision = PolicySet([first, second]).decide(ALICE, "prod", resource("get"))
    assert decision.allowed
    assert decision.policy == "first"
    assert decision.binding_user_role == "admin"
    assert decision.reason == 'allowed by policy "first" allow rule 2'


def test_policy_bound_to_user_applies_to_that_user_only() -> None:
    policy = Policy(
        name="alice-only",
        connection="prod",
        users=("alice",),
        binding_user_role="r",
        allow=(pods(),),
    )
    policies = PolicySet([policy])
    decision = policies.decide(ALICE, "prod", resource())
    assert decision.allowed
    assert decision.binding_user_role == "r"
    assert not policies.decide(BOB, "prod", resource()).allowed


def test_policy_naming_both_user_and_group_applies_once() -> None:
    policy = Policy(name="p", connection="prod", groups=("devs",), users=("alice",))
    assert PolicySet([policy]).policies_for(ALICE, "prod") == (policy,)


def test_no_applicable_policy_denies_and_says_who_lacks_access() -> None:
    policy = Policy(name="p", connection="staging", groups=("devs",), allow=(pods(),))
    decision = PolicySet([policy]).decide(ALICE, "prod", resource())
    assert not decision.allowed
    assert decision.policy == ""
    assert decision.policies == ()
    assert decision.reason == (
        'no policy for connection "prod" applies to user "alice" or groups "devs", "oncall"'
    )


def test_no_applicable_policy_reason_for_caller_without_groups() -> None:
    decision = PolicySet([]).decide(Identity(username="carol"), "prod", resource())
    assert decision.reason == 'no policy for connection "prod" applies to user "carol"'


def test_no_matching_rule_denies_and_names_the_applicable_policies() -> None:
    a = Policy(name="a", connection="prod", groups=("devs",), allow=(pods(),))
    b = Policy(name="b", connection="prod", groups=("oncall",))
    other = Policy(name="other", connection="prod", groups=("nobody",))
    decision = PolicySet([a, other, b]).decide(ALICE, "prod", resource("delete"))
    assert not decision.allowed
    assert decision.policy == ""
    assert decision.binding_user_role is None
    assert decision.policies == ("a", "b")
    assert decision.reason == 'no rule of policies "a", "b" allows it'
    assert not decision.denied_by_rule


def test_no_matching_rule_reason_with_one_policy_is_singular() -> None:
    a = Policy(name="a", connection="prod", groups=("devs",))
    assert PolicySet([a]).decide(BOB, "prod", resource()).reason == (
        'no rule of policy "a" allows it'
    )


def test_reason_escapes_quotes_in_names() -> None:
    decision = PolicySet([]).decide(Identity(username='ev"il\n'), "prod", resource())
    assert decision.reason == 'no policy for connection "prod" applies to user "ev\\"il\\n"'


def test_policies_for_returns_config_order_for_the_connection_only() -> None:
    a = Policy(name="a", connection="prod", groups=("oncall",))
    b = Policy(name="b", connection="staging", groups=("devs",))
    c = Policy(name="c", connection="prod", users=("alice",))
    d = Policy(name="d", connection="prod", groups=("devs",))
    assert PolicySet([a, b, c, d]).policies_for(ALICE, "prod") == (a, c, d)


def test_connections_for_lists_each_granted_connection_once_in_config_order() -> None:
    policies = PolicySet(
        [
            Policy(name="a", connection="staging", groups=("devs",)),
            Policy(name="b", connection="prod", users=("alice",)),
            Policy(name="c", connection="staging", groups=("oncall",)),
            Policy(name="d", connection="secret", groups=("admins",)),
        ]
    )
    assert policies.connections_for(ALICE) == ("staging", "prod")
    assert policies.connections_for(Identity(username="carol")) == ()


# --- rule matching ------------------------------------------------------------


def test_verb_must_match_exactly() -> None:
    assert allows(pods(verbs=("get", "list")), resource("list"))
    assert not allows(pods(verbs=("get",)), resource("watch"))


def test_wildcard_verb_matches_every_verb() -> None:
    assert allows(pods(verbs=("*",)), resource("deletecollection"))


def test_api_group_must_match_and_wildcard_matches_any() -> None:
    deployments = resource(resource="deployments", api_group="apps")
    assert not allows(pods(resources=("deployments",)), deployments)
    assert allows(pods(resources=("deployments",), api_groups=("apps",)), deployments)
    assert allows(pods(resources=("deployments",), api_groups=("*",)), deployments)


def test_resource_rule_without_api_groups_matches_nothing_as_in_rbac() -> None:
    assert not allows(pods(api_groups=()), resource())


def test_plain_resource_does_not_match_a_subresource_request() -> None:
    assert not allows(pods(), resource(subresource="log"))


def test_resource_slash_subresource_matches_only_that_subresource() -> None:
    rule = pods(resources=("pods/exec",), verbs=("create",))
    assert allows(rule, resource("create", subresource="exec"))
    assert not allows(rule, resource("create", subresource="attach"))
    assert not allows(rule, resource("create"))


def test_resource_slash_star_matches_any_subresource_but_not_the_resource() -> None:
    rule = pods(resources=("pods/*",))
    assert allows(rule, resource(subresource="log"))
    assert allows(rule, resource(subresource="status"))
    assert not allows(rule, resource())
    assert not allows(rule, resource(resource="services", subresource="proxy"))


def test_star_slash_subresource_matches_that_subresource_of_any_resource() -> None:
    rule = pods(resources=("*/scale",), api_groups=("*",))
    assert allows(rule, resource(resource="deployments", api_group="apps", subresource="scale"))
    assert allows(rule, resource(resource="replicasets", api_group="apps", subresource="scale"))
    assert not allows(rule, resource(resource="deployments", api_group="apps"))
    assert not allows(rule, resource(subresource="status"))


def test_wildcard_resource_matches_resources_and_subresources() -> None:
    rule = pods(resources=("*",))
    assert allows(rule, resource(resource="secrets"))
    assert allows(rule, resource(subresource="exec"))


def test_resource_names_restrict_to_those_names() -> None:
    rule = pods(resources=("configmaps",), resource_names=("app-config",))
    assert allows(rule, resource(resource="configmaps", name="app-config"))
    assert not allows(rule, resource(resource="configmaps", name="other"))


def test_resource_names_never_match_a_nameless_request_as_in_rbac() -> None:
    rule = pods(verbs=("list",), resource_names=("web",))
    assert not allows(rule, resource("list"))


def test_empty_resource_names_match_every_name() -> None:
    assert allows(pods(), resource(name="anything"))


@pytest.mark.parametrize(
    ("namespaces", "namespace", "expected"),
    [
        (("*",), "default", True),
        (("*",), "", True),
        (("",), "", True),
        (("",), "default", False),
        (("team-a",), "team-a", True),
        (("team-a",), "team-b", False),
        (("team-a",), "", False),
        (("team-a", ""), "", True),
        ((), "default", False),
    ],
)
def test_namespaces_star_matches_all_empty_matches_cluster_scope_else_exact(
    namespaces: tuple[str, ...], namespace: str, expected: bool
) -> None:
    assert allows(pods(namespaces=namespaces), resource(namespace=namespace)) is expected


def test_non_resource_url_matches_exactly() -> None:
    rule = Rule(verbs=("get",), non_resource_urls=("/healthz",))
    assert allows(rule, non_resource("/healthz"))
    assert not allows(rule, non_resource("/healthz/ping"))


def test_non_resource_url_trailing_star_matches_by_prefix() -> None:
    rule = Rule(verbs=("get",), non_resource_urls=("/apis/*",))
    assert allows(rule, non_resource("/apis/"))
    assert allows(rule, non_resource("/apis/apps/v1"))
    assert not allows(rule, non_resource("/apis"))
    assert not allows(rule, non_resource("/api/v1"))


def test_non_resource_url_star_matches_every_path() -> None:
    assert allows(Rule(verbs=("get",), non_resource_urls=("*",)), non_resource("/version"))


def test_non_resource_rule_ignores_namespaces() -> None:
    rule = Rule(verbs=("get",), non_resource_urls=("/version",), namespaces=("team-a",))
    assert allows(rule, non_resource("/version"))


def test_resource_rule_never_matches_a_non_resource_request() -> None:
    rule = Rule(verbs=("*",), api_groups=("*",), resources=("*",))
    assert not allows(rule, non_resource("/version"))


def test_non_resource_rule_never_matches_a_resource_request() -> None:
    rule = Rule(verbs=("*",), non_resource_urls=("*",))
    assert not allows(rule, resource())


def test_any_applicable_policy_that_redacts_secrets_marks_the_allowed_decision() -> None:
    secrets = Rule(verbs=("get",), api_groups=("",), resources=("secrets",))
    plain = Policy(name="plain", connection="prod", groups=("devs",), allow=(secrets,))
    redacting = Policy(name="redacting", connection="prod", groups=("oncall",), redact_secrets=True)
    policies = PolicySet([plain, redacting])
    alice = policies.decide(ALICE, "prod", resource(resource="secrets"))
    bob = policies.decide(BOB, "prod", resource(resource="secrets"))
    assert (alice.allowed, alice.policy, alice.redact_secrets) == (True, "plain", True)
    assert (bob.allowed, bob.redact_secrets) == (True, False)
