"""What `check-config` prints: the configuration in words."""

from __future__ import annotations

import dataclasses

from l7proxy.config.settings import Config, Connection, Provider, StaticConnection
from policy.access import format_duration


def summarize(config: Config) -> str:
    """What `check-config` prints: what the gateway will do, in words. File paths only,
    never a file's contents, so the output is safe to paste into a ticket."""
    listen = config.listen
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    tls = (
        f"TLS (cert {listen.tls.cert_file}, key {listen.tls.key_file})"
        if listen.tls
        else "plain HTTP (no TLS: loopback only)"
    )
    lines = [
        f"configuration {config.source}: OK",
        f"listen: {host}:{listen.port}, {tls}",
        f"workers: {config.workers}",
        "routing: "
        + (
            f"by host <connection>{config.routing.host_suffix} (SNI, else Host), else by path"
            " /k8s/<connection>/"
            if config.routing.host_suffix
            else "by path /k8s/<connection>/"
        ),
        f"identity providers ({len(config.providers)}):",
    ]
    for provider in config.providers:
        claims = ", ".join(f"{name}={value!r}" for name, value in provider.required_claims)
        lines += [
            f"  {provider.name}: issuer {provider.issuer},"
            f" audiences {', '.join(provider.audiences)}",
            f"    user from claim {provider.username_claim!r}"
            f" (prefix {provider.username_prefix!r}),"
            f" groups from claim {provider.groups_claim!r} (prefix {provider.groups_prefix!r})",
            f"    algorithms {', '.join(provider.signing_algs)};"
            f" required claims: {claims or 'none'};"
            f" CA {provider.ca_file or 'system trust store'}",
            f"    {_describe_token_rules(provider)}",
        ]
    lines.append(f"connections ({len(config.connections)}):")
    for connection in config.connections:
        lines.append(f"  {connection.name}: {_describe_connection(connection)}")
    lines.append(f"policies ({len(config.policies)}):")
    for policy in config.policies:
        role = f" (role {policy.binding_user_role})" if policy.binding_user_role else ""
        lines.append(
            f"  {policy.name}: groups [{', '.join(policy.groups)}],"
            f" users [{', '.join(policy.users)}]"
            f" -> {policy.connection}{role}; {_count(len(policy.allow), 'allow rule')},"
            f" {_count(len(policy.deny), 'deny rule')}"
        )
    if not config.policies:
        lines.append("  none: every request is denied")
    audit = config.audit
    lines.append(f"audit: sink {audit.sink}; recordings {audit.recordings_dir or 'off'}")
    lines += _describe_living_access(config)
    limits = config.limits
    lines.append(
        "limits: "
        + ", ".join(
            f"{limit.name}={getattr(limits, limit.name)}" for limit in dataclasses.fields(limits)
        )
    )
    return "\n".join(lines)


def _describe_token_rules(provider: Provider) -> str:
    uid = f"uid from claim {provider.uid_claim!r}" if provider.uid_claim else "no uid"
    extra = ", ".join(f"{key} <- {claim!r}" for key, claim in provider.extra_claims)
    azp = provider.authorized_party
    age = provider.max_token_age
    return (
        f"{uid}; extra: {extra or 'none'};"
        f" azp: {repr(azp) if azp is not None else 'any'};"
        f" max token age: {f'{age:g}s' if age is not None else 'none'};"
        f" email_verified {'required' if provider.email_verified_required else 'ignored'};"
        f" system: names {'allowed' if provider.allow_system_prefix else 'refused'}"
    )


def _describe_connection(connection: Connection) -> str:
    if isinstance(connection, StaticConnection):
        credential = (
            f"bearer token from {connection.token_file}"
            if connection.token_file
            else f"client certificate {connection.client_cert_file}"
            f" (key {connection.client_key_file})"
        )
        ca = connection.certificate_authority_file or "system trust store"
        return f"static, server {connection.server}, CA {ca}, credential: {credential}"
    roles = ", ".join(f"{name} -> {arn}" for name, arn in connection.roles)
    server = connection.server or "from DescribeCluster"
    ca = "inline data" if connection.certificate_authority_data else "from DescribeCluster"
    sts = f", STS {connection.sts_endpoint}" if connection.sts_endpoint else ""
    eks = f", EKS API {connection.eks_endpoint}" if connection.eks_endpoint else ""
    session = f"sessions of {connection.session_duration}s"
    if connection.external_id is not None:
        session += " with an ExternalId"  # not a secret, but nothing a summary needs
    if connection.source_identity:
        session += ", SourceIdentity set"
    return (
        f"eks, cluster {connection.cluster_name} in {connection.region}, server {server},"
        f" CA {ca}{sts}{eks}, {session}, roles: {roles}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _describe_living_access(config: Config) -> list[str]:
    """The state store (a PostgreSQL URL is not shown: it may carry a password), the admins
    and the grants that access requests may ask for."""
    state = config.state
    where = (
        "PostgreSQL (URL not shown)"
        if state.postgres
        else f"SQLite {config.source.parent / state.sqlite}"
    )
    admins = config.admins
    lines = [
        f"state: {where}",
        f"admins: groups [{', '.join(admins.groups)}], users [{', '.join(admins.users)}]",
        f"access requests ({len(config.access_requests)}):",
    ]
    for grant in config.access_requests:
        asking, approving = grant.requesters, grant.approvers
        longest = format_duration(grant.max_duration)
        lines.append(
            f"  {grant.name}: policy {grant.policy} for up to {longest};"
            f" requested by groups [{', '.join(asking.groups)}], users [{', '.join(asking.users)}];"
            f" {_count(grant.min_approvals, 'approval')} from groups"
            f" [{', '.join(approving.groups)}], users [{', '.join(approving.users)}]"
        )
    return lines
