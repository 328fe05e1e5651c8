"""Properties that must hold for any policy set, any caller and any request."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from policy.engine import PolicySet
from policy.identity import Identity
from policy.model import Policy, Rule
from protocols.attributes import Attributes

CONNECTIONS = ("prod", "staging")
SUBJECTS = ("alice", "bob", "devs", "ops")


def small(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), max_size=3, unique=True).map(tuple)


verbs = small(("*", "get", "list", "create", "delete"))
api_groups = small(("*", "", "apps"))
resources = small(("*", "pods", "deployments", "pods/exec", "pods/*", "*/scale", "*/status"))
names = small(("web", "db"))
namespaces = small(("*", "", "default", "kube-system"))
urls = small(("*", "/healthz", "/api/*", "/version"))

resource_rules = st.builds(
    Rule,
    verbs=verbs,
    api_groups=api_groups,
    resources=resources,
    resource_names=names,
    namespaces=namespaces,
)
non_resource_rules = st.builds(Rule, verbs=verbs, non_resource_urls=urls)
rules = st.one_of(resource_rules, non_resource_rules)

policies = st.builds(
    Policy,
    name=st.sampled_from(("p1", "p2", "p3")),
    connection=st.sampled_from(CONNECTIONS),
    groups=small(SUBJECTS),
    users=small(SUBJECTS),
    binding_user_role=st.one_of(st.none(), st.just("role")),
    allow=st.lists(rules, max_size=3).map(tuple),
    deny=st.lists(rules, max_size=2).map(tuple),
)
policy_lists = st.lists(policies, max_size=4)
identities = st.builds(Identity, username=st.sampled_from(SUBJECTS), groups=small(SUBJECTS))

resource_attributes = st.builds(
    Attributes,
    is_resource_request=st.just(True),
    path=st.just("/fake"),
    verb=st.sampled_from(("get", "list", "create", "delete", "patch")),
    api_group=st.sampled_from(("", "apps")),
    namespace=st.sampled_from(("", "default", "kube-system")),
    resource=st.sampled_from(("pods", "deployments", "secrets")),
    subresource=st.sampled_from(("", "exec", "scale", "status")),
    name=st.sampled_from(("", "web", "db")),
)
non_resource_attributes = st.builds(
    Attributes,
    is_resource_request=st.just(False),
    path=st.sampled_from(("/healthz", "/api/v1", "/api", "/version", "/metrics")),
    verb=st.sampled_from(("get", "post")),
)
attributes = st.one_of(resource_attributes, non_resource_attributes)


def with_extra_rule(policy: Policy, rule: Rule, *, deny: bool) -> Policy:
    if deny:
        return replace(policy, deny=(*policy.deny, rule))
    return replace(policy, allow=(*policy.allow, rule))


def applies(policy: Policy, identity: Identity) -> bool:
    """The specification the index must agree with: users and groups are separate."""
    return identity.username in policy.users or bool(set(identity.groups) & set(policy.groups))


@given(policy_lists, st.data(), rules, identities, st.sampled_from(CONNECTIONS), attributes)
def test_adding_a_deny_rule_never_turns_a_deny_into_an_allow(
    config: list[Policy],
    data: st.DataObject,
    rule: Rule,
    identity: Identity,
    connection: str,
    request: Attributes,
) -> None:
    before = PolicySet(config).decide(identity, connection, request)
    if config:
        index = data.draw(st.integers(0, len(config) - 1))
        config = [*config]
        config[index] = with_extra_rule(config[index], rule, deny=True)
    after = PolicySet(config).decide(identity, connection, request)
    assert before.allowed or not after.allowed


@given(policy_lists, st.data(), rules, identities, st.sampled_from(CONNECTIONS), attributes)
def test_adding_an_allow_rule_never_turns_an_allow_into_a_deny(
    config: list[Policy],
    data: st.DataObject,
    rule: Rule,
    identity: Identity,
    connection: str,
    request: Attributes,
) -> None:
    before = PolicySet(config).decide(identity, connection, request)
    if config:
        index = data.draw(st.integers(0, len(config) - 1))
        config = [*config]
        config[index] = with_extra_rule(config[index], rule, deny=False)
    after = PolicySet(config).decide(identity, connection, request)
    assert after.allowed or not before.allowed


@given(policy_lists, policies, identities, attributes)
def test_a_policy_for_another_connection_never_changes_a_decision(
    config: list[Policy], extra: Policy, identity: Identity, request: Attributes
) -> None:
    other = replace(extra, connection="elsewhere")
    for connection in CONNECTIONS:
        before = PolicySet(config).decide(identity, connection, request)
        assert PolicySet([*config, other]).decide(identity, connection, request) == before
        assert PolicySet([other, *config]).decide(identity, connection, request) == before


@given(policy_lists, identities, st.sampled_from(CONNECTIONS), attributes)
def test_a_wildcard_allow_allows_everything_not_denied(
    config: list[Policy], identity: Identity, connection: str, request: Attributes
) -> None:
    wildcard = Policy(
        name="everything",
        connection=connection,
        users=(identity.username,),
        allow=(
            Rule(verbs=("*",), api_groups=("*",), resources=("*",), namespaces=("*",)),
            Rule(verbs=("*",), non_resource_urls=("*",)),
        ),
    )
    without = PolicySet(config).decide(identity, connection, request)
    denied = without.denied_by_rule
    decision = PolicySet([*config, wildcard]).decide(identity, connection, request)
    assert decision.allowed is not denied


@given(policy_lists, identities, st.sampled_from(CONNECTIONS), attributes)
def test_decisions_only_cite_policies_that_apply(
    config: list[Policy], identity: Identity, connection: str, request: Attributes
) -> None:
    policy_set = PolicySet(config)
    decision = policy_set.decide(identity, connection, request)
    applicable = policy_set.policies_for(identity, connection)
    assert decision.policies == tuple(policy.name for policy in applicable)
    assert decision.policy in (*decision.policies, "")
    assert decision.policy or not decision.allowed
    for policy in applicable:
        assert policy.connection == connection
        assert applies(policy, identity)
    assert (connection in policy_set.connections_for(identity)) is bool(applicable)


@given(policy_lists, identities, st.sampled_from(CONNECTIONS), attributes)
def test_index_agrees_with_a_linear_scan(
    config: list[Policy], identity: Identity, connection: str, request: Attributes
) -> None:
    expected = tuple(
        policy for policy in config if policy.connection == connection and applies(policy, identity)
    )
    assert PolicySet(config).policies_for(identity, connection) == expected


requests = st.tuples(
    identities, st.sampled_from(CONNECTIONS), attributes, st.sampled_from(("/a", "/b"))
)


@given(policy_lists, st.lists(requests, min_size=1, max_size=12))
def test_remembered_decisions_equal_fresh_ones(
    config: list[Policy], sequence: list[tuple[Identity, str, Attributes, str]]
) -> None:
    """One policy set deciding a stream of requests (names, namespaces and resource paths
    varying) answers each exactly as a fresh computation would."""
    policy_set = PolicySet(config)
    for identity, connection, request, path in sequence * 2:
        if request.is_resource_request:
            request = replace(request, path=path)
        fresh = PolicySet(config).decide_uncached(identity, connection, request)
        assert policy_set.decide(identity, connection, request) == fresh
