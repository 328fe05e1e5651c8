"""Whether a caller may act as someone else, decided as kube-apiserver's filter decides.

Follows WithImpersonation (k8s.io/apiserver, endpoints/filters/impersonation.go): every
value asked for is a separate check of the *actor's* policies on the connection with
verb `impersonate`, and the first refusal refuses the whole request:

- the user: resource `users` in API group "", named after the user; a valid service
  account username `system:serviceaccount:<ns>:<name>` is checked as resource
  `serviceaccounts` named `<name>` in namespace `<ns>` instead;
- each group: resource `groups` in API group "";
- each extra value: resource `userextras`, subresource `<key>`, API group
  `authentication.k8s.io`, named after the value;
- the uid: resource `uids` in API group `authentication.k8s.io`.

The identity acted as then gets kube's groups: the service account's groups when none
were asked for, and `system:authenticated` unless `system:authenticated` or
`system:unauthenticated` is already there (`system:unauthenticated` for
`system:anonymous`).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from policy.decision import Decision
from policy.engine import PolicySet
from policy.identity import Identity
from protocols.attributes import Attributes
from protocols.impersonation_headers import ImpersonationRequest

_VERB = "impersonate"
_AUTHENTICATION_GROUP = "authentication.k8s.io"
_ANONYMOUS = "system:anonymous"
_AUTHENTICATED = "system:authenticated"
_UNAUTHENTICATED = "system:unauthenticated"
_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_ALL_SERVICE_ACCOUNTS = "system:serviceaccounts"
# apimachinery's ValidateNamespaceName (a DNS-1123 label) and ValidateServiceAccountName
# (a DNS-1123 subdomain), which serviceaccount.SplitUsername applies.
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_NAMESPACE = re.compile(_DNS_LABEL)
_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_MAX_LABEL = 63
_MAX_SUBDOMAIN = 253


def authorize_impersonation(
    policies: PolicySet, actor: Identity, connection: str, request: ImpersonationRequest
) -> tuple[Decision, Identity]:
    """The decision on `request` and the identity to act as.

    On a refusal the decision names the value that was not granted and the identity is
    the actor, unchanged. When all is granted the decision cites the deciding rule of
    each value; it has no `binding_user_role`, because the request itself is decided
    next for the impersonated identity, and that decision names the role.
    """
    granted: list[tuple[str, Decision]] = []
    for what, attributes in _checks(request):
        decision = policies.decide(actor, connection, attributes)
        if not decision.allowed:
            return replace(decision, reason=f"cannot impersonate {what}: {decision.reason}"), actor
        granted.append((what, decision))
    # The user is always checked first, so its decision leads.
    user_decision = granted[0][1]
    allowed = Decision(
        allowed=True,
        policy=user_decision.policy,
        binding_user_role=None,
        reason="may impersonate "
        + ", ".join(f"{what} ({decision.reason})" for what, decision in granted),
        policies=user_decision.policies,
    )
    return allowed, _impersonated(request)


def _checks(request: ImpersonationRequest) -> list[tuple[str, Attributes]]:
    """(what is asked for, the attributes kube authorizes it with), in kube's order."""
    service_account = _split_service_account(request.user)
    if service_account:
        namespace, name = service_account
        checks = [
            (
                f"service account {_quote(f'{namespace}/{name}')}",
                _attributes("serviceaccounts", name, namespace=namespace),
            )
        ]
    else:
        checks = [(f"user {_quote(request.user)}", _attributes("users", request.user))]
    checks += [(f"group {_quote(group)}", _attributes("groups", group)) for group in request.groups]
    checks += [
        (
            f"user extra {_quote(key)} value {_quote(value)}",
            _attributes("userextras", value, api_group=_AUTHENTICATION_GROUP, subresource=key),
        )
        for key, values in request.extra
        for value in values
    ]
    if request.uid is not None:
        checks.append(
            (
                f"uid {_quote(request.uid)}",
                _attributes("uids", request.uid, api_group=_AUTHENTICATION_GROUP),
            )
        )
    return checks


def _attributes(
    resource: str,
    name: str,
    *,
    namespace: str = "",
    api_group: str = "",
    subresource: str = "",
) -> Attributes:
    return Attributes(
        is_resource_request=True,
        path="",
        verb=_VERB,
        api_group=api_group,
        api_version="v1",
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def _impersonated(request: ImpersonationRequest) -> Identity:
    groups = list(request.groups)
    service_account = _split_service_account(request.user)
    if service_account and not groups:
        namespace = service_account[0]
        groups = [_ALL_SERVICE_ACCOUNTS, f"{_ALL_SERVICE_ACCOUNTS}:{namespace}"]
    if request.user == _ANONYMOUS:
        if _UNAUTHENTICATED not in groups:
            groups.append(_UNAUTHENTICATED)
    elif _AUTHENTICATED not in groups and _UNAUTHENTICATED not in groups:
        groups.append(_AUTHENTICATED)
    return Identity(
        username=request.user,
        groups=tuple(groups),
        uid=request.uid or "",
        extra=request.extra,
    )


def _split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of a service account username, as serviceaccount.SplitUsername."""
    if not username.startswith(_SERVICE_ACCOUNT_PREFIX):
        return None
    parts = username[len(_SERVICE_ACCOUNT_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if len(namespace) > _MAX_LABEL or not _NAMESPACE.fullmatch(namespace):
        return None
    if len(name) > _MAX_SUBDOMAIN or not _SUBDOMAIN.fullmatch(name):
        return None
    return namespace, name


def _quote(text: str) -> str:
    """Quote a requested value for a reason string, escaping what could forge a log line."""
    return json.dumps(text, ensure_ascii=False)
