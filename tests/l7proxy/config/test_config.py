"""The configuration loader: every rule, with the exact located message it gives."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from l7proxy.config.loader import ConfigError, load_config
from l7proxy.config.settings import (
    Audit,
    Config,
    EksConnection,
    Limits,
    Listen,
    Provider,
    StaticConnection,
    TLSFiles,
)
from l7proxy.config.summary import summarize
from policy.model import Policy, Rule

DUMMY_FILES = {
    "gateway.pem": "cert",
    "gateway-key.pem": "key",
    "ca.pem": "ca",
    "idp-ca.pem": "idp ca",
    "token": "s3cr3t-cluster-token\n",
    "client.pem": "client cert",
    "client-key.pem": "client key",
}

BASE = """\
listen:
  address: "0.0.0.0:8443"
  tls: {cert_file: gateway.pem, key_file: gateway-key.pem}
workers: 2
identity:
  providers:
    - name: corp-sso
      issuer: https://idp.example.com
      audiences: [l7proxy]
connections:
  - name: dev
    type: static
    server: https://127.0.0.1:6443
    certificate_authority_file: ca.pem
    token_file: token
  - name: prod-eks
    type: eks
    cluster_name: prod
    region: us-east-1
    roles: {eks-readonly: "arn:aws:iam::111122223333:role/eks-readonly"}
policies:
  - name: agents-readonly
    groups: [ai-agents-readonly]
    connection: prod-eks
    binding_user_role: eks-readonly
    allow:
      - {verbs: [get], api_groups: ["*"], resources: ["*"]}
"""


def variant(old: str, new: str) -> str:
    """BASE with one exact, unique piece of it replaced."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def line_of(text: str, marker: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(lines) == 1, (marker, lines)
    return lines[0]


@pytest.fixture(autouse=True)
def dummy_files(tmp_path: Path) -> None:
    for name, content in DUMMY_FILES.items():
        (tmp_path / name).write_text(content)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def assert_error(tmp_path: Path, text: str, marker: str, message: str) -> None:
    """The message must be exactly `<file>:<line of marker>: <message>`."""
    path = write(tmp_path, text)
    assert error(path) == f"{path}:{line_of(text, marker)}: {message}"


# --- the file itself ---------------------------------------------------------------------


def test_base_example_is_valid(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    assert config.workers == 2
    assert [conn.name for conn in config.connections] == ["dev", "prod-eks"]


def test_missing_config_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error(path) == f"{path}: configuration file not found"


def test_config_path_that_is_a_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    assert error(tmp_path) == f"{tmp_path}: cannot read the configuration file: Is a directory"


def test_config_file_that_is_not_utf8_is_an_error_with_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(b"workers: \xff\n")
    assert error(path) == f"{path}: not UTF-8 text (invalid start byte at byte 9)"


def test_yaml_syntax_error_is_reported_at_yamls_line(tmp_path: Path) -> None:
    text = "listen:\n  address: x\n  tls: [a\nworkers: 1\n"
    path = write(tmp_path, text)
    assert error(path) == f"{path}:4: invalid YAML: expected ',' or ']', but got ':'"


def test_yaml_mapping_syntax_error_has_the_exact_line(tmp_path: Path) -> None:
    text = "listen:\n  address: a: b\n"
    path = write(tmp_path, text)
    assert error(path) == f"{path}:2: invalid YAML: mapping values are not allowed here"


def test_unacceptable_character_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 1\nlisten: \x01\n")
    assert error(path) == (
        f"{path}:2: invalid YAML: unacceptable character #x0001: special characters are not allowed"
    )


def test_deeply_nested_yaml_is_a_config_error_not_a_recursion_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 5000)
    assert error(path) == f"{path}: invalid YAML: nested too deeply"


def test_several_yaml_documents_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 1\n---\nworkers: 2\n")
    assert error(path) == f"{path}:2: invalid YAML: but found another document"


def test_empty_file_is_refused_saying_what_is_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert error(path) == (
        f"{path}:1: the file is empty; expected a mapping with listen, identity, connections "
        "and policies"
    )


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert_error(tmp_path, "- a\n- b\n", "- a", "expected a mapping, got a list")


def test_unknown_top_level_key_lists_the_expected_keys(tmp_path: Path) -> None:
    text = BASE + "wokers: 3\n"
    assert_error(
        tmp_path,
        text,
        "wokers",
        "wokers: unknown key (expected one of: listen, workers, identity, connections, "
        "policies, audit, limits, routing, state, admins, access_requests)",
    )


def test_missing_required_top_level_key_is_named(tmp_path: Path) -> None:
    text = BASE.split("policies:")[0]
    assert_error(tmp_path, text, "listen:", "policies: missing required key")


def test_duplicate_key_names_the_line_of_the_first(tmp_path: Path) -> None:
    text = BASE + "workers: 3\n"
    path = write(tmp_path, text)
    assert (
        error(path) == f"{path}:{len(text.splitlines())}: workers: duplicate key (first at line 4)"
    )


def test_non_string_key_is_refused(tmp_path: Path) -> None:
    text = variant("  address:", "  1: x\n  address:")
    assert_error(tmp_path, text, "1: x", "listen: expected a non-empty string key, got 1")


def test_relative_paths_resolve_against_the_config_directory_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path(os.path.relpath(write(tmp_path, BASE), elsewhere)))
    assert config.source == tmp_path / "gw.yaml"
    assert config.listen.tls == TLSFiles(tmp_path / "gateway.pem", tmp_path / "gateway-key.pem")


# --- listen ------------------------------------------------------------------------------


def test_listen_address_without_a_port_is_refused(tmp_path: Path) -> None:
    text = variant('"0.0.0.0:8443"', '"0.0.0.0"')
    assert_error(
        tmp_path,
        text,
        "address:",
        'listen.address: expected "host:port" (IPv6 as "[::1]:8443"), got \'0.0.0.0\'',
    )


def test_listen_address_port_out_of_range_is_refused(tmp_path: Path) -> None:
    text = variant('"0.0.0.0:8443"', '"0.0.0.0:65536"')
    assert_error(
        tmp_path,
        text,
        "address:",
        "listen.address: expected a port number 0-65535 after the host, got '0.0.0.0:65536'",
    )


def test_listen_address_with_an_invalid_host_is_refused(tmp_path: Path) -> None:
    text = variant('"0.0.0.0:8443"', '"bad_host!:8443"')
    assert_error(
        tmp_path,
        text,
        "address:",
        "listen.address: expected a host name or IP address before the port, got 'bad_host!:8443'",
    )


def test_unbracketed_ipv6_listen_address_is_refused(tmp_path: Path) -> None:
    text = variant('"0.0.0.0:8443"', '"::1:8443"')
    assert_error(
        tmp_path,
        text,
        "address:",
        "listen.address: an IPv6 address needs brackets, as in \"[::1]:8443\"; got '::1:8443'",
    )


def test_bracketed_non_ipv6_listen_address_is_refused(tmp_path: Path) -> None:
    text = variant('"0.0.0.0:8443"', '"[localhost]:8443"')
    assert_error(
        tmp_path,
        text,
        "address:",
        "listen.address: expected an IPv6 address in brackets, got '[localhost]:8443'",
    )


def test_bracketed_ipv6_loopback_may_listen_without_tls(tmp_path: Path) -> None:
    text = variant(
        '  address: "0.0.0.0:8443"\n  tls: {cert_file: gateway.pem, key_file: gateway-key.pem}',
        '  address: "[::1]:8443"',
    )
    assert load(tmp_path, text).listen == Listen(host="::1", port=8443, tls=None)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "localhost:8080", "127.5.5.5:80"])
def test_plain_http_is_allowed_on_loopback(tmp_path: Path, address: str) -> None:
    text = variant("  tls: {cert_file: gateway.pem, key_file: gateway-key.pem}\n", "").replace(
        "0.0.0.0:8443", address
    )
    assert load(tmp_path, text).listen.tls is None


def test_tls_is_required_off_loopback(tmp_path: Path) -> None:
    text = variant("  tls: {cert_file: gateway.pem, key_file: gateway-key.pem}\n", "")
    assert_error(
        tmp_path,
        text,
        "address:",
        "listen.tls: required when listening off loopback (address '0.0.0.0:8443'); "
        "plain HTTP is only for 127.0.0.1, ::1 or localhost",
    )


def test_tls_cert_file_must_exist(tmp_path: Path) -> None:
    text = variant("cert_file: gateway.pem", "cert_file: missing.pem")
    assert_error(
        tmp_path,
        text,
        "cert_file",
        f"listen.tls.cert_file: file not found: {tmp_path / 'missing.pem'}",
    )


def test_tls_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    text = variant("key_file: gateway-key.pem", "key_file: certs")
    assert_error(
        tmp_path, text, "key_file", f"listen.tls.key_file: not a regular file: {tmp_path / 'certs'}"
    )


def test_tls_needs_both_files(tmp_path: Path) -> None:
    text = variant(
        "{cert_file: gateway.pem, key_file: gateway-key.pem}", "{cert_file: gateway.pem}"
    )
    assert_error(tmp_path, text, "tls:", "listen.tls.key_file: missing required key")


def test_listen_is_required(tmp_path: Path) -> None:
    text = BASE[BASE.index("workers:") :]
    assert_error(tmp_path, text, "workers:", "listen: missing required key")


# --- workers -----------------------------------------------------------------------------


def test_workers_must_be_an_integer(tmp_path: Path) -> None:
    text = variant("workers: 2", "workers: two")
    assert_error(tmp_path, text, "workers", "workers: expected an integer >= 1, got 'two'")


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    text = variant("workers: 2", "workers: 0")
    assert_error(tmp_path, text, "workers", "workers: expected an integer >= 1, got 0")


def test_workers_is_not_a_boolean(tmp_path: Path) -> None:
    text = variant("workers: 2", "workers: true")
    assert_error(tmp_path, text, "workers", "workers: expected an integer >= 1, got true")


def test_workers_defaults_to_the_cpu_count(tmp_path: Path) -> None:
    assert load(tmp_path, variant("workers: 2\n", "")).workers == (os.cpu_count() or 1)


# --- identity providers ------------------------------------------------------------------


def test_at_least_one_provider_is_required(tmp_path: Path) -> None:
    start = BASE.index("  providers:")
    end = BASE.index("connections:")
    text = BASE[:start] + "  providers: []\n" + BASE[end:]
    assert_error(tmp_path, text, "providers:", "identity.providers: expected a non-empty list")


def test_provider_unknown_key_lists_the_expected_keys(tmp_path: Path) -> None:
    text = variant(
        "      audiences: [l7proxy]\n", "      audiences: [l7proxy]\n      colour: red\n"
    )
    assert_error(
        tmp_path,
        text,
        "colour",
        "identity.providers[0].colour: unknown key (expected one of: name, issuer, audiences, "
        "username_claim, username_prefix, groups_claim, groups_prefix, required_claims, "
        "signing_algs, ca_file, authorized_party, max_token_age, email_verified_required, "
        "uid_claim, extra_claims, allow_system_prefix)",
    )


def test_provider_issuer_must_be_an_https_url(tmp_path: Path) -> None:
    text = variant("https://idp.example.com", "http://idp.example.com")
    assert_error(
        tmp_path,
        text,
        "issuer",
        "identity.providers[0].issuer: expected an https:// URL, got 'http://idp.example.com'",
    )


def test_provider_issuer_with_a_query_is_refused(tmp_path: Path) -> None:
    text = variant("https://idp.example.com", "https://idp.example.com/?x=1")
    assert_error(
        tmp_path,
        text,
        "issuer",
        "identity.providers[0].issuer: expected an https:// URL, "
        "got 'https://idp.example.com/?x=1'",
    )


def test_provider_issuer_is_required(tmp_path: Path) -> None:
    text = variant("      issuer: https://idp.example.com\n", "")
    assert_error(
        tmp_path, text, "name: corp-sso", "identity.providers[0].issuer: missing required key"
    )


def test_provider_audiences_must_not_be_empty(tmp_path: Path) -> None:
    text = variant("audiences: [l7proxy]", "audiences: []")
    assert_error(
        tmp_path,
        text,
        "audiences",
        "identity.providers[0].audiences: expected a non-empty list of strings",
    )


def test_provider_audiences_as_a_bare_string_is_refused(tmp_path: Path) -> None:
    text = variant("audiences: [l7proxy]", "audiences: l7proxy")
    assert_error(
        tmp_path,
        text,
        "audiences",
        "identity.providers[0].audiences: expected a list of strings, got 'l7proxy'",
    )


@pytest.mark.parametrize("alg", ["none", "HS256", "hs384", "HS512"])
def test_none_and_hmac_signing_algs_are_never_accepted(tmp_path: Path, alg: str) -> None:
    text = variant(
        "audiences: [l7proxy]", f"audiences: [l7proxy]\n      signing_algs: [RS256, {alg}]"
    )
    assert_error(
        tmp_path,
        text,
        "signing_algs",
        f"identity.providers[0].signing_algs[1]: {alg!r} is never accepted: `none` and HMAC "
        "(HS256, HS384, HS512) tokens are refused (expected some of: RS256, RS384, RS512, "
        "PS256, PS384, PS512, ES256, ES384, ES512)",
    )


def test_unknown_signing_alg_is_refused(tmp_path: Path) -> None:
    text = variant("audiences: [l7proxy]", "audiences: [l7proxy]\n      signing_algs: [EdDSA]")
    assert_error(
        tmp_path,
        text,
        "signing_algs",
        "identity.providers[0].signing_algs[0]: unknown algorithm 'EdDSA' (expected some of: "
        "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512)",
    )


def test_required_claims_values_must_be_strings(tmp_path: Path) -> None:
    text = variant(
        "audiences: [l7proxy]", "audiences: [l7proxy]\n      required_claims: {verified: true}"
    )
    assert_error(
        tmp_path,
        text,
        "required_claims",
        "identity.providers[0].required_claims.verified: expected a string, got true "
        "(quote it to make it a string)",
    )


def test_required_claims_must_be_a_mapping(tmp_path: Path) -> None:
    text = variant(
        "audiences: [l7proxy]", "audiences: [l7proxy]\n      required_claims: [verified]"
    )
    assert_error(
        tmp_path,
        text,
        "required_claims",
        "identity.providers[0].required_claims: expected a mapping, got a list",
    )


def test_provider_ca_file_must_exist(tmp_path: Path) -> None:
    text = variant("audiences: [l7proxy]", "audiences: [l7proxy]\n      ca_file: nope.pem")
    assert_error(
        tmp_path,
        text,
        "ca_file",
        f"identity.providers[0].ca_file: file not found: {tmp_path / 'nope.pem'}",
    )


def test_duplicate_provider_names_are_refused(tmp_path: Path) -> None:
    text = variant(
        "      audiences: [l7proxy]\n",
        "      audiences: [l7proxy]\n"
        "    - name: corp-sso\n"
        "      issuer: https://other.example.com\n"
        "      audiences: [l7proxy]\n",
    )
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:10: identity.providers[1].name: duplicate provider name 'corp-sso' "
        "(first at line 7)"
    )


def test_duplicate_provider_issuers_are_refused(tmp_path: Path) -> None:
    text = variant(
        "      audiences: [l7proxy]\n",
        "      audiences: [l7proxy]\n"
        "    - name: other\n"
        "      issuer: https://idp.example.com\n"
        "      audiences: [l7proxy]\n",
    )
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:11: identity.providers[1].issuer: duplicate issuer 'https://idp.example.com' "
        "(first at line 8)"
    )


def test_provider_defaults_are_those_of_the_settings_type(tmp_path: Path) -> None:
    provider = load(tmp_path, BASE).providers[0]
    assert provider == Provider(
        name="corp-sso", issuer="https://idp.example.com", audiences=("l7proxy",)
    )


TOKEN_RULES = """\
      authorized_party: kubectl
      max_token_age: 3600
      email_verified_required: false
      uid_claim: oid
      extra_claims:
        example.com/tenant: tenant
        acme.io/teams: org.teams
      allow_system_prefix: true
"""


def with_provider_keys(text: str) -> str:
    return variant("      audiences: [l7proxy]\n", "      audiences: [l7proxy]\n" + text)


def test_provider_token_rules_load(tmp_path: Path) -> None:
    provider = load(tmp_path, with_provider_keys(TOKEN_RULES)).providers[0]
    assert provider == Provider(
        name="corp-sso",
        issuer="https://idp.example.com",
        audiences=("l7proxy",),
        authorized_party="kubectl",
        max_token_age=3600.0,
        email_verified_required=False,
        uid_claim="oid",
        extra_claims=(("example.com/tenant", "tenant"), ("acme.io/teams", "org.teams")),
        allow_system_prefix=True,
    )


def test_provider_token_rule_defaults(tmp_path: Path) -> None:
    provider = load(tmp_path, BASE).providers[0]
    assert provider.authorized_party is None
    assert provider.max_token_age is None
    assert provider.email_verified_required is True
    assert provider.uid_claim == "sub"
    assert provider.extra_claims == ()
    assert provider.allow_system_prefix is False


def test_empty_uid_claim_means_no_uid(tmp_path: Path) -> None:
    provider = load(tmp_path, with_provider_keys('      uid_claim: ""\n')).providers[0]
    assert provider.uid_claim == ""


def test_provider_max_token_age_may_be_fractional(tmp_path: Path) -> None:
    provider = load(tmp_path, with_provider_keys("      max_token_age: 90.5\n")).providers[0]
    assert provider.max_token_age == 90.5


@pytest.mark.parametrize(
    ("line", "marker", "message"),
    [
        (
            '      authorized_party: ""\n',
            "authorized_party",
            "identity.providers[0].authorized_party: expected a non-empty string",
        ),
        (
            "      authorized_party: [kubectl]\n",
            "authorized_party",
            "identity.providers[0].authorized_party: expected a string, got a list",
        ),
        (
            "      max_token_age: 0\n",
            "max_token_age",
            "identity.providers[0].max_token_age: expected a number > 0, got 0",
        ),
        (
            "      max_token_age: -5\n",
            "max_token_age",
            "identity.providers[0].max_token_age: expected a number > 0, got -5",
        ),
        (
            "      max_token_age: 1h\n",
            "max_token_age",
            "identity.providers[0].max_token_age: expected a number > 0, got '1h'",
        ),
        (
            "      email_verified_required: no-thanks\n",
            "email_verified_required",
            "identity.providers[0].email_verified_required: expected true or false, "
            "got 'no-thanks'",
        ),
        (
            "      allow_system_prefix: 1\n",
            "allow_system_prefix",
            "identity.providers[0].allow_system_prefix: expected true or false, got 1",
        ),
        (
            "      uid_claim: 7\n",
            "uid_claim",
            "identity.providers[0].uid_claim: expected a string, got 7 "
            "(quote it to make it a string)",
        ),
        (
            "      extra_claims: [tenant]\n",
            "extra_claims",
            "identity.providers[0].extra_claims: expected a mapping, got a list",
        ),
        (
            "      extra_claims:\n        tenant: tenant\n",
            "tenant: tenant",
            "identity.providers[0].extra_claims.tenant: expected an extra key that is a "
            "lowercase domain-prefixed path, e.g. example.com/tenant, got 'tenant'",
        ),
        (
            "      extra_claims:\n        Example.com/Tenant: tenant\n",
            "Example.com",
            "identity.providers[0].extra_claims.Example.com/Tenant: expected an extra key that "
            "is a lowercase domain-prefixed path, e.g. example.com/tenant, got "
            "'Example.com/Tenant'",
        ),
        (
            "      extra_claims:\n        example.com/: tenant\n",
            "example.com/:",
            "identity.providers[0].extra_claims.example.com/: expected an extra key that is a "
            "lowercase domain-prefixed path, e.g. example.com/tenant, got 'example.com/'",
        ),
        (
            "      extra_claims:\n        k8s.io/tenant: tenant\n",
            "k8s.io",
            "identity.providers[0].extra_claims.k8s.io/tenant: the domain 'k8s.io' is "
            "reserved for Kubernetes; use your own domain",
        ),
        (
            "      extra_claims:\n        authentication.kubernetes.io/x: tenant\n",
            "kubernetes.io",
            "identity.providers[0].extra_claims.authentication.kubernetes.io/x: the domain "
            "'authentication.kubernetes.io' is reserved for Kubernetes; use your own domain",
        ),
        (
            '      extra_claims:\n        example.com/tenant: ""\n',
            "example.com/tenant",
            "identity.providers[0].extra_claims.example.com/tenant: expected a non-empty string",
        ),
        (
            "      extra_claims:\n        example.com/tenant: [a, b]\n",
            "example.com/tenant",
            "identity.providers[0].extra_claims.example.com/tenant: expected a string, got a list",
        ),
    ],
)
def test_provider_token_rule_errors_are_located(
    tmp_path: Path, line: str, marker: str, message: str
) -> None:
    assert_error(tmp_path, with_provider_keys(line), marker, message)


def test_duplicate_extra_key_is_refused(tmp_path: Path) -> None:
    text = with_provider_keys(
        "      extra_claims:\n        example.com/t: a\n        example.com/t: b\n"
    )
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:12: identity.providers[0].extra_claims.example.com/t: duplicate key "
        "(first at line 11)"
    )


def test_summary_names_the_token_rules(tmp_path: Path) -> None:
    lines = summarize(load(tmp_path, with_provider_keys(TOKEN_RULES))).splitlines()
    assert (
        "    uid from claim 'oid'; extra: example.com/tenant <- 'tenant', acme.io/teams <- "
        "'org.teams'; azp: 'kubectl'; max token age: 3600s; email_verified ignored; system: "
        "names allowed"
    ) in lines
    assert (
        "    uid from claim 'sub'; extra: none; azp: any; max token age: none; email_verified "
        "required; system: names refused"
    ) in summarize(load(tmp_path, BASE)).splitlines()


# --- connections -------------------------------------------------------------------------


def test_connections_must_be_a_list(tmp_path: Path) -> None:
    start = BASE.index("connections:")
    end = BASE.index("policies:")
    text = BASE[:start] + "connections: dev\n" + BASE[end:]
    assert_error(tmp_path, text, "connections:", "connections: expected a list, got 'dev'")


def test_connection_type_is_required(tmp_path: Path) -> None:
    text = variant("    type: static\n", "")
    assert_error(
        tmp_path, text, "- name: dev", "connections[0].type: missing required key (static or eks)"
    )


def test_unknown_connection_type_is_refused(tmp_path: Path) -> None:
    text = variant("type: static", "type: gke")
    assert_error(
        tmp_path, text, "type: gke", "connections[0].type: expected static or eks, got 'gke'"
    )


def test_static_server_must_be_an_https_url(tmp_path: Path) -> None:
    text = variant("server: https://127.0.0.1:6443", "server: ftp://x")
    assert_error(
        tmp_path, text, "ftp://x", "connections[0].server: expected an https:// URL, got 'ftp://x'"
    )


def test_server_with_a_bad_port_is_refused(tmp_path: Path) -> None:
    text = variant("server: https://127.0.0.1:6443", "server: https://127.0.0.1:port")
    assert_error(
        tmp_path,
        text,
        "server:",
        "connections[0].server: expected an https:// URL, got 'https://127.0.0.1:port'",
    )


def test_static_connection_needs_a_credential(tmp_path: Path) -> None:
    text = variant("    token_file: token\n", "")
    assert_error(
        tmp_path,
        text,
        "- name: dev",
        "connections[0]: a static connection needs one credential: token_file, or "
        "client_cert_file with client_key_file",
    )


def test_static_connection_refuses_a_token_and_a_client_certificate_together(
    tmp_path: Path,
) -> None:
    text = variant(
        "    token_file: token\n",
        "    token_file: token\n    client_cert_file: client.pem\n"
        "    client_key_file: client-key.pem\n",
    )
    assert_error(
        tmp_path,
        text,
        "token_file",
        "connections[0].token_file: a static connection has exactly one credential: "
        "token_file, or client_cert_file with client_key_file, not both",
    )


def test_static_client_certificate_needs_its_key(tmp_path: Path) -> None:
    text = variant("    token_file: token\n", "    client_cert_file: client.pem\n")
    assert_error(
        tmp_path,
        text,
        "- name: dev",
        "connections[0].client_key_file: missing: client_cert_file needs it",
    )


def test_static_client_key_needs_its_certificate(tmp_path: Path) -> None:
    text = variant("    token_file: token\n", "    client_key_file: client-key.pem\n")
    assert_error(
        tmp_path,
        text,
        "- name: dev",
        "connections[0].client_cert_file: missing: client_key_file needs it",
    )


def test_static_client_certificate_pair_is_a_credential(tmp_path: Path) -> None:
    text = variant(
        "    token_file: token\n",
        "    client_cert_file: client.pem\n    client_key_file: client-key.pem\n",
    )
    assert load(tmp_path, text).connections[0] == StaticConnection(
        name="dev",
        server="https://127.0.0.1:6443",
        certificate_authority_file=tmp_path / "ca.pem",
        client_cert_file=tmp_path / "client.pem",
        client_key_file=tmp_path / "client-key.pem",
    )


def test_static_token_file_must_exist(tmp_path: Path) -> None:
    text = variant("token_file: token", "token_file: secrets/token")
    assert_error(
        tmp_path,
        text,
        "token_file",
        f"connections[0].token_file: file not found: {tmp_path / 'secrets' / 'token'}",
    )


def test_eks_key_on_a_static_connection_is_unknown_for_that_type(tmp_path: Path) -> None:
    text = variant("    token_file: token\n", "    token_file: token\n    region: us-east-1\n")
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:16: connections[0].region: unknown key for a static connection (expected one "
        "of: name, type, server, certificate_authority_file, token_file, client_cert_file, "
        "client_key_file)"
    )


def test_connection_name_must_be_a_dns_label(tmp_path: Path) -> None:
    text = variant("- name: dev", "- name: Dev_1")
    assert_error(
        tmp_path,
        text,
        "Dev_1",
        "connections[0].name: expected a DNS label (lowercase letters, digits and '-', at most "
        "63, starting and ending with a letter or digit: it appears in /k8s/<name>/), "
        "got 'Dev_1'",
    )


def test_duplicate_connection_names_are_refused_naming_the_first(tmp_path: Path) -> None:
    text = variant(
        "policies:\n",
        "  - name: dev\n    type: static\n    server: https://x.example.com\n"
        "    token_file: token\npolicies:\n",
    )
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:21: connections[2].name: duplicate connection name 'dev' (first at line 11)"
    )


def test_eks_role_must_be_an_iam_role_arn(tmp_path: Path) -> None:
    text = variant(
        '"arn:aws:iam::111122223333:role/eks-readonly"', '"arn:aws:iam::1111:user/eks-readonly"'
    )
    assert_error(
        tmp_path,
        text,
        "roles:",
        "connections[1].roles.eks-readonly: expected an IAM role ARN "
        "(arn:aws:iam::<account>:role/<name>), got 'arn:aws:iam::1111:user/eks-readonly'",
    )


def test_eks_role_arn_in_another_partition_with_a_path_is_accepted(tmp_path: Path) -> None:
    arn = "arn:aws-us-gov:iam::111122223333:role/team/eks-readonly"
    text = variant("arn:aws:iam::111122223333:role/eks-readonly", arn)
    connection = load(tmp_path, text).connections[1]
    assert isinstance(connection, EksConnection)
    assert connection.roles == (("eks-readonly", arn),)


def test_eks_roles_must_not_be_empty(tmp_path: Path) -> None:
    text = variant(
        'roles: {eks-readonly: "arn:aws:iam::111122223333:role/eks-readonly"}', "roles: {}"
    )
    assert_error(
        tmp_path,
        text,
        "roles:",
        "connections[1].roles: expected at least one role: key -> IAM role ARN",
    )


def test_eks_certificate_authority_data_must_be_base64(tmp_path: Path) -> None:
    text = variant(
        "    region: us-east-1\n",
        "    region: us-east-1\n    certificate_authority_data: not*b64\n",
    )
    assert_error(
        tmp_path,
        text,
        "certificate_authority_data",
        "connections[1].certificate_authority_data: expected base64 data "
        "(a PEM CA bundle, base64-encoded)",
    )


def test_eks_certificate_authority_data_wrapped_over_lines_is_accepted(tmp_path: Path) -> None:
    data = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n" * 4).decode()
    wrapped = "\n".join(data[i : i + 40] for i in range(0, len(data), 40))
    block = "".join(f"      {line}\n" for line in wrapped.splitlines())
    text = variant(
        "    region: us-east-1\n",
        f"    region: us-east-1\n    certificate_authority_data: |\n{block}",
    )
    connection = load(tmp_path, text).connections[1]
    assert isinstance(connection, EksConnection)
    assert connection.certificate_authority_data == data


def test_eks_region_must_look_like_an_aws_region(tmp_path: Path) -> None:
    text = variant("region: us-east-1", "region: US East")
    assert_error(
        tmp_path, text, "region:", "connections[1].region: expected an AWS region, got 'US East'"
    )


def test_eks_cluster_name_is_required(tmp_path: Path) -> None:
    text = variant("    cluster_name: prod\n", "")
    assert_error(
        tmp_path, text, "- name: prod-eks", "connections[1].cluster_name: missing required key"
    )


def test_eks_server_must_be_https_when_given(tmp_path: Path) -> None:
    text = variant("    region: us-east-1\n", "    region: us-east-1\n    server: http://eks\n")
    assert_error(
        tmp_path,
        text,
        "server: http://eks",
        "connections[1].server: expected an https:// URL, got 'http://eks'",
    )


def test_eks_sts_endpoint_must_be_a_url(tmp_path: Path) -> None:
    text = variant(
        "    region: us-east-1\n", "    region: us-east-1\n    sts_endpoint: localhost\n"
    )
    assert_error(
        tmp_path,
        text,
        "sts_endpoint",
        "connections[1].sts_endpoint: expected an https:// or http:// URL, got 'localhost'",
    )


def test_static_key_on_an_eks_connection_is_unknown_for_that_type(tmp_path: Path) -> None:
    text = variant("    region: us-east-1\n", "    region: us-east-1\n    token_file: token\n")
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:20: connections[1].token_file: unknown key for an eks connection (expected "
        "one of: name, type, cluster_name, region, server, certificate_authority_data, roles, "
        "sts_endpoint, eks_endpoint, external_id, source_identity, session_duration)"
    )


def eks_option(line: str) -> str:
    """BASE with one more line in the eks connection."""
    return variant("    region: us-east-1\n", f"    region: us-east-1\n    {line}\n")


def test_eks_options_default_to_those_of_the_settings_type(tmp_path: Path) -> None:
    connection = load(tmp_path, BASE).connections[1]
    assert connection == EksConnection(
        name="prod-eks",
        cluster_name="prod",
        region="us-east-1",
        roles=(("eks-readonly", "arn:aws:iam::111122223333:role/eks-readonly"),),
    )


def test_eks_options_are_read(tmp_path: Path) -> None:
    text = variant(
        "    region: us-east-1\n",
        "    region: us-east-1\n"
        "    eks_endpoint: http://127.0.0.1:4566\n"
        '    external_id: "tenant-42:prod"\n'
        "    source_identity: true\n"
        "    session_duration: 900\n",
    )
    connection = load(tmp_path, text).connections[1]
    assert isinstance(connection, EksConnection)
    assert (
        connection.eks_endpoint,
        connection.external_id,
        connection.source_identity,
        connection.session_duration,
    ) == ("http://127.0.0.1:4566", "tenant-42:prod", True, 900)


def test_eks_endpoint_must_be_a_url(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        eks_option("eks_endpoint: ftp://eks.local"),
        "eks_endpoint",
        "connections[1].eks_endpoint: expected an https:// or http:// URL, got 'ftp://eks.local'",
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [("x", "'x'"), ("12345", "12345 (quote it to make it a string)"), ('"a b"', "'a b'")],
)
def test_eks_external_id_must_be_an_aws_external_id(tmp_path: Path, value: str, shown: str) -> None:
    message = (
        "connections[1].external_id: expected an ExternalId of 2-1224 letters, digits and "
        f"+=,.@:/-_ (quote a numeric one), got {shown}"
    )
    if "quote it" in shown:
        message = f"connections[1].external_id: expected a string, got {shown}"
    assert_error(tmp_path, eks_option(f"external_id: {value}"), "external_id", message)


@pytest.mark.parametrize("value", ["yes please", "1", '"true"'])
def test_eks_source_identity_must_be_a_boolean(tmp_path: Path, value: str) -> None:
    shown = {"yes please": "'yes please'", "1": "1", '"true"': "'true'"}[value]
    assert_error(
        tmp_path,
        eks_option(f"source_identity: {value}"),
        "source_identity",
        f"connections[1].source_identity: expected true or false, got {shown}",
    )


def test_eks_source_identity_with_a_bad_explicit_tag_is_a_config_error(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        eks_option("source_identity: !!bool maybe"),
        "source_identity",
        "connections[1].source_identity: expected true or false, got maybe",
    )


@pytest.mark.parametrize("value", ["899", "43201", "0", "-900", "3600.0", '"3600"', "1h"])
def test_eks_session_duration_must_be_900_to_43200_seconds(tmp_path: Path, value: str) -> None:
    shown = value if not value.startswith('"') and value != "1h" else repr(value.strip('"'))
    assert_error(
        tmp_path,
        eks_option(f"session_duration: {value}"),
        "session_duration",
        "connections[1].session_duration: expected whole seconds from 900 to 43200 "
        f"(15 minutes to 12 hours), got {shown}",
    )


@pytest.mark.parametrize("value", [900, 43200])
def test_eks_session_duration_bounds_are_accepted(tmp_path: Path, value: int) -> None:
    connection = load(tmp_path, eks_option(f"session_duration: {value}")).connections[1]
    assert isinstance(connection, EksConnection)
    assert connection.session_duration == value


# --- policies ----------------------------------------------------------------------------


def test_policy_naming_an_unknown_connection_lists_the_known_ones(tmp_path: Path) -> None:
    text = variant("connection: prod-eks", "connection: prod")
    assert_error(
        tmp_path,
        text,
        "connection: prod",
        "policies[0].connection: unknown connection 'prod' (known: dev, prod-eks)",
    )


def test_policy_must_apply_to_some_groups_or_users(tmp_path: Path) -> None:
    text = variant("groups: [ai-agents-readonly]", "groups: []\n    users: []")
    assert_error(
        tmp_path,
        text,
        "- name: agents-readonly",
        "policies[0]: applies to no one: expected non-empty groups or users",
    )


def test_policy_for_users_only_is_accepted(tmp_path: Path) -> None:
    text = variant("groups: [ai-agents-readonly]", "users: [alice@example.com]")
    policy = load(tmp_path, text).policies[0]
    assert (policy.groups, policy.users) == ((), ("alice@example.com",))


def test_a_policy_may_redact_secrets(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).policies[0].redact_secrets is False
    text = variant(
        "    binding_user_role: eks-readonly\n",
        "    binding_user_role: eks-readonly\n    redact_secrets: true\n",
    )
    assert load(tmp_path, text).policies[0].redact_secrets is True
    assert_error(
        tmp_path,
        variant(
            "    binding_user_role: eks-readonly\n",
            "    binding_user_role: eks-readonly\n    redact_secrets: maybe\n",
        ),
        "redact_secrets",
        "policies[0].redact_secrets: expected true or false, got 'maybe'",
    )


def test_eks_policy_requires_a_binding_user_role(tmp_path: Path) -> None:
    text = variant("    binding_user_role: eks-readonly\n", "")
    assert_error(
        tmp_path,
        text,
        "- name: agents-readonly",
        "policies[0].binding_user_role: required for eks connection 'prod-eks' "
        "(one of: eks-readonly)",
    )


def test_eks_policy_binding_user_role_must_be_one_of_the_connections_roles(
    tmp_path: Path,
) -> None:
    text = variant("binding_user_role: eks-readonly", "binding_user_role: eks-admin")
    assert_error(
        tmp_path,
        text,
        "binding_user_role",
        "policies[0].binding_user_role: unknown role 'eks-admin' for connection 'prod-eks' "
        "(known: eks-readonly)",
    )


def test_static_policy_refuses_a_binding_user_role(tmp_path: Path) -> None:
    text = variant("connection: prod-eks", "connection: dev")
    assert_error(
        tmp_path,
        text,
        "binding_user_role",
        "policies[0].binding_user_role: not allowed for static connection 'dev': its one "
        "credential (token or client certificate) is the only one it uses",
    )


def test_static_policy_accepts_a_null_binding_user_role(tmp_path: Path) -> None:
    text = variant("connection: prod-eks", "connection: dev").replace(
        "binding_user_role: eks-readonly", "binding_user_role: null"
    )
    assert load(tmp_path, text).policies[0].binding_user_role is None


def test_duplicate_policy_names_are_refused(tmp_path: Path) -> None:
    text = BASE + ("  - name: agents-readonly\n    users: [bob]\n    connection: dev\n")
    path = write(tmp_path, text)
    assert error(path) == (
        f"{path}:28: policies[1].name: duplicate policy name 'agents-readonly' (first at line 22)"
    )


def test_policies_may_be_empty_so_everything_is_denied(tmp_path: Path) -> None:
    text = BASE[: BASE.index("policies:")] + "policies: []\n"
    assert load(tmp_path, text).policies == ()


def test_rule_verbs_are_required(tmp_path: Path) -> None:
    text = variant("{verbs: [get], api_groups:", "{api_groups:")
    assert_error(tmp_path, text, "api_groups", "policies[0].allow[0].verbs: missing required key")


def test_rule_verbs_must_not_be_empty(tmp_path: Path) -> None:
    text = variant("verbs: [get]", "verbs: []")
    assert_error(
        tmp_path, text, "verbs", "policies[0].allow[0].verbs: expected a non-empty list of strings"
    )


def test_rule_list_given_as_a_bare_string_is_refused(tmp_path: Path) -> None:
    text = variant("verbs: [get]", "verbs: get")
    assert_error(
        tmp_path, text, "verbs", "policies[0].allow[0].verbs: expected a list of strings, got 'get'"
    )


def test_rule_list_item_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    text = variant('resources: ["*"]', "resources: [pods, [x]]")
    assert_error(
        tmp_path,
        text,
        "resources",
        "policies[0].allow[0].resources[1]: expected a string, got a list",
    )


def test_rule_with_both_resources_and_non_resource_urls_is_refused(tmp_path: Path) -> None:
    text = variant('resources: ["*"]}', 'resources: ["*"], non_resource_urls: [/version]}')
    assert_error(
        tmp_path,
        text,
        "non_resource_urls",
        "policies[0].allow[0]: names both resources and non_resource_urls; "
        "a rule is one or the other",
    )


def test_rule_with_neither_resources_nor_non_resource_urls_is_refused(tmp_path: Path) -> None:
    text = variant(', resources: ["*"]}', "}")
    assert_error(
        tmp_path,
        text,
        "verbs",
        "policies[0].allow[0]: names neither resources nor non_resource_urls; expected one",
    )


def test_resource_rule_requires_api_groups(tmp_path: Path) -> None:
    text = variant(' api_groups: ["*"],', "")
    assert_error(
        tmp_path,
        text,
        "verbs",
        "policies[0].allow[0].api_groups: missing required key for a resource rule "
        '([""] is the core group, ["*"] all)',
    )


def test_resource_rule_namespaces_default_to_every_namespace(tmp_path: Path) -> None:
    rule = load(tmp_path, BASE).policies[0].allow[0]
    assert rule == Rule(verbs=("get",), api_groups=("*",), resources=("*",), namespaces=("*",))


def test_resource_rule_namespaces_must_not_be_empty(tmp_path: Path) -> None:
    text = variant('resources: ["*"]}', 'resources: ["*"], namespaces: []}')
    assert_error(
        tmp_path,
        text,
        "namespaces",
        "policies[0].allow[0].namespaces: expected a non-empty list of strings",
    )


@pytest.mark.parametrize("key", ["namespaces", "api_groups", "resource_names"])
def test_resource_fields_are_not_allowed_on_a_non_resource_rule(tmp_path: Path, key: str) -> None:
    text = variant(
        '{verbs: [get], api_groups: ["*"], resources: ["*"]}',
        f"{{verbs: [get], non_resource_urls: [/version], {key}: [x]}}",
    )
    assert_error(
        tmp_path,
        text,
        "non_resource_urls",
        f"policies[0].allow[0].{key}: not allowed on a non-resource rule "
        "(one with non_resource_urls)",
    )


def test_non_resource_urls_must_be_paths_with_a_trailing_star_only(tmp_path: Path) -> None:
    text = variant(
        '{verbs: [get], api_groups: ["*"], resources: ["*"]}',
        '{verbs: [get], non_resource_urls: [/version, "/apis/*/x"]}',
    )
    assert_error(
        tmp_path,
        text,
        "non_resource_urls",
        "policies[0].allow[0].non_resource_urls[1]: expected a path starting with '/', "
        "'*' only at its end, got '/apis/*/x'",
    )


def test_unknown_rule_key_lists_the_expected_keys(tmp_path: Path) -> None:
    text = variant("verbs: [get]", "verb: [get]")
    assert_error(
        tmp_path,
        text,
        "verb:",
        "policies[0].allow[0].verb: unknown key (expected one of: verbs, api_groups, resources, "
        "resource_names, namespaces, non_resource_urls)",
    )


def test_deny_rules_are_validated_like_allow_rules(tmp_path: Path) -> None:
    text = BASE + "    deny:\n      - {verbs: [delete], resources: [secrets]}\n"
    assert_error(
        tmp_path,
        text,
        "delete",
        "policies[0].deny[0].api_groups: missing required key for a resource rule "
        '([""] is the core group, ["*"] all)',
    )


# --- audit and limits --------------------------------------------------------------------


def test_audit_defaults_to_stdout_without_recordings(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).audit == Audit(sink="stdout", recordings_dir=None)


def test_audit_sink_path_resolves_against_the_config_directory(tmp_path: Path) -> None:
    text = BASE + "audit: {sink: logs/audit.jsonl, recordings_dir: /var/rec}\n"
    assert load(tmp_path, text).audit == Audit(
        sink=str(tmp_path / "logs" / "audit.jsonl"), recordings_dir=Path("/var/rec")
    )


def test_audit_unknown_key_lists_the_expected_keys(tmp_path: Path) -> None:
    text = BASE + "audit: {file: x}\n"
    assert_error(
        tmp_path, text, "audit:", "audit.file: unknown key (expected one of: sink, recordings_dir)"
    )


def test_limits_override_only_the_keys_given(tmp_path: Path) -> None:
    text = BASE + "limits: {idle_timeout: 30, max_header_bytes: 4096, max_stream_duration: 0}\n"
    assert load(tmp_path, text).limits == Limits(idle_timeout=30.0, max_header_bytes=4096)


def test_limits_must_be_positive(tmp_path: Path) -> None:
    text = BASE + "limits: {idle_timeout: 0}\n"
    assert_error(tmp_path, text, "limits:", "limits.idle_timeout: expected a number > 0, got 0")


def test_the_shutdown_grace_is_a_positive_number_of_seconds(tmp_path: Path) -> None:
    assert load(tmp_path, BASE + "limits: {shutdown_grace: 2.5}\n").limits.shutdown_grace == 2.5
    assert load(tmp_path, BASE).limits.shutdown_grace == 30.0
    text = BASE + "limits: {shutdown_grace: 0}\n"
    assert_error(tmp_path, text, "limits:", "limits.shutdown_grace: expected a number > 0, got 0")


def test_limits_must_be_finite(tmp_path: Path) -> None:
    text = BASE + "limits: {max_stream_duration: .inf}\n"
    assert_error(
        tmp_path,
        text,
        "limits:",
        "limits.max_stream_duration: expected a number >= 0 (0: no bound), got .inf",
    )


def test_integer_limits_refuse_fractions(tmp_path: Path) -> None:
    text = BASE + "limits: {max_concurrent_streams: 1.5}\n"
    assert_error(
        tmp_path,
        text,
        "limits:",
        "limits.max_concurrent_streams: expected an integer >= 1, got 1.5",
    )


def test_every_limit_is_read_from_the_file(tmp_path: Path) -> None:
    values = {f.name: 7 + i for i, f in enumerate(dataclasses.fields(Limits))}
    text = BASE + "limits:\n" + "".join(f"  {name}: {value}\n" for name, value in values.items())
    limits = load(tmp_path, text).limits
    assert {name: getattr(limits, name) for name in values} == values


def test_unknown_limit_lists_the_known_limits(tmp_path: Path) -> None:
    text = BASE + "limits: {max_body: 1}\n"
    assert_error(
        tmp_path,
        text,
        "limits:",
        "limits.max_body: unknown key (expected one of: max_header_bytes, max_url_bytes, "
        "max_concurrent_streams, header_read_timeout, idle_timeout, upstream_connect_timeout, "
        "upstream_response_timeout, max_stream_duration, token_expiry_grace, "
        "upgrade_idle_timeout, shutdown_grace)",
    )


# --- the full example --------------------------------------------------------------------

CA_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

FULL = f"""\
listen:
  address: "0.0.0.0:8443"
  tls: {{cert_file: gateway.pem, key_file: gateway-key.pem}}
workers: 4
identity:
  providers:
    - name: corp-sso
      issuer: https://idp.example.com
      audiences: [l7proxy, kubectl]
      username_claim: email
      username_prefix: "oidc:"
      groups_claim: realm_access.roles
      groups_prefix: "oidc:"
      required_claims: {{email_verified: "true"}}
      signing_algs: [RS256, ES256, PS512]
      ca_file: idp-ca.pem
connections:
  - name: prod-eks
    type: eks
    cluster_name: prod
    region: us-east-1
    server: https://ABC.gr7.us-east-1.eks.amazonaws.com
    certificate_authority_data: {CA_DATA.decode()}
    roles: {{eks-readonly: "arn:aws:iam::111122223333:role/eks-readonly"}}
    sts_endpoint: http://127.0.0.1:4566
  - name: dev
    type: static
    server: https://127.0.0.1:6443
    certificate_authority_file: ca.pem
    token_file: token
policies:
  - name: agents-readonly
    groups: [ai-agents-readonly]
    connection: prod-eks
    binding_user_role: eks-readonly
    allow:
      - {{verbs: [get, list, watch], api_groups: ["*"], resources: ["*"], namespaces: ["*"]}}
      - {{verbs: [get], non_resource_urls: ["/version", "/api", "/api/*"]}}
    deny:
      - {{verbs: ["*"], api_groups: [""], resources: [secrets], namespaces: ["*"]}}
  - name: dev-admins
    users: [alice@example.com]
    connection: dev
    allow:
      - verbs: ["*"]
        api_groups: ["", apps]
        resources: [pods, deployments/scale]
        resource_names: [web]
        namespaces: [team-a, ""]
audit:
  sink: audit.jsonl
  recordings_dir: recordings
limits:
  max_concurrent_streams: 100
  upstream_response_timeout: 30.5
"""


def test_full_example_loads_to_exactly_the_expected_values(tmp_path: Path) -> None:
    assert load(tmp_path, FULL) == Config(
        source=tmp_path / "gw.yaml",
        listen=Listen(
            host="0.0.0.0",
            port=8443,
            tls=TLSFiles(tmp_path / "gateway.pem", tmp_path / "gateway-key.pem"),
        ),
        workers=4,
        providers=(
            Provider(
                name="corp-sso",
                issuer="https://idp.example.com",
                audiences=("l7proxy", "kubectl"),
                username_claim="email",
                username_prefix="oidc:",
                groups_claim="realm_access.roles",
                groups_prefix="oidc:",
                required_claims=(("email_verified", "true"),),
                signing_algs=("RS256", "ES256", "PS512"),
                ca_file=tmp_path / "idp-ca.pem",
            ),
        ),
        connections=(
            EksConnection(
                name="prod-eks",
                cluster_name="prod",
                region="us-east-1",
                roles=(("eks-readonly", "arn:aws:iam::111122223333:role/eks-readonly"),),
                server="https://ABC.gr7.us-east-1.eks.amazonaws.com",
                certificate_authority_data=CA_DATA.decode(),
                sts_endpoint="http://127.0.0.1:4566",
            ),
            StaticConnection(
                name="dev",
                server="https://127.0.0.1:6443",
                certificate_authority_file=tmp_path / "ca.pem",
                token_file=tmp_path / "token",
            ),
        ),
        policies=(
            Policy(
                name="agents-readonly",
                connection="prod-eks",
                groups=("ai-agents-readonly",),
                binding_user_role="eks-readonly",
                allow=(
                    Rule(
                        verbs=("get", "list", "watch"),
                        api_groups=("*",),
                        resources=("*",),
                        namespaces=("*",),
                    ),
                    Rule(verbs=("get",), non_resource_urls=("/version", "/api", "/api/*")),
                ),
                deny=(
                    Rule(verbs=("*",), api_groups=("",), resources=("secrets",), namespaces=("*",)),
                ),
            ),
            Policy(
                name="dev-admins",
                connection="dev",
                users=("alice@example.com",),
                allow=(
                    Rule(
                        verbs=("*",),
                        api_groups=("", "apps"),
                        resources=("pods", "deployments/scale"),
                        resource_names=("web",),
                        namespaces=("team-a", ""),
                    ),
                ),
            ),
        ),
        audit=Audit(sink=str(tmp_path / "audit.jsonl"), recordings_dir=tmp_path / "recordings"),
        limits=Limits(max_concurrent_streams=100, upstream_response_timeout=30.5),
    )


def test_summary_says_what_the_gateway_will_do_without_secrets(tmp_path: Path) -> None:
    summary = summarize(load(tmp_path, FULL))
    assert summary.splitlines()[:3] == [
        f"configuration {tmp_path / 'gw.yaml'}: OK",
        f"listen: 0.0.0.0:8443, TLS (cert {tmp_path / 'gateway.pem'}, "
        f"key {tmp_path / 'gateway-key.pem'})",
        "workers: 4",
    ]
    for expected in (
        "  corp-sso: issuer https://idp.example.com, audiences l7proxy, kubectl",
        "  prod-eks: eks, cluster prod in us-east-1, server "
        "https://ABC.gr7.us-east-1.eks.amazonaws.com, CA inline data, STS "
        "http://127.0.0.1:4566, sessions of 3600s, roles: eks-readonly -> "
        "arn:aws:iam::111122223333:role/eks-readonly",
        f"  dev: static, server https://127.0.0.1:6443, CA {tmp_path / 'ca.pem'}, "
        f"credential: bearer token from {tmp_path / 'token'}",
        "  agents-readonly: groups [ai-agents-readonly], users [] -> prod-eks "
        "(role eks-readonly); 2 allow rules, 1 deny rule",
        "  dev-admins: groups [], users [alice@example.com] -> dev; 1 allow rule, 0 deny rules",
        f"audit: sink {tmp_path / 'audit.jsonl'}; recordings {tmp_path / 'recordings'}",
    ):
        assert expected in summary.splitlines()
    assert "s3cr3t" not in summary
    assert CA_DATA.decode() not in summary


def test_summary_of_eks_options_names_them_without_the_external_id(tmp_path: Path) -> None:
    text = variant(
        "    region: us-east-1\n",
        "    region: us-east-1\n    eks_endpoint: http://127.0.0.1:4566\n"
        "    external_id: tenant-42\n    source_identity: true\n    session_duration: 900\n",
    )
    summary = summarize(load(tmp_path, text))
    assert (
        "  prod-eks: eks, cluster prod in us-east-1, server from DescribeCluster, CA from "
        "DescribeCluster, EKS API http://127.0.0.1:4566, sessions of 900s with an ExternalId, "
        "SourceIdentity set, roles: eks-readonly -> arn:aws:iam::111122223333:role/eks-readonly"
    ) in summary.splitlines()
    assert "tenant-42" not in summary


def test_summary_of_plain_http_on_loopback_says_so(tmp_path: Path) -> None:
    text = variant("  tls: {cert_file: gateway.pem, key_file: gateway-key.pem}\n", "").replace(
        "0.0.0.0:8443", "[::1]:8443"
    )
    assert (
        "listen: [::1]:8443, plain HTTP (no TLS: loopback only)"
        in summarize(load(tmp_path, text)).splitlines()
    )


# --- nothing but ConfigError -------------------------------------------------------------

BASE_VALUES: dict[str, Any] = yaml.safe_load(BASE)


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


PATHS = list(_paths(BASE_VALUES))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
GARBAGE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def garbage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("garbage")
    for name, content in DUMMY_FILES.items():
        (directory / name).write_text(content)
    return directory


def _replace(values: Any, path: tuple[str | int, ...], new: Any, *, add_key: str | None) -> Any:
    if not path:
        if add_key is not None and isinstance(values, dict):
            return {**values, add_key: new}
        return new
    head, rest = path[0], path[1:]
    copy: Any = dict(values) if isinstance(values, dict) else list(values)
    copy[head] = _replace(values[head], rest, new, add_key=add_key)
    return copy


@settings(max_examples=300, deadline=None)
@given(
    target=st.sampled_from(PATHS),
    garbage=GARBAGE,
    add_key=st.none() | st.text(max_size=8),
)
def test_garbage_values_anywhere_raise_nothing_but_config_error(
    garbage_dir: Path, target: tuple[str | int, ...], garbage: Any, add_key: str | None
) -> None:
    path = garbage_dir / "gw.yaml"
    path.write_text(yaml.safe_dump(_replace(BASE_VALUES, target, garbage, add_key=add_key)))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}")


YAMLISH = st.text(alphabet="ab1.:-[]{}&*!|>'\"#? \n\t,%@`\\\x00\x85é", max_size=60)


@settings(max_examples=300, deadline=None)
@given(content=st.binary(max_size=60) | YAMLISH.map(lambda text: text.encode()))
def test_arbitrary_file_contents_raise_nothing_but_config_error(
    garbage_dir: Path, content: bytes
) -> None:
    path = garbage_dir / "raw.yaml"
    path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}")


# --- routing -----------------------------------------------------------------------------


def test_routing_host_suffix_is_read_and_summarized(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + 'routing: {host_suffix: ".k8s.example.com"}\n')
    assert config.routing.host_suffix == ".k8s.example.com"
    assert (
        "routing: by host <connection>.k8s.example.com (SNI, else Host), else by path"
        " /k8s/<connection>/"
    ) in summarize(config).splitlines()
    assert load(tmp_path, BASE).routing.host_suffix == ""


@pytest.mark.parametrize("suffix", ["k8s.example.com", ".K8s.example.com", ".", "..x", ".a_b.com"])
def test_routing_host_suffix_must_be_a_lowercase_dns_suffix(tmp_path: Path, suffix: str) -> None:
    assert_error(
        tmp_path,
        BASE + f'routing:\n  host_suffix: "{suffix}"\n',
        "host_suffix",
        'routing.host_suffix: expected a lowercase DNS suffix starting with ".", e.g. '
        f'".k8s.example.com", got {suffix!r}',
    )


def test_routing_unknown_key_is_located(tmp_path: Path) -> None:
    assert_error(
        tmp_path,
        BASE + "routing:\n  host_sufix: .x\n",
        "host_sufix",
        "routing.host_sufix: unknown key (expected one of: host_suffix)",
    )


# --- living access: state, admins, access_requests ----------------------------------------

GRANTS = """\
state: {sqlite: state/l7proxy.db}
admins: {groups: [platform-admins]}
access_requests:
  - name: prod-write
    policy: agents-readonly
    requesters: {groups: [sre]}
    approvers: {users: [lead@example.com]}
    min_approvals: 2
    max_duration: 4h
"""


def test_access_requests_admins_and_state_are_read(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + GRANTS)
    [grant] = config.access_requests
    assert (grant.name, grant.policy, grant.min_approvals, grant.max_duration) == (
        "prod-write",
        "agents-readonly",
        2,
        4 * 3600.0,
    )
    assert grant.requesters.groups == ("sre",) and grant.approvers.users == ("lead@example.com",)
    assert config.admins.groups == ("platform-admins",)
    assert config.state.sqlite == Path("state/l7proxy.db") and config.state.postgres is None


def test_without_living_access_keys_the_defaults_hold(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    assert config.access_requests == () and config.admins.groups == ()
    assert config.state.sqlite == Path("l7proxy-state.db")
    assert config.limits.shutdown_grace == 30.0


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        (
            "    policy: agents-readonly\n",
            "    policy: prod-admin\n",
            "policy: prod-admin",
            "access_requests[0].policy: unknown policy 'prod-admin' (known: agents-readonly)",
        ),
        (
            "    max_duration: 4h\n",
            "    max_duration: a while\n",
            "max_duration",
            "access_requests[0].max_duration: expected a duration like 30m, 4h or 1h30m, "
            "got 'a while'",
        ),
        (
            "    approvers: {users: [lead@example.com]}\n",
            "    approvers: {users: []}\n",
            "approvers",
            "access_requests[0].approvers: names no one: expected non-empty users or groups",
        ),
        (
            "state: {sqlite: state/l7proxy.db}\n",
            'state: {sqlite: a.db, postgres: "postgresql://db/l7proxy"}\n',
            "state:",
            "state: names both sqlite and postgres; the state lives in one store",
        ),
        (
            "state: {sqlite: state/l7proxy.db}\n",
            'state: {postgres: "mysql://l7proxy:s3cret@db/l7proxy"}\n',
            "state:",
            "state.postgres: expected a postgresql:// URL (libpq's form)",  # no password shown
        ),
    ],
)
def test_living_access_mistakes_are_located(
    tmp_path: Path, old: str, new: str, marker: str, message: str
) -> None:
    text = BASE + GRANTS.replace(old, new)
    assert_error(tmp_path, text, marker, message)


def test_check_config_summarizes_the_state_store_admins_and_grants(tmp_path: Path) -> None:
    text = BASE + GRANTS.replace("state: {sqlite: state/l7proxy.db}\n", "")
    lines = summarize(load(tmp_path, text)).splitlines()
    assert f"state: SQLite {tmp_path / 'l7proxy-state.db'}" in lines
    assert "admins: groups [platform-admins], users []" in lines
    assert (
        "  prod-write: policy agents-readonly for up to 4h; requested by groups [sre], users [];"
        " 2 approvals from groups [], users [lead@example.com]"
    ) in lines
    postgres = BASE + 'state: {postgres: "postgresql://gw:s3cret@db/l7proxy"}\n'
    summary = summarize(load(tmp_path, postgres))
    assert "state: PostgreSQL (URL not shown)" in summary and "s3cret" not in summary
