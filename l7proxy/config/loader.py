"""Load the YAML configuration once, validate all of it, and say exactly where it is wrong.

The loader walks yaml's composed node tree rather than constructed Python values, so every
error carries the line of the offending node: `gw.yaml:14: connections[1].server: ...`.
Nothing downstream re-checks the values: the frozen `settings` types it returns are trusted.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import math
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from l7proxy.config.settings import (
    Audit,
    Config,
    Connection,
    EksConnection,
    Limits,
    Listen,
    Provider,
    Routing,
    StaticConnection,
    TLSFiles,
)
from policy.model import Policy, Rule

T = TypeVar("T")

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"

# Asymmetric algorithms only: a token signed with a shared secret could have been minted by
# anyone holding that secret, and `none` is not a signature at all.
SIGNING_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_NEVER_ALGS = frozenset({"NONE", "HS256", "HS384", "HS512"})

_TOP_KEYS = (
    "listen",
    "workers",
    "identity",
    "connections",
    "policies",
    "audit",
    "limits",
    "routing",
)
_PROVIDER_KEYS = (
    "name",
    "issuer",
    "audiences",
    "username_claim",
    "username_prefix",
    "groups_claim",
    "groups_prefix",
    "required_claims",
    "signing_algs",
    "ca_file",
    "authorized_party",
    "max_token_age",
    "email_verified_required",
    "uid_claim",
    "extra_claims",
    "allow_system_prefix",
)
_STATIC_KEYS = (
    "name",
    "type",
    "server",
    "certificate_authority_file",
    "token_file",
    "client_cert_file",
    "client_key_file",
)
_EKS_KEYS = (
    "name",
    "type",
    "cluster_name",
    "region",
    "server",
    "certificate_authority_data",
    "roles",
    "sts_endpoint",
    "eks_endpoint",
    "external_id",
    "source_identity",
    "session_duration",
)
_POLICY_KEYS = ("name", "groups", "users", "connection", "binding_user_role", "allow", "deny")
_RULE_KEYS = (
    "verbs",
    "api_groups",
    "resources",
    "resource_names",
    "namespaces",
    "non_resource_urls",
)
_RESOURCE_ONLY_KEYS = ("api_groups", "resource_names", "namespaces")

# Connection names appear in URLs (/k8s/<name>/), so they are DNS labels.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*"
)
# `routing.host_suffix`: a dot, then a DNS name in lowercase (SNI and Host compare so).
_HOST_SUFFIX = re.compile(r"(?=.{2,253}\Z)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+")
# An extra key as kube-apiserver requires it: a lowercase domain-prefixed path, e.g.
# example.com/tenant (k8s.io/apiserver validation: IsDomainPrefixedPath, lowercase).
_EXTRA_KEY = re.compile(
    r"(?=[^/]{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[a-z0-9/\-._~%!$&'()*+,;=:]+"
)
# Kubernetes keeps these domains (and their subdomains) for its own extra keys.
_RESERVED_EXTRA_DOMAINS = ("kubernetes.io", "k8s.io")
_EKS_CLUSTER_NAME = re.compile(r"[0-9A-Za-z][-_0-9A-Za-z]{0,99}")
_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")
_ROLE_ARN = re.compile(r"arn:aws[-a-z]*:iam::[0-9]{12}:role/[-\w+=,.@/]+", re.ASCII)
# AssumeRole's ExternalId: 2-1224 characters of [\w+=,.@:/-].
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
# AssumeRole's DurationSeconds: 15 minutes to 12 hours (the role's own maximum may be lower).
SESSION_DURATION_MIN = 900
SESSION_DURATION_MAX = 43200

_CONSTRUCTOR = SafeConstructor()


class ConfigError(Exception):
    """A configuration mistake, located (`file:line: key.path: what`) so it can be fixed
    without reading a traceback."""

    def __init__(self, file: str, message: str, *, line: int | None = None, key: str = "") -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def load_config(path: Path) -> Config:
    """Read, parse and validate `path`; every mistake is a `ConfigError`, never a traceback."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, "configuration file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(
            name, f"cannot read the configuration file: {exc.strerror or exc}"
        ) from None
    return _Reader(path).config(_compose(name, text), Path(os.path.abspath(path)))


def _compose(name: str, text: str) -> Node | None:
    """The node tree (with line marks), or yaml's own complaint at yaml's own line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context
        line = None if mark is None else mark.line + 1
        raise ConfigError(name, f"invalid YAML: {problem}", line=line) from None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError(name, message, line=line) from None
    except RecursionError:
        raise ConfigError(name, "invalid YAML: nested too deeply") from None


@dataclasses.dataclass(slots=True)
class _Fields:
    """A mapping node's entries by key name, with the key path they live under."""

    node: MappingNode
    path: str
    values: dict[str, Node]

    def key(self, name: str) -> str:
        return _join(self.path, name)

    def get(self, name: str) -> Node | None:
        """The value node, or None when the key is absent or explicitly null."""
        value = self.values.get(name)
        return None if value is None or _is_null(value) else value


class _Reader:
    """Walks one file's node tree; knows the file's name (for messages) and its directory
    (relative paths in the file are relative to it, not to the working directory)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.base = Path(os.path.abspath(path)).parent

    def fail(self, node: Node, key: str, message: str) -> NoReturn:
        raise ConfigError(self.name, message, line=node.start_mark.line + 1, key=key)

    # --- the schema ---------------------------------------------------------------------

    def config(self, root: Node | None, source: Path) -> Config:
        if root is None:
            raise ConfigError(
                self.name,
                "the file is empty; expected a mapping with listen, identity, connections "
                "and policies",
                line=1,
            )
        top = self.fields(root, "", _TOP_KEYS, ("listen", "identity", "connections", "policies"))
        listen = self.listen(top.values["listen"], top.key("listen"))
        workers = self.optional(top, "workers", self.positive_int, os.cpu_count() or 1)
        identity = self.fields(top.values["identity"], "identity", ("providers",), ("providers",))
        providers = self.providers(identity.values["providers"], identity.key("providers"))
        connections = self.connections(top.values["connections"], top.key("connections"))
        policies = self.policies(top.values["policies"], top.key("policies"), connections)
        return Config(
            source=source,
            listen=listen,
            workers=workers,
            providers=providers,
            connections=connections,
            policies=policies,
            audit=self.optional(top, "audit", self.audit, Audit()),
            limits=self.optional(top, "limits", self.limits, Limits()),
            routing=self.optional(top, "routing", self.routing, Routing()),
        )

    def listen(self, node: Node, key: str) -> Listen:
        fields = self.fields(node, key, ("address", "tls"), ("address",))
        address = fields.values["address"]
        host, port = self.address(address, fields.key("address"))
        tls = fields.get("tls")
        if tls is None:
            if not _is_loopback(host):
                self.fail(
                    fields.node,
                    fields.key("tls"),
                    f"required when listening off loopback (address {address.value!r}); "
                    "plain HTTP is only for 127.0.0.1, ::1 or localhost",
                )
            return Listen(host=host, port=port, tls=None)
        files = self.fields(
            tls, fields.key("tls"), ("cert_file", "key_file"), ("cert_file", "key_file")
        )
        return Listen(
            host=host,
            port=port,
            tls=TLSFiles(
                cert_file=self.file(files.values["cert_file"], files.key("cert_file")),
                key_file=self.file(files.values["key_file"], files.key("key_file")),
            ),
        )

    def address(self, node: Node, key: str) -> tuple[str, int]:
        text = self.string(node, key)
        host, colon, port = text.rpartition(":")
        if not colon or not host:
            self.fail(node, key, f'expected "host:port" (IPv6 as "[::1]:8443"), got {text!r}')
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if not isinstance(_ip(host), ipaddress.IPv6Address):
                self.fail(node, key, f"expected an IPv6 address in brackets, got {text!r}")
        elif ":" in host:
            self.fail(
                node, key, f'an IPv6 address needs brackets, as in "[::1]:8443"; got {text!r}'
            )
        elif _ip(host) is None and not _HOSTNAME.fullmatch(host):
            self.fail(
                node, key, f"expected a host name or IP address before the port, got {text!r}"
            )
        if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
            self.fail(node, key, f"expected a port number 0-65535 after the host, got {text!r}")
        return host, int(port)

    def providers(self, node: Node, key: str) -> tuple[Provider, ...]:
        providers: list[Provider] = []
        names: dict[str, int] = {}
        issuers: dict[str, int] = {}
        for item_key, item in self.items(node, key, nonempty=True):
            fields = self.fields(item, item_key, _PROVIDER_KEYS, ("name", "issuer", "audiences"))
            provider = self.provider(fields)
            self.unique(
                names, provider.name, fields.values["name"], fields.key("name"), "provider name"
            )
            self.unique(
                issuers, provider.issuer, fields.values["issuer"], fields.key("issuer"), "issuer"
            )
            providers.append(provider)
        return tuple(providers)

    def provider(self, fields: _Fields) -> Provider:
        return Provider(
            name=self.string(fields.values["name"], fields.key("name")),
            issuer=self.https_url(fields.values["issuer"], fields.key("issuer")),
            audiences=self.strings(
                fields.values["audiences"], fields.key("audiences"), nonempty=True
            ),
            username_claim=self.optional(fields, "username_claim", self.string, "sub"),
            username_prefix=self.optional(fields, "username_prefix", self.any_string, ""),
            groups_claim=self.optional(fields, "groups_claim", self.string, "groups"),
            groups_prefix=self.optional(fields, "groups_prefix", self.any_string, ""),
            required_claims=self.optional(fields, "required_claims", self.claims, ()),
            signing_algs=self.optional(
                fields, "signing_algs", self.signing_algs, ("RS256", "ES256")
            ),
            ca_file=self.optional(fields, "ca_file", self.file, None),
            authorized_party=self.optional(fields, "authorized_party", self.string, None),
            max_token_age=self.optional(fields, "max_token_age", self.positive_number, None),
            email_verified_required=self.optional(
                fields, "email_verified_required", self.boolean, True
            ),
            # "" is meaningful: no uid at all (kube's default when no uid claim is mapped).
            uid_claim=self.optional(fields, "uid_claim", self.any_string, "sub"),
            extra_claims=self.optional(fields, "extra_claims", self.extra_claims, ()),
            allow_system_prefix=self.optional(fields, "allow_system_prefix", self.boolean, False),
        )

    def extra_claims(self, node: Node, key: str) -> tuple[tuple[str, str], ...]:
        """extra key -> claim path; keys checked as kube-apiserver checks its extra mappings."""
        extra = []
        for name, name_node, value, value_key in self.entries(node, key):
            if not _EXTRA_KEY.fullmatch(name):
                self.fail(
                    name_node,
                    value_key,
                    "expected an extra key that is a lowercase domain-prefixed path, "
                    f"e.g. example.com/tenant, got {name!r}",
                )
            domain = name.partition("/")[0]
            if any(domain == d or domain.endswith("." + d) for d in _RESERVED_EXTRA_DOMAINS):
                self.fail(
                    name_node,
                    value_key,
                    f"the domain {domain!r} is reserved for Kubernetes; use your own domain",
                )
            extra.append((name, self.string(value, value_key)))
        return tuple(extra)

    def claims(self, node: Node, key: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            (name, self.any_string(value, value_key))
            for name, _, value, value_key in self.entries(node, key)
        )

    def signing_algs(self, node: Node, key: str) -> tuple[str, ...]:
        algs = self.strings(node, key, nonempty=True)
        expected = f"expected some of: {', '.join(SIGNING_ALGS)}"
        for index, alg in enumerate(algs):
            if alg.upper() in _NEVER_ALGS:
                self.fail(
                    node.value[index],
                    f"{key}[{index}]",
                    f"{alg!r} is never accepted: `none` and HMAC (HS256, HS384, HS512) tokens "
                    f"are refused ({expected})",
                )
            if alg not in SIGNING_ALGS:
                self.fail(
                    node.value[index], f"{key}[{index}]", f"unknown algorithm {alg!r} ({expected})"
                )
        return algs

    def connections(self, node: Node, key: str) -> tuple[Connection, ...]:
        connections: list[Connection] = []
        names: dict[str, int] = {}
        for item_key, item in self.items(node, key, nonempty=True):
            fields, connection = self.connection(item, item_key)
            name = fields.values["name"]
            self.unique(names, connection.name, name, fields.key("name"), "connection name")
            connections.append(connection)
        return tuple(connections)

    def connection(self, node: Node, key: str) -> tuple[_Fields, Connection]:
        """The `type` decides which keys the rest of the mapping may have."""
        mapping = self.mapping(node, key)
        kind = next(
            (value for name, value in mapping.value if name.tag == _STR and name.value == "type"),
            None,
        )
        if kind is None:
            self.fail(node, _join(key, "type"), "missing required key (static or eks)")
        match self.string(kind, _join(key, "type")):
            case "static":
                required: tuple[str, ...] = ("name", "type", "server")
                fields = self.fields(node, key, _STATIC_KEYS, required, what="a static connection")
                return fields, self.static_connection(fields)
            case "eks":
                required = ("name", "type", "cluster_name", "region", "roles")
                fields = self.fields(node, key, _EKS_KEYS, required, what="an eks connection")
                return fields, self.eks_connection(fields)
            case other:
                self.fail(kind, _join(key, "type"), f"expected static or eks, got {other!r}")

    def connection_name(self, node: Node, key: str) -> str:
        name = self.string(node, key)
        if not _DNS_LABEL.fullmatch(name):
            self.fail(
                node,
                key,
                "expected a DNS label (lowercase letters, digits and '-', at most 63, starting "
                f"and ending with a letter or digit: it appears in /k8s/<name>/), got {name!r}",
            )
        return name

    def static_connection(self, fields: _Fields) -> StaticConnection:
        node = fields.node
        name = self.connection_name(fields.values["name"], fields.key("name"))
        server = self.https_url(fields.values["server"], fields.key("server"))
        token = fields.get("token_file")
        cert = fields.get("client_cert_file")
        client_key = fields.get("client_key_file")
        if token is not None and (cert is not None or client_key is not None):
            self.fail(
                token,
                fields.key("token_file"),
                "a static connection has exactly one credential: token_file, or "
                "client_cert_file with client_key_file, not both",
            )
        if cert is not None and client_key is None:
            self.fail(node, fields.key("client_key_file"), "missing: client_cert_file needs it")
        if client_key is not None and cert is None:
            self.fail(node, fields.key("client_cert_file"), "missing: client_key_file needs it")
        if token is None and cert is None:
            self.fail(
                node,
                fields.path,
                "a static connection needs one credential: token_file, or client_cert_file "
                "with client_key_file",
            )
        return StaticConnection(
            name=name,
            server=server,
            certificate_authority_file=self.optional(
                fields, "certificate_authority_file", self.file, None
            ),
            token_file=self.optional(fields, "token_file", self.file, None),
            client_cert_file=self.optional(fields, "client_cert_file", self.file, None),
            client_key_file=self.optional(fields, "client_key_file", self.file, None),
        )

    def eks_connection(self, fields: _Fields) -> EksConnection:
        return EksConnection(
            name=self.connection_name(fields.values["name"], fields.key("name")),
            cluster_name=self.matching(
                fields.values["cluster_name"],
                fields.key("cluster_name"),
                _EKS_CLUSTER_NAME,
                "an EKS cluster name (letters, digits, '-' and '_', at most 100)",
            ),
            region=self.matching(
                fields.values["region"], fields.key("region"), _AWS_REGION, "an AWS region"
            ),
            roles=self.roles(fields.values["roles"], fields.key("roles")),
            server=self.optional(fields, "server", self.https_url, None),
            certificate_authority_data=self.optional(
                fields, "certificate_authority_data", self.base64, None
            ),
            sts_endpoint=self.optional(fields, "sts_endpoint", self.http_url, None),
            eks_endpoint=self.optional(fields, "eks_endpoint", self.http_url, None),
            external_id=self.optional(fields, "external_id", self.external_id, None),
            source_identity=self.optional(fields, "source_identity", self.boolean, False),
            session_duration=self.optional(fields, "session_duration", self.session_duration, 3600),
        )

    def external_id(self, node: Node, key: str) -> str:
        return self.matching(
            node,
            key,
            _EXTERNAL_ID,
            "an ExternalId of 2-1224 letters, digits and +=,.@:/-_ (quote a numeric one)",
        )

    def session_duration(self, node: Node, key: str) -> int:
        expected = (
            f"expected whole seconds from {SESSION_DURATION_MIN} to {SESSION_DURATION_MAX} "
            f"(15 minutes to 12 hours), got {_describe(node)}"
        )
        if not (isinstance(node, ScalarNode) and node.tag == _INT):
            self.fail(node, key, expected)
        try:
            value = _CONSTRUCTOR.construct_yaml_int(node)
        except ValueError:
            self.fail(node, key, expected)
        if not SESSION_DURATION_MIN <= value <= SESSION_DURATION_MAX:
            self.fail(node, key, expected)
        return value

    def roles(self, node: Node, key: str) -> tuple[tuple[str, str], ...]:
        roles = tuple(
            (
                name,
                self.matching(
                    value,
                    value_key,
                    _ROLE_ARN,
                    "an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                ),
            )
            for name, _, value, value_key in self.entries(node, key)
        )
        if not roles:
            self.fail(node, key, "expected at least one role: key -> IAM role ARN")
        return roles

    def base64(self, node: Node, key: str) -> str:
        """Whitespace is dropped: a long value is often wrapped over several lines."""
        data = "".join(self.string(node, key).split())
        try:
            base64.b64decode(data, validate=True)
        except binascii.Error:
            self.fail(node, key, "expected base64 data (a PEM CA bundle, base64-encoded)")
        return data

    def policies(
        self, node: Node, key: str, connections: Sequence[Connection]
    ) -> tuple[Policy, ...]:
        policies: list[Policy] = []
        names: dict[str, int] = {}
        by_name = {connection.name: connection for connection in connections}
        for item_key, item in self.items(node, key, nonempty=False):
            fields = self.fields(item, item_key, _POLICY_KEYS, ("name", "connection"))
            policy = self.policy(fields, by_name)
            self.unique(
                names, policy.name, fields.values["name"], fields.key("name"), "policy name"
            )
            policies.append(policy)
        return tuple(policies)

    def policy(self, fields: _Fields, connections: dict[str, Connection]) -> Policy:
        name = self.string(fields.values["name"], fields.key("name"))
        groups: tuple[str, ...] = self.optional(fields, "groups", self.string_list, ())
        users: tuple[str, ...] = self.optional(fields, "users", self.string_list, ())
        if not groups and not users:
            self.fail(
                fields.node, fields.path, "applies to no one: expected non-empty groups or users"
            )
        connection_node = fields.values["connection"]
        connection_name = self.string(connection_node, fields.key("connection"))
        connection = connections.get(connection_name)
        if connection is None:
            self.fail(
                connection_node,
                fields.key("connection"),
                f"unknown connection {connection_name!r} (known: {', '.join(connections)})",
            )
        return Policy(
            name=name,
            connection=connection_name,
            groups=groups,
            users=users,
            binding_user_role=self.binding_user_role(fields, connection),
            allow=self.optional(fields, "allow", self.rules, ()),
            deny=self.optional(fields, "deny", self.rules, ()),
        )

    def binding_user_role(self, fields: _Fields, connection: Connection) -> str | None:
        """The connection decides: an EKS one has several roles to choose from, a static one
        has only its credential, so naming a role there would suggest a choice that is not."""
        node = fields.get("binding_user_role")
        key = fields.key("binding_user_role")
        if isinstance(connection, StaticConnection):
            if node is not None:
                self.fail(
                    node,
                    key,
                    f"not allowed for static connection {connection.name!r}: its one "
                    "credential (token or client certificate) is the only one it uses",
                )
            return None
        known = ", ".join(name for name, _ in connection.roles)
        if node is None:
            self.fail(
                fields.node,
                key,
                f"required for eks connection {connection.name!r} (one of: {known})",
            )
        role = self.string(node, key)
        if role not in dict(connection.roles):
            self.fail(
                node,
                key,
                f"unknown role {role!r} for connection {connection.name!r} (known: {known})",
            )
        return role

    def rules(self, node: Node, key: str) -> tuple[Rule, ...]:
        return tuple(self.rule(item, item_key) for item_key, item in self.items(node, key))

    def rule(self, node: Node, key: str) -> Rule:
        fields = self.fields(node, key, _RULE_KEYS, ("verbs",))
        verbs = self.strings(fields.values["verbs"], fields.key("verbs"), nonempty=True)
        resources = fields.get("resources")
        urls = fields.get("non_resource_urls")
        if resources is not None and urls is not None:
            self.fail(
                node,
                key,
                "names both resources and non_resource_urls; a rule is one or the other",
            )
        if urls is not None:
            for name in _RESOURCE_ONLY_KEYS:
                if (value := fields.get(name)) is not None:
                    self.fail(
                        value,
                        fields.key(name),
                        "not allowed on a non-resource rule (one with non_resource_urls)",
                    )
            return Rule(
                verbs=verbs, non_resource_urls=self.urls(urls, fields.key("non_resource_urls"))
            )
        if resources is None:
            self.fail(node, key, "names neither resources nor non_resource_urls; expected one")
        api_groups = fields.get("api_groups")
        if api_groups is None:
            self.fail(
                node,
                fields.key("api_groups"),
                'missing required key for a resource rule ([""] is the core group, ["*"] all)',
            )
        return Rule(
            verbs=verbs,
            api_groups=self.strings(api_groups, fields.key("api_groups"), nonempty=True),
            resources=self.strings(resources, fields.key("resources"), nonempty=True),
            resource_names=self.optional(fields, "resource_names", self.string_list, ()),
            namespaces=self.optional(fields, "namespaces", self.nonempty_strings, ("*",)),
        )

    def urls(self, node: Node, key: str) -> tuple[str, ...]:
        """As RBAC has them: a path, with `*` only as a final suffix."""
        urls = self.strings(node, key, nonempty=True)
        for index, url in enumerate(urls):
            if not (url.startswith("/") or url == "*") or "*" in url[:-1]:
                self.fail(
                    node.value[index],
                    f"{key}[{index}]",
                    f"expected a path starting with '/', '*' only at its end, got {url!r}",
                )
        return urls

    def audit(self, node: Node, key: str) -> Audit:
        fields = self.fields(node, key, ("sink", "recordings_dir"), ())
        sink = self.optional(fields, "sink", self.string, "stdout")
        return Audit(
            sink=sink if sink == "stdout" else str(self.resolve(sink)),
            recordings_dir=self.optional(fields, "recordings_dir", self.path, None),
        )

    def routing(self, node: Node, key: str) -> Routing:
        fields = self.fields(node, key, ("host_suffix",), ())
        suffix = self.optional(
            fields,
            "host_suffix",
            lambda n, k: self.matching(
                n,
                k,
                _HOST_SUFFIX,
                'a lowercase DNS suffix starting with ".", e.g. ".k8s.example.com"',
            ),
            "",
        )
        return Routing(host_suffix=suffix)

    def limits(self, node: Node, key: str) -> Limits:
        names = tuple(limit.name for limit in dataclasses.fields(Limits))
        fields = self.fields(node, key, names, ())
        base = Limits()

        def count(name: str, default: int) -> int:
            return self.optional(fields, name, self.positive_int, default)

        def seconds(name: str, default: float) -> float:
            return self.optional(fields, name, self.positive_number, default)

        return Limits(
            max_header_bytes=count("max_header_bytes", base.max_header_bytes),
            max_url_bytes=count("max_url_bytes", base.max_url_bytes),
            max_concurrent_streams=count("max_concurrent_streams", base.max_concurrent_streams),
            header_read_timeout=seconds("header_read_timeout", base.header_read_timeout),
            idle_timeout=seconds("idle_timeout", base.idle_timeout),
            upstream_connect_timeout=seconds(
                "upstream_connect_timeout", base.upstream_connect_timeout
            ),
            upstream_response_timeout=seconds(
                "upstream_response_timeout", base.upstream_response_timeout
            ),
            # 0 is documented as "no bound" here, so it is a meaningful value, not a mistake.
            max_stream_duration=self.optional(
                fields,
                "max_stream_duration",
                self.unbounded_or_positive,
                base.max_stream_duration,
            ),
            token_expiry_grace=self.optional(
                fields, "token_expiry_grace", self.unbounded_or_positive, base.token_expiry_grace
            ),
            upgrade_idle_timeout=seconds("upgrade_idle_timeout", base.upgrade_idle_timeout),
        )

    # --- shapes -------------------------------------------------------------------------

    def mapping(self, node: Node, key: str) -> MappingNode:
        if not isinstance(node, MappingNode):
            self.fail(node, key, f"expected a mapping, got {_describe(node)}")
        return node

    def fields(
        self,
        node: Node,
        key: str,
        allowed: Sequence[str],
        required: Sequence[str],
        *,
        what: str = "",
    ) -> _Fields:
        """Checks the keys (strings, no duplicates, none unknown, none missing)."""
        mapping = self.mapping(node, key)
        fields = _Fields(mapping, key, {})
        for name, name_node, value, _ in self.entries(mapping, key):
            if name not in allowed:
                where = f" for {what}" if what else ""
                self.fail(
                    name_node,
                    fields.key(name),
                    f"unknown key{where} (expected one of: {', '.join(allowed)})",
                )
            fields.values[name] = value
        for name in required:
            if name not in fields.values:
                self.fail(mapping, fields.key(name), "missing required key")
        return fields

    def entries(self, node: Node, key: str) -> list[tuple[str, Node, Node, str]]:
        """(name, key node, value node, key path) of a mapping with string keys, each once."""
        mapping = self.mapping(node, key)
        lines: dict[str, int] = {}
        entries: list[tuple[str, Node, Node, str]] = []
        for name_node, value in mapping.value:
            if not (
                isinstance(name_node, ScalarNode) and name_node.tag == _STR and name_node.value
            ):
                self.fail(
                    name_node, key, f"expected a non-empty string key, got {_describe(name_node)}"
                )
            name: str = name_node.value
            if name in lines:
                self.fail(
                    name_node, _join(key, name), f"duplicate key (first at line {lines[name]})"
                )
            lines[name] = name_node.start_mark.line + 1
            entries.append((name, name_node, value, _join(key, name)))
        return entries

    def items(self, node: Node, key: str, *, nonempty: bool = False) -> list[tuple[str, Node]]:
        if not isinstance(node, SequenceNode):
            self.fail(node, key, f"expected a list, got {_describe(node)}")
        if nonempty and not node.value:
            self.fail(node, key, "expected a non-empty list")
        return [(f"{key}[{index}]", item) for index, item in enumerate(node.value)]

    def unique(self, seen: dict[str, int], value: str, node: Node, key: str, what: str) -> None:
        line = node.start_mark.line + 1
        if value in seen:
            self.fail(node, key, f"duplicate {what} {value!r} (first at line {seen[value]})")
        seen[value] = line

    def optional(
        self, fields: _Fields, name: str, parse: Callable[[Node, str], T], default: T
    ) -> T:
        """An absent or null key takes the default."""
        node = fields.get(name)
        return default if node is None else parse(node, fields.key(name))

    # --- scalars ------------------------------------------------------------------------

    def any_string(self, node: Node, key: str) -> str:
        if not (isinstance(node, ScalarNode) and node.tag == _STR):
            hint = " (quote it to make it a string)" if node.tag in (_INT, _FLOAT, _BOOL) else ""
            self.fail(node, key, f"expected a string, got {_describe(node)}{hint}")
        value: str = node.value
        return value

    def string(self, node: Node, key: str) -> str:
        value = self.any_string(node, key)
        if not value:
            self.fail(node, key, "expected a non-empty string")
        return value

    def strings(self, node: Node, key: str, *, nonempty: bool) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode):
            self.fail(node, key, f"expected a list of strings, got {_describe(node)}")
        if nonempty and not node.value:
            self.fail(node, key, "expected a non-empty list of strings")
        return tuple(
            self.any_string(item, f"{key}[{index}]") for index, item in enumerate(node.value)
        )

    def string_list(self, node: Node, key: str) -> tuple[str, ...]:
        return self.strings(node, key, nonempty=False)

    def nonempty_strings(self, node: Node, key: str) -> tuple[str, ...]:
        return self.strings(node, key, nonempty=True)

    def matching(self, node: Node, key: str, pattern: re.Pattern[str], what: str) -> str:
        value = self.string(node, key)
        if not pattern.fullmatch(value):
            self.fail(node, key, f"expected {what}, got {value!r}")
        return value

    def positive_int(self, node: Node, key: str) -> int:
        expected = f"expected an integer >= 1, got {_describe(node)}"
        if not (isinstance(node, ScalarNode) and node.tag == _INT):
            self.fail(node, key, expected)
        try:
            value = _CONSTRUCTOR.construct_yaml_int(node)
        except ValueError:  # an explicit `!!int` tag on something that is not one
            self.fail(node, key, expected)
        if value < 1:
            self.fail(node, key, expected)
        return value

    def boolean(self, node: Node, key: str) -> bool:
        if not (isinstance(node, ScalarNode) and node.tag == _BOOL):
            self.fail(node, key, f"expected true or false, got {_describe(node)}")
        try:
            value: bool = _CONSTRUCTOR.construct_yaml_bool(node)
        except KeyError:  # an explicit `!!bool` tag on something that is not one
            self.fail(node, key, f"expected true or false, got {_describe(node)}")
        return value

    def number(self, node: Node, key: str, *, zero_ok: bool) -> float:
        expected = f"expected a number {'>= 0 (0: no bound)' if zero_ok else '> 0'}, got "
        expected += _describe(node)
        if not (isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT)):
            self.fail(node, key, expected)
        try:
            value = float(
                _CONSTRUCTOR.construct_yaml_int(node)
                if node.tag == _INT
                else _CONSTRUCTOR.construct_yaml_float(node)
            )
        except (ValueError, OverflowError):  # a mistagged value, or an int beyond any float
            self.fail(node, key, expected)
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            self.fail(node, key, expected)
        return value

    def positive_number(self, node: Node, key: str) -> float:
        return self.number(node, key, zero_ok=False)

    def unbounded_or_positive(self, node: Node, key: str) -> float:
        return self.number(node, key, zero_ok=True)

    def url(self, node: Node, key: str, schemes: tuple[str, ...]) -> str:
        url = self.string(node, key)
        if not _is_url(url, schemes):
            expected = " or ".join(f"{scheme}://" for scheme in schemes)
            self.fail(node, key, f"expected an {expected} URL, got {url!r}")
        return url

    def https_url(self, node: Node, key: str) -> str:
        return self.url(node, key, ("https",))

    def http_url(self, node: Node, key: str) -> str:
        """A local STS stand-in may well be plain HTTP on loopback."""
        return self.url(node, key, ("https", "http"))

    def resolve(self, raw: str) -> Path:
        """Absolute and without `..`, so messages and the summary show one plain path."""
        return Path(os.path.normpath(self.base / raw))

    def path(self, node: Node, key: str) -> Path:
        return self.resolve(self.string(node, key))

    def file(self, node: Node, key: str) -> Path:
        """A file the gateway reads at startup: checked now so that it fails here, located."""
        path = self.path(node, key)
        try:
            mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            self.fail(node, key, f"file not found: {path}")
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            self.fail(node, key, f"cannot use {path}: {exc}")
        if not stat.S_ISREG(mode):
            self.fail(node, key, f"not a regular file: {path}")
        if not os.access(path, os.R_OK):
            self.fail(node, key, f"file not readable: {path}")
        return path


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _describe(node: Node) -> str:
    """The offending value as the message shows it: short, and quoted when a string."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    text: str = node.value
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text) if node.tag == _STR else text


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    address = _ip(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number, or out of range
        return False
    return (
        parts.scheme in schemes
        and bool(parts.hostname)
        and port_ok
        and not parts.query
        and not parts.fragment
        and parts.username is None
        and not any(char.isspace() for char in url)
    )


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
