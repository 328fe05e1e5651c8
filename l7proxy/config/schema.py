"""The configuration file's schema as pydantic models, and their translation into settings.

The models are the one description of `gateway.yaml`: the loader validates a file with them
and `l7proxy config-schema` publishes them as JSON Schema. Each model turns itself into the
frozen `settings` value the gateway uses, so nothing downstream depends on pydantic.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from l7proxy.config import fields as f
from l7proxy.config.settings import (
    Audit,
    Config,
    EksConnection,
    Limits,
    Listen,
    Provider,
    Routing,
    StateStore,
    StaticConnection,
    TLSFiles,
)
from policy.access import Grant, Subjects, parse_duration
from policy.model import Policy, Rule

_LIMITS = Limits()
_PROVIDER = Provider(name="", issuer="", audiences=())


class Section(BaseModel):
    """A mapping of the file: known keys only, required ones present, null means default."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    what: ClassVar[str] = ""  # names the mapping in "unknown key for ..." messages

    @model_validator(mode="before")
    @classmethod
    def known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise f.got("a mapping")
        known = cls.model_fields
        for name in data:
            if name not in known:
                where = f" for {cls.what}" if cls.what else ""
                raise f.fail(
                    f"unknown key{where} (expected one of: {', '.join(known)})",
                    at=(name,),
                    line="key",
                )
        for name, field in known.items():
            if field.is_required() and name not in data:
                raise f.fail("missing required key", at=(name,), line="parent")
        return {k: v for k, v in data.items() if v is not None or known[k].is_required()}


class TLSModel(Section):
    cert_file: f.File
    key_file: f.File


class ListenModel(Section):
    address: f.Address
    tls: TLSModel | None = None

    @model_validator(mode="after")
    def tls_off_loopback(self) -> ListenModel:
        host, _ = f.split_address(self.address)
        address = f.ip(host)
        loopback = host == "localhost" or (address is not None and address.is_loopback)
        if self.tls is None and not loopback:
            raise f.fail(
                f"required when listening off loopback (address {self.address!r}); "
                "plain HTTP is only for 127.0.0.1, ::1 or localhost",
                at=("tls",),
                line="parent",
            )
        return self

    def settings(self) -> Listen:
        host, port = f.split_address(self.address)
        if self.tls is None:
            return Listen(host=host, port=port, tls=None)
        files = TLSFiles(cert_file=Path(self.tls.cert_file), key_file=Path(self.tls.key_file))
        return Listen(host=host, port=port, tls=files)


class ProviderModel(Section):
    name: f.Text
    issuer: f.HttpsUrl
    audiences: f.SomeTexts
    username_claim: f.Text = _PROVIDER.username_claim
    username_prefix: f.AnyText = _PROVIDER.username_prefix
    groups_claim: f.Text = _PROVIDER.groups_claim
    groups_prefix: f.AnyText = _PROVIDER.groups_prefix
    required_claims: f.Claims = {}
    signing_algs: f.SigningAlgs = _PROVIDER.signing_algs
    ca_file: f.File | None = None
    authorized_party: f.Text | None = None
    max_token_age: f.Seconds | None = None
    email_verified_required: f.Flag = _PROVIDER.email_verified_required
    # "" is meaningful: no uid at all (kube's default when no uid claim is mapped).
    uid_claim: f.AnyText = _PROVIDER.uid_claim
    extra_claims: f.ExtraClaims = {}
    allow_system_prefix: f.Flag = _PROVIDER.allow_system_prefix

    def settings(self) -> Provider:
        values = self.model_dump()
        return Provider(
            **values
            | {
                "required_claims": tuple(self.required_claims.items()),
                "extra_claims": tuple(self.extra_claims.items()),
                "ca_file": _path(self.ca_file),
            }
        )


class IdentityModel(Section):
    providers: Annotated[
        f.SomeOf[ProviderModel],
        f.unique("provider name", "name"),
        f.unique("issuer", "issuer"),
    ]


class StaticModel(Section):
    what = "a static connection"
    name: f.ConnectionName
    type: Literal["static"]
    server: f.HttpsUrl
    certificate_authority_file: f.File | None = None
    token_file: f.File | None = None
    client_cert_file: f.File | None = None
    client_key_file: f.File | None = None

    @model_validator(mode="after")
    def one_credential(self) -> StaticModel:
        cert, key = self.client_cert_file, self.client_key_file
        if self.token_file is not None and (cert is not None or key is not None):
            raise f.fail(
                "a static connection has exactly one credential: token_file, or "
                "client_cert_file with client_key_file, not both",
                at=("token_file",),
            )
        if cert is not None and key is None:
            raise f.fail(
                "missing: client_cert_file needs it", at=("client_key_file",), line="parent"
            )
        if key is not None and cert is None:
            raise f.fail(
                "missing: client_key_file needs it", at=("client_cert_file",), line="parent"
            )
        if self.token_file is None and cert is None:
            raise f.fail(
                "a static connection needs one credential: token_file, or client_cert_file "
                "with client_key_file"
            )
        return self

    def settings(self) -> StaticConnection:
        paths = {
            name: _path(value)
            for name, value in self.model_dump(exclude={"name", "type", "server"}).items()
        }
        return StaticConnection(name=self.name, server=self.server, **paths)


class EksModel(Section):
    what = "an eks connection"
    name: f.ConnectionName
    type: Literal["eks"]
    cluster_name: Annotated[
        f.Text,
        f.matching(
            r"[0-9A-Za-z][-_0-9A-Za-z]{0,99}",
            "an EKS cluster name (letters, digits, '-' and '_', at most 100)",
        ),
    ]
    region: Annotated[f.Text, f.matching(r"[a-z]{2}(-[a-z]+)+-[0-9]+", "an AWS region")]
    server: f.HttpsUrl | None = None
    certificate_authority_data: f.Base64 | None = None
    roles: f.Roles
    sts_endpoint: f.HttpUrl | None = None
    eks_endpoint: f.HttpUrl | None = None
    external_id: (
        Annotated[
            f.Text,
            f.matching(
                r"[\w+=,.@:/-]{2,1224}",  # AssumeRole's ExternalId
                "an ExternalId of 2-1224 letters, digits and +=,.@:/-_ (quote a numeric one)",
                re.ASCII,
            ),
        ]
        | None
    ) = None
    source_identity: f.Flag = False
    session_duration: f.SessionSeconds = 3600

    def settings(self) -> EksConnection:
        values = self.model_dump(exclude={"type"})
        return EksConnection(**values | {"roles": tuple(self.roles.items())})


ConnectionModel = Annotated[StaticModel | EksModel, Field(discriminator="type")]


class RuleModel(Section):
    verbs: f.SomeTexts
    api_groups: f.SomeTexts | None = None
    resources: f.SomeTexts | None = None
    resource_names: f.Texts = ()
    namespaces: f.SomeTexts = ("*",)
    non_resource_urls: f.NonResourceUrls | None = None

    @model_validator(mode="after")
    def one_kind(self) -> RuleModel:
        if self.resources is not None and self.non_resource_urls is not None:
            raise f.fail("names both resources and non_resource_urls; a rule is one or the other")
        if self.non_resource_urls is not None:
            for name in ("api_groups", "resource_names", "namespaces"):
                if name in self.model_fields_set:
                    raise f.fail(
                        "not allowed on a non-resource rule (one with non_resource_urls)",
                        at=(name,),
                    )
        elif self.resources is None:
            raise f.fail("names neither resources nor non_resource_urls; expected one")
        elif self.api_groups is None:
            raise f.fail(
                'missing required key for a resource rule ([""] is the core group, ["*"] all)',
                at=("api_groups",),
                line="parent",
            )
        return self

    def settings(self) -> Rule:
        if self.non_resource_urls is not None:
            return Rule(verbs=self.verbs, non_resource_urls=self.non_resource_urls)
        return Rule(
            verbs=self.verbs,
            api_groups=self.api_groups or (),
            resources=self.resources or (),
            resource_names=self.resource_names,
            namespaces=self.namespaces,
        )


class PolicyModel(Section):
    name: f.Text
    groups: f.Texts = ()
    users: f.Texts = ()
    connection: f.Text
    binding_user_role: f.Text | None = None
    allow: f.ListOf[RuleModel] = ()
    deny: f.ListOf[RuleModel] = ()
    # Secrets its callers read come back with every value replaced (see Decision).
    redact_secrets: f.Flag = False

    @model_validator(mode="after")
    def applies_to_someone(self) -> PolicyModel:
        if not self.groups and not self.users:
            raise f.fail("applies to no one: expected non-empty groups or users")
        return self

    def settings(self) -> Policy:
        return Policy(
            name=self.name,
            connection=self.connection,
            groups=self.groups,
            users=self.users,
            binding_user_role=self.binding_user_role,
            allow=tuple(rule.settings() for rule in self.allow),
            deny=tuple(rule.settings() for rule in self.deny),
            redact_secrets=self.redact_secrets,
        )


class AuditModel(Section):
    sink: f.Sink = "stdout"  # "stdout" or a file path, relative to the configuration file
    recordings_dir: f.RelativePath | None = None

    def settings(self) -> Audit:
        recordings = None if self.recordings_dir is None else Path(self.recordings_dir)
        return Audit(sink=self.sink, recordings_dir=recordings)


class LimitsModel(Section):
    max_header_bytes: f.PositiveInt = _LIMITS.max_header_bytes
    max_url_bytes: f.PositiveInt = _LIMITS.max_url_bytes
    max_concurrent_streams: f.PositiveInt = _LIMITS.max_concurrent_streams
    header_read_timeout: f.Seconds = _LIMITS.header_read_timeout
    idle_timeout: f.Seconds = _LIMITS.idle_timeout
    upstream_connect_timeout: f.Seconds = _LIMITS.upstream_connect_timeout
    upstream_response_timeout: f.Seconds = _LIMITS.upstream_response_timeout
    max_stream_duration: f.Bound = _LIMITS.max_stream_duration
    token_expiry_grace: f.Bound = _LIMITS.token_expiry_grace
    upgrade_idle_timeout: f.Seconds = _LIMITS.upgrade_idle_timeout
    shutdown_grace: f.Seconds = _LIMITS.shutdown_grace

    def settings(self) -> Limits:
        return Limits(**self.model_dump())


class RoutingModel(Section):
    host_suffix: f.HostSuffix = ""  # "": route by path only

    def settings(self) -> Routing:
        return Routing(host_suffix=self.host_suffix)


class StateModel(Section):
    sqlite: f.Text = str(StateStore().sqlite)  # relative to the configuration file
    postgres: f.PostgresUrl | None = None  # several replicas share one database

    @model_validator(mode="after")
    def one_store(self) -> StateModel:
        if self.postgres is not None and "sqlite" in self.model_fields_set:
            raise f.fail("names both sqlite and postgres; the state lives in one store")
        return self

    def settings(self) -> StateStore:
        return StateStore(sqlite=Path(self.sqlite), postgres=self.postgres)


class SubjectsModel(Section):
    users: f.Texts = ()
    groups: f.Texts = ()

    def settings(self) -> Subjects:
        return Subjects(users=self.users, groups=self.groups)


class SomeoneModel(SubjectsModel):
    @model_validator(mode="after")
    def names_someone(self) -> SomeoneModel:
        if not self.users and not self.groups:
            raise f.fail("names no one: expected non-empty users or groups")
        return self


class GrantModel(Section):
    name: f.Text
    policy: f.Text
    requesters: SomeoneModel
    approvers: SomeoneModel
    min_approvals: f.PositiveInt = 1
    max_duration: f.Duration = "1h"

    def settings(self) -> Grant:
        return Grant(
            name=self.name,
            policy=self.policy,
            requesters=self.requesters.settings(),
            approvers=self.approvers.settings(),
            min_approvals=self.min_approvals,
            max_duration=parse_duration(self.max_duration),
        )


class ConfigModel(Section):
    """`gateway.yaml`."""

    model_config = ConfigDict(title="l7proxy gateway configuration")
    listen: ListenModel
    workers: f.PositiveInt = Field(default_factory=lambda: os.cpu_count() or 1)
    identity: IdentityModel
    connections: Annotated[f.SomeOf[ConnectionModel], f.unique("connection name", "name")]
    policies: Annotated[f.ListOf[PolicyModel], f.unique("policy name", "name")]
    audit: AuditModel = AuditModel()
    limits: LimitsModel = LimitsModel()
    routing: RoutingModel = RoutingModel()
    state: StateModel = StateModel()
    admins: SubjectsModel = SubjectsModel()  # may place and lift locks
    access_requests: Annotated[f.ListOf[GrantModel], f.unique("grant name", "name")] = ()

    @model_validator(mode="after")
    def grants_name_known_policies(self) -> ConfigModel:
        policies = [policy.name for policy in self.policies]
        for index, grant in enumerate(self.access_requests):
            if grant.policy not in policies:
                raise f.fail(
                    f"unknown policy {grant.policy!r} (known: {', '.join(policies)})",
                    at=("access_requests", index, "policy"),
                )
        return self

    @model_validator(mode="after")
    def policies_name_known_connections(self) -> ConfigModel:
        connections = {connection.name: connection for connection in self.connections}
        for index, policy in enumerate(self.policies):
            at = ("policies", index)
            connection = connections.get(policy.connection)
            if connection is None:
                raise f.fail(
                    f"unknown connection {policy.connection!r} (known: {', '.join(connections)})",
                    at=(*at, "connection"),
                )
            _check_role(policy, connection, at)
        return self

    def settings(self, source: str) -> Config:
        return Config(
            source=Path(source),
            listen=self.listen.settings(),
            workers=self.workers,
            providers=tuple(provider.settings() for provider in self.identity.providers),
            connections=tuple(connection.settings() for connection in self.connections),
            policies=tuple(policy.settings() for policy in self.policies),
            audit=self.audit.settings(),
            limits=self.limits.settings(),
            routing=self.routing.settings(),
            state=self.state.settings(),
            admins=self.admins.settings(),
            access_requests=tuple(grant.settings() for grant in self.access_requests),
        )


def _check_role(policy: PolicyModel, connection: StaticModel | EksModel, at: f.Loc) -> None:
    """The connection decides: an EKS one has several roles to choose from, a static one
    has only its credential, so naming a role there would suggest a choice that is not."""
    role = policy.binding_user_role
    where = (*at, "binding_user_role")
    if isinstance(connection, StaticModel):
        if role is not None:
            raise f.fail(
                f"not allowed for static connection {connection.name!r}: its one "
                "credential (token or client certificate) is the only one it uses",
                at=where,
            )
        return
    known = ", ".join(connection.roles)
    if role is None:
        raise f.fail(
            f"required for eks connection {connection.name!r} (one of: {known})",
            at=where,
            line="parent",
        )
    if role not in connection.roles:
        raise f.fail(
            f"unknown role {role!r} for connection {connection.name!r} (known: {known})",
            at=where,
        )


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def json_schema() -> dict[str, Any]:
    """What `l7proxy config-schema` prints: editors validate `gateway.yaml` with it."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema"
    } | ConfigModel.model_json_schema()
