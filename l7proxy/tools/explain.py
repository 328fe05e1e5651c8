"""`l7proxy explain`: the decision a configuration makes for a user and a request, offline.

The same compiled policies and the same matcher the gateway uses; the request is given the
way `kubectl auth can-i` takes it (VERB RESOURCE [NAME], `-n` for the namespace), so a
policy author can check a change before deploying it.
"""

from __future__ import annotations

from dataclasses import dataclass

from l7proxy.config.settings import Config
from policy.access import AccessRequest, RequestState
from policy.decision import Decision
from policy.grants import GrantedPolicies
from policy.identity import Identity
from protocols.attributes import Attributes


class ExplainError(ValueError):
    """The question cannot be asked of this configuration."""


@dataclass(frozen=True, slots=True)
class Question:
    user: str
    groups: tuple[str, ...]
    verb: str
    resource: str  # "pods", "pods/log", "deployments.apps", "deployments.apps/scale" or "/path"
    name: str = ""
    namespace: str = ""
    connection: str = ""
    with_grants: tuple[str, ...] = ()  # access requests assumed approved for the user


def attributes_for(question: Question) -> Attributes:
    """RBAC's reading of can-i's RESOURCE: `resource[.group][/subresource]`, or a path."""
    if question.resource.startswith("/"):
        return Attributes(is_resource_request=False, path=question.resource, verb=question.verb)
    resource, _, subresource = question.resource.partition("/")
    resource, _, group = resource.partition(".")
    if not resource:
        raise ExplainError(f"cannot read the resource {question.resource!r}")
    return Attributes(
        is_resource_request=True,
        path="",
        verb=question.verb,
        api_group=group,
        namespace=question.namespace,
        resource=resource,
        subresource=subresource,
        name=question.name,
    )


def explain(config: Config, question: Question) -> tuple[str, Decision]:
    """The connection asked about and the decision on the question."""
    names = [c.name for c in config.connections]
    connection = question.connection or (names[0] if len(names) == 1 else "")
    if not connection:
        raise ExplainError(f"several connections: name one with --connection ({', '.join(names)})")
    if connection not in names:
        raise ExplainError(f"unknown connection {connection!r} (known: {', '.join(names)})")
    identity = Identity(username=question.user, groups=question.groups)
    grants = GrantedPolicies(config.policies, config.access_requests)
    policies = grants.with_requests(
        identity, [_assumed(config, identity, name) for name in question.with_grants]
    )
    decision = policies.decide(identity, connection, attributes_for(question))
    return connection, decision


def lifting_grant(config: Config, question: Question, connection: str) -> str | None:
    """The access request the user could file that would allow the question."""
    grants = GrantedPolicies(config.policies, config.access_requests)
    identity = Identity(username=question.user, groups=question.groups)
    return grants.lift(identity, connection, attributes_for(question))


def _assumed(config: Config, identity: Identity, name: str) -> AccessRequest:
    """`--with-grant NAME`: an approved request of `identity` for the grant, as if now."""
    grant = next((g for g in config.access_requests if g.name == name), None)
    if grant is None:
        known = ", ".join(g.name for g in config.access_requests) or "none are configured"
        raise ExplainError(f"unknown grant {name!r} (known: {known})")
    if not grant.requesters.includes(identity):
        raise ExplainError(f"{identity.username} may not request grant {name!r}: not a requester")
    return AccessRequest(
        id=f"assumed by --with-grant {name}",
        grant=name,
        requester=identity.username,
        reason="explain",
        duration=grant.max_duration,
        state=RequestState.APPROVED,
        created=0.0,
        expires=float("inf"),
    )
