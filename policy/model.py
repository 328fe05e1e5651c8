"""The policy model: RBAC-shaped rules with namespaces, bound to groups or users."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """One RBAC-shaped rule. A resource rule names `resources`; a non-resource rule
    names `non_resource_urls`; never both. `*` matches anything in each field.

    `namespaces` applies to resource rules: `["*"]` matches every namespace and
    cluster-scoped requests; `[""]` matches cluster-scoped requests only.
    An empty `resource_names` matches every name.
    """

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ("*",)
    non_resource_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """Grants (and withholds) access to one connection for some groups and users."""

    name: str
    connection: str
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    binding_user_role: str | None = None
    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    # Secrets its callers read come back with every value replaced (see `Decision`).
    redact_secrets: bool = False
