"""Grants on top of standing policies: who they add a policy for, and which 403 they lift."""

from __future__ import annotations

from policy.access import AccessRequest, Grant, RequestState, Subjects
from policy.grants import GrantedPolicies, granted_by
from policy.identity import Identity
from policy.model import Policy, Rule
from protocols.attributes import Attributes

READ = Policy(
    name="read",
    connection="prod",
    groups=("agents",),
    allow=(Rule(verbs=("get", "list"), api_groups=("*",), resources=("*",)),),
    deny=(Rule(verbs=("*",), api_groups=("",), resources=("secrets",)),),
)
WRITE = Policy(
    name="write",
    connection="prod",
    groups=("admins",),
    allow=(Rule(verbs=("*",), api_groups=("*",), resources=("*",)),),
)
GRANT = Grant(
    name="prod-write",
    policy="write",
    requesters=Subjects(groups=("agents",)),
    approvers=Subjects(groups=("leads",)),
)
AGENT = Identity(username="agent-7", groups=("agents",))
OTHER = Identity(username="agent-8", groups=("agents",))
CREATE = Attributes(
    is_resource_request=True,
    path="/api/v1/namespaces/default/configmaps",
    verb="create",
    api_version="v1",
    namespace="default",
    resource="configmaps",
)


def approved(requester: str, request_id: str = "r1", grant: str = "prod-write") -> AccessRequest:
    return AccessRequest(
        id=request_id,
        grant=grant,
        requester=requester,
        reason="fix",
        duration=3600,
        state=RequestState.APPROVED,
        created=0,
        expires=3600,
    )


def test_an_approved_request_adds_its_policy_for_the_requester_and_names_the_request() -> None:
    grants = GrantedPolicies([READ, WRITE], [GRANT])
    assert not grants.standing.decide(AGENT, "prod", CREATE).allowed
    decision = grants.with_requests(AGENT, [approved("agent-7")]).decide(AGENT, "prod", CREATE)
    assert decision.allowed
    assert granted_by(decision.policy) == ("write", "r1")


def test_the_added_policy_is_for_the_requester_alone() -> None:
    granted = GrantedPolicies([READ, WRITE], [GRANT]).with_requests(AGENT, [approved("agent-7")])
    assert not granted.decide(OTHER, "prod", CREATE).allowed


def test_a_deny_rule_of_a_standing_policy_still_wins_over_a_grant() -> None:
    granted = GrantedPolicies([READ, WRITE], [GRANT]).with_requests(AGENT, [approved("agent-7")])
    secrets = Attributes(
        is_resource_request=True, path="/api/v1/secrets", verb="list", resource="secrets"
    )
    assert not granted.decide(AGENT, "prod", secrets).allowed


def test_without_requests_or_with_unknown_grants_the_standing_set_decides() -> None:
    grants = GrantedPolicies([READ, WRITE], [GRANT])
    assert grants.with_requests(AGENT, []) is grants.standing
    assert grants.with_requests(AGENT, [approved("agent-7", grant="gone")]) is grants.standing


def test_the_same_requests_compile_once() -> None:
    grants = GrantedPolicies([READ, WRITE], [GRANT])
    first = grants.with_requests(AGENT, [approved("agent-7")])
    assert grants.with_requests(AGENT, [approved("agent-7")]) is first
    assert grants.with_requests(AGENT, [approved("agent-7", "r2")]) is not first


def test_lift_names_a_grant_the_caller_may_request_whose_policy_allows_it() -> None:
    grants = GrantedPolicies([READ, WRITE], [GRANT])
    assert grants.lift(AGENT, "prod", CREATE) == "prod-write"
    assert grants.lift(Identity(username="x", groups=()), "prod", CREATE) is None  # no requester
    assert grants.lift(AGENT, "dev", CREATE) is None  # the policy is for another connection


def test_a_standing_decision_has_no_request() -> None:
    assert granted_by("read") == ("read", "")
