"""`l7proxy login` pieces without a provider: device polling, the cache, the credential,
client authentication, kubeconfig arguments; and the development issuer's token endpoint."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import ssl
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from l7proxy.identity.login import grants
from l7proxy.identity.login.cache import TokenCache
from l7proxy.identity.login.command import (
    EXPIRY_SKEW,
    Credential,
    LoginOptions,
    exec_api_version,
    exec_credential,
    obtain,
    select,
)
from l7proxy.identity.login.http import Answer, Http, LoginError
from l7proxy.identity.login.kubeconfig import (
    add_kubeconfig_arguments,
    entry_from_args,
    gateway_server,
    host_server,
    kubeconfig_document,
    login_args,
)
from l7proxy.identity.login.oauth import ClientAuth, Provider, jwt_claims
from l7proxy.tools.devissuer import DevClient, DevIssuer

PROVIDER = Provider(
    issuer="https://idp.test",
    token_endpoint="https://idp.test/token",
    authorization_endpoint="https://idp.test/auth",
    device_authorization_endpoint="https://idp.test/device",
    auth_methods=frozenset({"client_secret_basic", "none"}),
)


class ScriptedHttp(Http):
    """Answers POSTs from a script and records what was sent."""

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__(ssl.create_default_context())
        self.answers = answers
        self.sent: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def post_form(
        self, url: str, fields: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> Answer:
        self.sent.append((url, dict(fields), dict(headers or {})))
        return self.answers.pop(0)


def _device_answer(**extra: object) -> Answer:
    doc = {
        "device_code": "dc",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://idp.test/device",
        "expires_in": 60,
        **extra,
    }
    return Answer(200, doc)


def _error(error: str) -> Answer:
    return Answer(400, {"error": error})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _device(http: Http, clock: Clock, shown: list[str]) -> dict[str, object]:
    return grants.device_code(
        http,
        PROVIDER,
        ClientAuth("cli"),
        scopes=("openid",),
        extra={},
        announce=shown.append,
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )


def test_device_grant_polls_at_the_interval_and_slows_down() -> None:
    http = ScriptedHttp(
        [
            _device_answer(interval=2),
            _error("authorization_pending"),
            _error("slow_down"),
            _error("authorization_pending"),
            Answer(200, {"access_token": "at", "expires_in": 60}),
        ]
    )
    clock, shown = Clock(), []
    assert _device(http, clock, shown)["access_token"] == "at"
    assert clock.sleeps == [2, 2, 7, 7]  # slow_down adds 5 s from then on
    assert "enter the code ABCD-EFGH" in shown[0]
    assert http.sent[0][1] == {"scope": "openid", "client_id": "cli"}
    assert http.sent[1][1]["grant_type"] == grants.DEVICE_CODE_GRANT


def test_device_grant_uses_5s_by_default_and_stops_on_denial_or_expiry() -> None:
    clock, shown = Clock(), []
    with pytest.raises(LoginError, match="refused"):
        _device(ScriptedHttp([_device_answer(), _error("access_denied")]), clock, shown)
    assert clock.sleeps == [grants.DEFAULT_POLL_INTERVAL]
    pending = [_error("authorization_pending")] * 20
    with pytest.raises(LoginError, match="expired"):
        _device(ScriptedHttp([_device_answer(), *pending]), Clock(), [])
    with pytest.raises(LoginError, match="expired"):
        _device(ScriptedHttp([_device_answer(), _error("expired_token")]), Clock(), [])


def test_pkce_challenge_is_s256_of_the_verifier() -> None:
    verifier, challenge = grants.pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_client_secret_basic_form_encodes_both_parts() -> None:
    fields: dict[str, str] = {}
    headers: dict[str, str] = {}
    ClientAuth("my client", secret="p@ss:word").apply(PROVIDER, fields, headers)
    assert fields == {}
    raw = base64.b64decode(headers["Authorization"].removeprefix("Basic "))
    assert raw == b"my%20client:p%40ss%3Aword"
    post_only = dataclasses.replace(PROVIDER, auth_methods=frozenset({"client_secret_post"}))
    ClientAuth("c", secret="s").apply(post_only, fields, {})
    assert fields == {"client_id": "c", "client_secret": "s"}


def _jwt(claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_select_prefers_the_id_token_and_reads_expiry() -> None:
    response = {"id_token": _jwt({"exp": 2000}), "access_token": "opaque", "expires_in": 100}
    assert select(response, 1000, "auto") == Credential(response["id_token"], "id", 2000.0)
    assert select(response, 1000, "access") == Credential("opaque", "access", 1100.0)
    assert select({"access_token": "opaque"}, 1000, "id") is None
    jwt_access = {"access_token": _jwt({"exp": 1050}), "expires_in": 100}
    selected = select(jwt_access, 1000, "auto")
    assert selected is not None and selected.expires_at == 1050.0


def test_exec_credential_expires_a_minute_early_and_names_the_version() -> None:
    doc = exec_credential(Credential("t", "id", 3600.0), "client.authentication.k8s.io/v1", 0)
    assert doc == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "t", "expirationTimestamp": "1970-01-01T00:59:00Z"},
    }
    short = exec_credential(Credential("t", "id", 30.0), "v", 0)
    assert short["status"] == {"token": "t", "expirationTimestamp": "1970-01-01T00:00:30Z"}
    beta = '{"apiVersion": "client.authentication.k8s.io/v1beta1", "spec": {}}'
    assert exec_api_version({"KUBERNETES_EXEC_INFO": beta}).endswith("v1beta1")
    assert exec_api_version({}) == "client.authentication.k8s.io/v1"
    assert EXPIRY_SKEW == 60


def test_cache_files_are_private_and_keep_only_token_fields(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "l7proxy", ["https://idp.test", "cli", "openid", "auth-code"])
    assert cache.load() is None
    cache.store({"id_token": "x", "refresh_token": "r", "other": "dropped"}, 12.5)
    assert cache.path.stat().st_mode & 0o777 == 0o600
    assert cache.directory.stat().st_mode & 0o777 == 0o700
    entry = cache.load()
    assert entry is not None
    assert dict(entry.response) == {"id_token": "x", "refresh_token": "r"}
    assert entry.obtained_at == 12.5
    cache.path.write_text("{not json")
    assert cache.load() is None  # rewritten on the next sign-in
    other = TokenCache(tmp_path / "l7proxy", ["https://idp.test", "cli", "openid", "device"])
    assert other.path != cache.path


def test_kubeconfig_login_args_are_absolute_and_hold_no_secret(tmp_path: Path) -> None:
    options = LoginOptions(
        issuer="https://idp.test",
        client_id="agent",
        grant="client-credentials",
        scopes=("groups", "x"),
        ca_file=Path("ca.pem"),
        client_secret="never-written",
        client_secret_file=Path("agent.secret"),
        use="access",
    )
    args = login_args(options)
    assert args[:7] == [
        "login",
        "--issuer",
        "https://idp.test",
        "--client-id",
        "agent",
        "--grant",
        "client-credentials",
    ]
    assert args[args.index("--scope") + 1] == "groups x"
    assert Path(args[args.index("--ca-file") + 1]).is_absolute()
    assert Path(args[args.index("--client-secret-file") + 1]).is_absolute()
    assert "--use-access-token" in args
    assert "never-written" not in args
    assert gateway_server("https://gw:8443/", "dev") == "https://gw:8443/k8s/dev"
    for bad in ("", "a/b", ".."):
        with pytest.raises(LoginError):
            gateway_server("https://gw", bad)
    with pytest.raises(LoginError, match="https"):
        gateway_server("http://gw.example", "dev")


@pytest.mark.parametrize(("flag", "expected"), [([], "v1"), (["v1beta1"], "v1beta1")])
def test_kubeconfig_exec_api_version_is_v1_unless_asked_for_v1beta1(
    flag: list[str], expected: str
) -> None:
    parser = argparse.ArgumentParser()
    add_kubeconfig_arguments(parser)
    argv = ["--gateway", "https://gw", "--connection", "dev", "--issuer", "https://idp"]
    argv += ["--client-id", "cli", *(["--exec-api-version", *flag] if flag else [])]
    doc = kubeconfig_document([entry_from_args(parser.parse_args(argv))])
    users = doc["users"]
    assert isinstance(users, list)
    assert users[0]["user"]["exec"]["apiVersion"] == f"client.authentication.k8s.io/{expected}"
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--exec-api-version", "v2"])


async def test_dev_issuer_token_endpoint_with_login(tmp_path: Path) -> None:
    """The demo's path: `client_credentials` at the development issuer, through `obtain`."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    issuer = DevIssuer()
    issuer.add_client(DevClient("bot", "bot-secret", "bot@example", ("readers",)))
    (tmp_path / "secret").write_text("bot-secret\n")
    (tmp_path / "wrong").write_text("nope\n")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(issuer.serve, ssl_context=server_context))
        options = LoginOptions(
            issuer=issuer.issuer,
            client_id="bot",
            grant="client-credentials",
            ca_file=tmp_path / "ca.pem",
            client_secret_file=tmp_path / "secret",
            cache_dir=tmp_path / "cache",
        )
        credential = await trio.to_thread.run_sync(obtain, options)
        claims = jwt_claims(credential.token)
        assert claims is not None
        assert (claims["sub"], claims["groups"], claims["aud"]) == (
            "bot@example",
            ["readers"],
            "l7proxy",
        )
        again = await trio.to_thread.run_sync(obtain, options)
        assert again == credential
        assert issuer.requests["/token"] == 1  # the second came from the cache
        wrong = dataclasses.replace(
            options, client_secret_file=tmp_path / "wrong", cache_dir=tmp_path / "other"
        )
        with pytest.raises(LoginError, match="invalid_client"):
            await trio.to_thread.run_sync(obtain, wrong)
        nursery.cancel_scope.cancel()


def test_kubeconfig_host_routing_server_names_the_connection() -> None:
    assert host_server("https://k8s.example.com:8443", "dev", None) == (
        "https://dev.k8s.example.com:8443",
        None,
    )
    assert host_server("https://gw.example.com", "dev", ".k8s.example.com") == (
        "https://dev.k8s.example.com",
        None,
    )
    # By IP address: the URL stays, the name goes into tls-server-name (SNI and verification).
    assert host_server("https://10.0.0.5:8443", "dev", ".k8s.example.com") == (
        "https://10.0.0.5:8443",
        "dev.k8s.example.com",
    )
    with pytest.raises(LoginError, match="--host-suffix"):
        host_server("https://10.0.0.5:8443", "dev", None)
    with pytest.raises(LoginError, match="start with"):
        host_server("https://gw.example.com", "dev", "k8s.example.com")
    with pytest.raises(LoginError):
        host_server("https://gw.example.com", "a/b", ".k8s.example.com")
