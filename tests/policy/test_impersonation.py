"""Impersonation decided as kube-apiserver's impersonation filter decides it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policy.engine import PolicySet
from policy.identity import Identity
from policy.impersonation import authorize_impersonation
from policy.model import Policy, Rule
from protocols.impersonation_headers import ImpersonationRequest

ALICE = Identity(username="alice", groups=("sre",), provider="corp-sso")
AUTHN = "authentication.k8s.io"


def impersonate(
    resource: str, *names: str, api_group: str = "", namespaces: tuple[str, ...] = ("*",)
) -> Rule:
    return Rule(
        verbs=("impersonate",),
        api_groups=(api_group,),
        resources=(resource,),
        resource_names=names,
        namespaces=namespaces,
    )


GRANTS = (
    impersonate("users", "bob", namespaces=("",)),
    impersonate("groups", "devs", "system:unauthenticated"),
    impersonate("userextras/scopes", "view", api_group=AUTHN),
    impersonate("uids", "1234", api_group=AUTHN),
    impersonate("serviceaccounts", "builder", namespaces=("ci",)),
    impersonate("users", "system:anonymous"),
)
POLICIES = PolicySet(
    [Policy(name="sre-impersonate", connection="prod", groups=("sre",), allow=GRANTS)]
)


def test_granted_user_is_acted_as_with_system_authenticated_added() -> None:
    decision, identity = authorize_impersonation(
        POLICIES, ALICE, "prod", ImpersonationRequest(user="bob")
    )
    assert decision.allowed
    assert decision.policy == "sre-impersonate"
    assert decision.binding_user_role is None
    assert decision.policies == ("sre-impersonate",)
    assert decision.reason == (
        'may impersonate user "bob" (allowed by policy "sre-impersonate" allow rule 1)'
    )
    assert identity == Identity(username="bob", groups=("system:authenticated",))


def test_every_granted_value_is_carried_into_the_identity() -> None:
    request = ImpersonationRequest(
        user="bob", groups=("devs",), uid="1234", extra=(("scopes", ("view",)),)
    )
    decision, identity = authorize_impersonation(POLICIES, ALICE, "prod", request)
    assert decision.allowed
    assert decision.reason == (
        'may impersonate user "bob" (allowed by policy "sre-impersonate" allow rule 1), '
        'group "devs" (allowed by policy "sre-impersonate" allow rule 2), '
        'user extra "scopes" value "view" (allowed by policy "sre-impersonate" allow rule 3), '
        'uid "1234" (allowed by policy "sre-impersonate" allow rule 4)'
    )
    assert identity == Identity(
        username="bob",
        groups=("devs", "system:authenticated"),
        uid="1234",
        extra=(("scopes", ("view",)),),
    )


def test_an_ungranted_user_is_refused_and_the_actor_kept() -> None:
    decision, identity = authorize_impersonation(
        POLICIES, ALICE, "prod", ImpersonationRequest(user="carol")
    )
    assert not decision.allowed
    assert decision.reason == (
        'cannot impersonate user "carol": no rule of policy "sre-impersonate" allows it'
    )
    assert identity is ALICE


def test_the_first_ungranted_value_is_named_in_kube_order() -> None:
    cases = [
        (ImpersonationRequest(user="bob", groups=("devs", "admins")), 'group "admins"'),
        (
            ImpersonationRequest(user="bob", extra=(("scopes", ("view", "admin")),)),
            'user extra "scopes" value "admin"',
        ),
        (
            ImpersonationRequest(user="bob", extra=(("Scopes", ("view",)),)),
            'user extra "Scopes" value "view"',
        ),
        (ImpersonationRequest(user="bob", uid="9999"), 'uid "9999"'),
        # The group is checked before the uid, and neither is granted.
        (ImpersonationRequest(user="bob", groups=("admins",), uid="9999"), 'group "admins"'),
    ]
    for request, what in cases:
        decision, identity = authorize_impersonation(POLICIES, ALICE, "prod", request)
        assert not decision.allowed
        assert decision.reason.startswith(f"cannot impersonate {what}: ")
        assert identity is ALICE


def test_users_groups_and_uids_are_core_and_authentication_group_resources() -> None:
    # A grant in the wrong API group does not count, as in RBAC.
    wrong_groups = PolicySet(
        [
            Policy(
                name="p",
                connection="prod",
                users=("alice",),
                allow=(
                    impersonate("users", "bob", api_group=AUTHN),
                    impersonate("uids", "1234"),
                ),
            )
        ]
    )
    for request in (
        ImpersonationRequest(user="bob"),
        ImpersonationRequest(user="bob", uid="1234"),
    ):
        decision, _ = authorize_impersonation(wrong_groups, ALICE, "prod", request)
        assert not decision.allowed


def test_a_service_account_is_checked_in_its_namespace_and_gets_its_groups() -> None:
    request = ImpersonationRequest(user="system:serviceaccount:ci:builder")
    decision, identity = authorize_impersonation(POLICIES, ALICE, "prod", request)
    assert decision.allowed
    assert decision.reason.startswith('may impersonate service account "ci/builder" (')
    assert identity.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:ci",
        "system:authenticated",
    )
    other_namespace = ImpersonationRequest(user="system:serviceaccount:prod:builder")
    decision, _ = authorize_impersonation(POLICIES, ALICE, "prod", other_namespace)
    assert not decision.allowed
    assert decision.reason.startswith('cannot impersonate service account "prod/builder": ')


def test_requested_groups_replace_a_service_accounts_own_groups() -> None:
    request = ImpersonationRequest(user="system:serviceaccount:ci:builder", groups=("devs",))
    decision, identity = authorize_impersonation(POLICIES, ALICE, "prod", request)
    assert decision.allowed
    assert identity.groups == ("devs", "system:authenticated")


def test_a_malformed_service_account_name_is_an_ordinary_user() -> None:
    grant = PolicySet(
        [
            Policy(
                name="p",
                connection="prod",
                users=("alice",),
                allow=(impersonate("users"),),
            )
        ]
    )
    for user in (
        "system:serviceaccount:CI:builder",
        "system:serviceaccount:ci:builder:extra",
        "system:serviceaccount:ci:",
        "system:serviceaccount:" + "n" * 64 + ":builder",
    ):
        decision, identity = authorize_impersonation(
            grant, ALICE, "prod", ImpersonationRequest(user=user)
        )
        assert decision.allowed, user
        assert identity.groups == ("system:authenticated",)


def test_anonymous_gets_system_unauthenticated() -> None:
    decision, identity = authorize_impersonation(
        POLICIES, ALICE, "prod", ImpersonationRequest(user="system:anonymous")
    )
    assert decision.allowed
    assert identity.groups == ("system:unauthenticated",)


def test_an_explicit_unauthenticated_group_suppresses_system_authenticated() -> None:
    request = ImpersonationRequest(user="bob", groups=("system:unauthenticated",))
    decision, identity = authorize_impersonation(POLICIES, ALICE, "prod", request)
    assert decision.allowed
    assert identity.groups == ("system:unauthenticated",)


def test_a_deny_rule_refuses_and_is_marked_as_such() -> None:
    policies = PolicySet(
        [
            Policy(
                name="p",
                connection="prod",
                groups=("sre",),
                allow=(impersonate("*"), impersonate("userextras/*", api_group=AUTHN)),
                deny=(impersonate("groups", "system:masters"),),
            )
        ]
    )
    request = ImpersonationRequest(user="bob", groups=("system:masters",))
    decision, identity = authorize_impersonation(policies, ALICE, "prod", request)
    assert not decision.allowed
    assert decision.denied_by_rule
    assert decision.policy == "p"
    assert decision.reason == (
        'cannot impersonate group "system:masters": denied by policy "p" deny rule 1'
    )
    assert identity is ALICE


def test_grants_on_another_connection_or_to_someone_else_do_not_count() -> None:
    request = ImpersonationRequest(user="bob")
    decision, _ = authorize_impersonation(POLICIES, ALICE, "staging", request)
    assert not decision.allowed
    assert decision.reason == (
        'cannot impersonate user "bob": no policy for connection "staging" applies to'
        ' user "alice" or group "sre"'
    )
    decision, _ = authorize_impersonation(POLICIES, Identity(username="eve"), "prod", request)
    assert not decision.allowed


values = st.sampled_from(["bob", "devs", "admins", "view", "1234", "9999", ""])


@given(
    values.filter(bool),
    st.lists(values, max_size=3),
    st.one_of(st.none(), values),
    st.lists(st.tuples(st.sampled_from(["scopes", "team"]), st.lists(values, max_size=2))),
)
def test_allowed_exactly_when_every_value_is_granted(
    user: str, groups: list[str], uid: str | None, extra: list[tuple[str, list[str]]]
) -> None:
    request = ImpersonationRequest(
        user=user,
        groups=tuple(groups),
        uid=uid,
        extra=tuple((key, tuple(key_values)) for key, key_values in extra),
    )
    decision, identity = authorize_impersonation(POLICIES, ALICE, "prod", request)
    every_value_granted = (
        user == "bob"
        and all(group == "devs" for group in groups)
        and uid in (None, "1234")
        and all(key == "scopes" and value == "view" for key, vs in extra for value in vs)
    )
    assert decision.allowed is every_value_granted
    if decision.allowed:
        assert (identity.username, identity.uid) == (user, uid or "")
        assert identity.groups == (*groups, "system:authenticated")
        assert identity.extra == request.extra
    else:
        assert identity is ALICE
        assert decision.reason.startswith("cannot impersonate ")
