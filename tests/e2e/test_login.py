"""`l7proxy login` and `l7proxy kubeconfig` against a real, certified OpenID provider.

The provider is panva's oidc-provider (tests/oidc-provider/server.mjs) behind TLS, with a
client per grant. The person's part of a sign-in (the login form, consent, the device code
page) is done here with plain HTTP requests and a cookie jar, as a browser would; the tokens
that come back are then used with the real kubectl through the gateway.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urljoin

import pytest
import trio
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from l7proxy.identity.login.oauth import jwt_claims, thumbprint
from tests.e2e.stack import Stack, kubectl, start_stack, wait_for_event

L7PROXY = [sys.executable, "-m", "l7proxy"]
PROVIDER_DIR = Path(__file__).resolve().parents[1] / "oidc-provider"
AUDIENCE = "l7proxy"
SECRET = "agent-secret-value-0123456789-abcdefghij"
ACCOUNTS = {"alice": ["platform-admins"], "bob": ["ai-agents-readonly"]}
CLIENT_GROUPS = {"agent-secret": ["ai-agents-readonly"], "agent-jwt": ["ai-agents-readonly"]}


@dataclass
class OidcProvider:
    issuer: str
    ca_file: Path
    key_file: Path
    secret_file: Path

    def requests(self) -> dict[str, int]:
        """Requests served so far, by path (the server's own count)."""
        context = _ssl_context(self.ca_file)
        with urllib.request.urlopen(f"{self.issuer}/test/requests", context=context) as answer:
            counts: dict[str, int] = json.load(answer)
        return counts


def _ssl_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _clients(public_jwk: dict[str, object]) -> list[dict[str, object]]:
    none: list[str] = []
    return [
        {
            "client_id": "l7proxy-cli",
            "application_type": "native",  # any loopback port (RFC 8252 §7.3)
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": ["http://127.0.0.1/callback"],
        },
        {
            "client_id": "l7proxy-device",
            "token_endpoint_auth_method": "none",
            "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            "response_types": none,
            "redirect_uris": none,
        },
        {
            "client_id": "agent-secret",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "response_types": none,
            "redirect_uris": none,
        },
        {
            "client_id": "agent-jwt",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [public_jwk]},
            "grant_types": ["client_credentials"],
            "response_types": none,
            "redirect_uris": none,
        },
    ]


def _ensure_installed() -> None:
    """`make test` installs it first; a bare `pytest` installs it here. Never skipped."""
    if (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm (Node >= 20) is needed for the OpenID provider: install Node.js")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {PROVIDER_DIR} failed:\n{result.stderr[-2000:]}")


@pytest.fixture(scope="module")
def oidc_provider(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    _ensure_installed()
    tmp = tmp_path_factory.mktemp("oidc-provider")
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    for pem in leaf.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp / "cert.pem"), append=True)
    leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp / "agent-jwt.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    jwk = JWKRSA(key=private)
    public = {**jwk.public_key().to_json(), "kid": thumbprint(jwk), "alg": "RS256", "use": "sig"}
    (tmp / "agent-secret.txt").write_text(SECRET + "\n")
    (tmp / "config.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": 0,
                "cert_file": str(tmp / "cert.pem"),
                "key_file": str(tmp / "key.pem"),
                "audience": AUDIENCE,
                "accounts": ACCOUNTS,
                "client_groups": CLIENT_GROUPS,
                "clients": _clients(public),
            }
        )
    )
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js >= 20) is needed for the OpenID provider")
    with open(tmp / "server.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [node, str(PROVIDER_DIR / "server.mjs"), str(tmp / "config.json")],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=5)
            pytest.fail(f"oidc-provider did not start:\n{(tmp / 'server.log').read_text()}")
        yield OidcProvider(
            issuer=json.loads(line)["issuer"],
            ca_file=tmp / "ca.pem",
            key_file=tmp / "agent-jwt.pem",
            secret_file=tmp / "agent-secret.txt",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


@pytest.fixture
async def op_stack(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, oidc_provider: OidcProvider
) -> Stack:
    """The gateway trusting the oidc-provider: ID tokens (aud = client id) and the agents'
    JWT access tokens (aud = l7proxy)."""
    return await start_stack(
        nursery,
        ca,
        tmp_path,
        provider={
            "name": "oidc-provider",
            "issuer": oidc_provider.issuer,
            "audiences": [AUDIENCE, "l7proxy-cli", "l7proxy-device"],
            "signing_algs": ["RS256"],
        },
    )


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp / "xdg-cache"), "HOME": str(tmp)}


class _Form(HTMLParser):
    """The first <form> of a page: its action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._done:
            self._in_form, self.action = True, values.get("action", "")
        elif tag == "input" and self._in_form and "name" in values:
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True


def browse(start: str, ca_file: Path, login: str) -> str:
    """What a person does in the browser: follow redirects, fill the login form with
    `login`, confirm consent / the device code, until a page has no form. Its text."""
    context = _ssl_context(ca_file)
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(CookieJar()),
        urllib.request.HTTPSHandler(context=context),
    )
    url, data = start, None
    for _ in range(12):
        with opener.open(url, data=data, timeout=15) as page:
            url, html = page.geturl(), page.read().decode()
        form = _Form()
        form.feed(html)
        if form.action is None:
            return html
        fields = dict(form.fields)
        if "login" in fields:
            fields.update(login=login, password="any")
        url, data = urljoin(url, form.action), urlencode(fields).encode()
    raise AssertionError(f"the sign-in did not finish; last page {url}")


async def _interactive_login(
    args: list[str], env: dict[str, str], *, pattern: str, ca_file: Path, login: str
) -> tuple[dict[str, object], str]:
    """Run `l7proxy login` and, once it shows where to sign in, sign in as `login`.
    The ExecCredential and everything the plugin wrote on stderr."""
    process = await trio.lowlevel.open_process(
        [*L7PROXY, "login", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    stderr = b""
    stdout = b""
    try:
        with trio.fail_after(30):
            while not (found := re.search(pattern, stderr.decode())):
                chunk = await process.stderr.receive_some()
                assert chunk, f"login ended without a sign-in URL: {stderr.decode()}"
                stderr += chunk
            page = await trio.to_thread.run_sync(browse, found.group(1), ca_file, login)
            assert "Sign-in" in page or "Signed in" in page or "success" in page.lower(), page
            async with trio.open_nursery() as nursery:

                async def read_stderr() -> None:
                    nonlocal stderr
                    assert process.stderr is not None
                    while chunk := await process.stderr.receive_some():
                        stderr += chunk

                nursery.start_soon(read_stderr)
                while chunk := await process.stdout.receive_some():
                    stdout += chunk
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout), stderr.decode()


def _token(credential: dict[str, object]) -> str:
    status = credential["status"]
    assert isinstance(status, dict)
    token = status["token"]
    assert isinstance(token, str)
    return token


def _check_exec_credential(credential: dict[str, object], stderr: str) -> str:
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1"
    assert credential["kind"] == "ExecCredential"
    status = credential["status"]
    assert isinstance(status, dict)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(status["expirationTimestamp"]))
    token = _token(credential)
    assert token not in stderr  # never on stderr
    return token


async def _login(
    args: list[str], env: dict[str, str], *, exec_info: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    if exec_info is not None:
        env = {**env, "KUBERNETES_EXEC_INFO": exec_info}
    with trio.fail_after(30):
        return await trio.run_process(
            [*L7PROXY, "login", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
            stdin=b"",
        )


def _cache_files(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["XDG_CACHE_HOME"]) / "l7proxy").glob("*.json"))


async def test_auth_code_pkce_then_cache_then_refresh(
    op_stack: Stack, oidc_provider: OidcProvider
) -> None:
    env = _env(op_stack.tmp)
    args = [
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        "l7proxy-cli",
        "--grant",
        "auth-code",
        "--scope",
        "openid groups",
        "--ca-file",
        str(oidc_provider.ca_file),
        "--no-browser",
    ]
    credential, stderr = await _interactive_login(
        args,
        env,
        pattern=r"open this URL in a browser:\s+(https://\S+)",
        ca_file=oidc_provider.ca_file,
        login="alice",
    )
    token = _check_exec_credential(credential, stderr)
    assert "code_challenge_method=S256" in stderr
    claims = jwt_claims(token)
    assert claims is not None
    assert claims["sub"] == "alice"
    assert claims["aud"] == "l7proxy-cli"
    assert claims["groups"] == ["platform-admins"]

    (cache,) = _cache_files(env)
    assert cache.stat().st_mode & 0o777 == 0o600
    assert cache.parent.stat().st_mode & 0o777 == 0o700

    # kubectl through the gateway, as alice (platform-admins may delete)
    kc = op_stack.kubeconfig(token, name="alice")
    result = await kubectl(kc, "delete", "pod", "web-2")
    assert result.returncode == 0, result.stderr
    event = await wait_for_event(op_stack, lambda e: e["verb"] == "delete" and e["user"] == "alice")
    assert (event["user"], event["decision"]) == ("alice", "allow")

    # a second run answers from the cache: not one request reaches the provider
    before = oidc_provider.requests()
    second = await _login(args, env)
    assert second.returncode == 0, second.stderr
    assert _token(json.loads(second.stdout)) == token
    assert second.stderr == b""
    assert oidc_provider.requests() == before

    # an hour later (the cached ID token has expired): the refresh token, with no sign-in
    doc = json.loads(cache.read_text())
    header, _, signature = doc["response"]["id_token"].split(".")
    expired = base64.urlsafe_b64encode(json.dumps({"exp": 1}).encode()).decode().rstrip("=")
    doc["response"]["id_token"] = f"{header}.{expired}.{signature}"
    cache.write_text(json.dumps(doc))
    third = await _login(args, env)
    assert third.returncode == 0, third.stderr
    assert b"http" not in third.stderr  # no sign-in URL: nobody was asked
    after = oidc_provider.requests()
    assert after.get("/auth", 0) == before.get("/auth", 0)
    assert after["/token"] == before["/token"] + 1
    # The refreshed token may equal the first byte for byte when both were issued within the
    # same second (same claims, deterministic RS256): the /token count above is the proof.
    refreshed = _token(json.loads(third.stdout))
    refreshed_claims = jwt_claims(refreshed)
    assert refreshed_claims is not None and refreshed_claims["sub"] == "alice"
    result = await kubectl(op_stack.kubeconfig(refreshed, name="alice2"), "get", "pods")
    assert result.returncode == 0, result.stderr


async def test_device_grant_for_a_terminal_without_browser(
    op_stack: Stack, oidc_provider: OidcProvider
) -> None:
    env = _env(op_stack.tmp)
    credential, stderr = await _interactive_login(
        [
            "--issuer",
            oidc_provider.issuer,
            "--client-id",
            "l7proxy-device",
            "--grant",
            "device",
            "--scope",
            "openid groups",
            "--ca-file",
            str(oidc_provider.ca_file),
        ],
        env,
        pattern=r"open (https://\S+user_code=\S+)",
        ca_file=oidc_provider.ca_file,
        login="bob",
    )
    token = _check_exec_credential(credential, stderr)
    assert re.search(r"enter the code [A-Z]{4}-[A-Z]{4}", stderr)
    kc = op_stack.kubeconfig(token, name="bob")
    result = await kubectl(kc, "get", "pods")
    assert result.returncode == 0, result.stderr
    assert b"web-1" in result.stdout
    refused = await kubectl(kc, "delete", "pod", "web-1")
    assert refused.returncode == 1
    assert b'User "bob" (groups "ai-agents-readonly")' in refused.stderr


async def test_kubeconfig_client_credentials_fully_headless(
    op_stack: Stack, oidc_provider: OidcProvider
) -> None:
    """`l7proxy kubeconfig` for an agent: kubectl runs `l7proxy login` itself, with no stdin
    and no person; the file holds neither a token nor the secret."""
    env = _env(op_stack.tmp)
    kc = op_stack.tmp / "agent.kubeconfig"
    with trio.fail_after(30):
        written = await trio.run_process(
            [
                *L7PROXY,
                "kubeconfig",
                "--gateway",
                op_stack.gateway_url,
                "--connection",
                "dev",
                "--issuer",
                oidc_provider.issuer,
                "--client-id",
                "agent-secret",
                "--grant",
                "client-credentials",
                "--client-secret-file",
                str(oidc_provider.secret_file),
                "--issuer-ca-file",
                str(oidc_provider.ca_file),
                "--ca-file",
                str(op_stack.tmp / "ca.pem"),
                "--context",
                "agent",
                "--output",
                str(kc),
            ],
            capture_stdout=True,
            capture_stderr=True,
            env=env,
        )
    assert written.returncode == 0, written.stderr
    assert kc.stat().st_mode & 0o777 == 0o600
    text = kc.read_text()
    assert SECRET not in text
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "agent"
    assert doc["clusters"][0]["cluster"]["server"] == f"{op_stack.gateway_url}/k8s/dev"
    exec_ = doc["users"][0]["user"]["exec"]
    assert exec_["apiVersion"] == "client.authentication.k8s.io/v1"
    assert exec_["interactiveMode"] == "Never"
    assert exec_["provideClusterInfo"] is False
    assert [exec_["command"], *exec_["args"][:3]] == [sys.executable, "-m", "l7proxy", "login"]

    with trio.fail_after(60):
        result = await trio.run_process(
            ["/usr/bin/kubectl", "--kubeconfig", str(kc), "get", "pods"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    assert result.returncode == 0, result.stderr
    assert b"web-1" in result.stdout
    event = await wait_for_event(op_stack, lambda e: e["user"] == "agent-secret")
    assert (event["user"], event["groups"]) == ("agent-secret", ["ai-agents-readonly"])
    assert (event["policy"], event["decision"]) == ("agents-readonly", "allow")
    with trio.fail_after(60):
        refused = await trio.run_process(
            ["/usr/bin/kubectl", "--kubeconfig", str(kc), "delete", "pod", "web-1"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    assert refused.returncode == 1
    assert b"Forbidden" in refused.stderr
    assert SECRET.encode() not in refused.stderr + result.stderr


async def test_client_credentials_with_private_key_jwt(
    op_stack: Stack, oidc_provider: OidcProvider
) -> None:
    env = _env(op_stack.tmp)
    exec_info = json.dumps(
        {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    result = await _login(
        [
            "--issuer",
            oidc_provider.issuer,
            "--client-id",
            "agent-jwt",
            "--grant",
            "client-credentials",
            "--private-key-file",
            str(oidc_provider.key_file),
            "--ca-file",
            str(oidc_provider.ca_file),
        ],
        env,
        exec_info=exec_info,
    )
    assert result.returncode == 0, result.stderr
    token = _check_exec_credential(json.loads(result.stdout), result.stderr.decode())
    claims = jwt_claims(token)
    assert claims is not None
    assert (claims["sub"], claims["aud"]) == ("agent-jwt", AUDIENCE)
    kc = op_stack.kubeconfig(token, name="agent-jwt")
    listed = await kubectl(kc, "get", "pods")
    assert listed.returncode == 0, listed.stderr


async def test_failures_are_one_clear_line(op_stack: Stack, oidc_provider: OidcProvider) -> None:
    env = _env(op_stack.tmp)
    wrong = op_stack.tmp / "wrong-secret"
    wrong.write_text("not-the-secret-at-all\n")
    issuer = ["--issuer", oidc_provider.issuer, "--client-id", "agent-secret"]
    trusted = ["--grant", "client-credentials", "--ca-file", str(oidc_provider.ca_file)]
    secret = ["--client-secret-file", str(oidc_provider.secret_file)]
    cases = [
        ([*issuer, "--client-secret-file", str(wrong), *trusted], "invalid_client"),
        (
            [
                "--issuer",
                oidc_provider.issuer + "/",
                "--client-id",
                "agent-secret",
                *secret,
                *trusted,
            ],
            "pass that exact value as --issuer",
        ),
        ([*issuer, *trusted], "needs --client-secret"),
        # without --ca-file, the system's trust store does not know the test CA
        ([*issuer, *secret, "--grant", "client-credentials"], "CERTIFICATE_VERIFY_FAILED"),
    ]
    for args, why in cases:
        result = await _login(args, env)
        message = result.stderr.decode()
        assert result.returncode == 1, message
        assert result.stdout == b""
        assert message.startswith("l7proxy login: ") and message.count("\n") == 1, message
        assert why in message, message
        assert "Traceback" not in message
        assert "not-the-secret-at-all" not in message and SECRET not in message


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _rotate(provider: OidcProvider) -> str:
    request = urllib.request.Request(f"{provider.issuer}/test/rotate", method="POST")
    with urllib.request.urlopen(request, context=_ssl_context(provider.ca_file)) as answer:
        return str(json.load(answer)["kid"])


async def test_key_rotation_at_the_provider_is_picked_up_without_a_restart(
    op_stack: Stack, oidc_provider: OidcProvider
) -> None:
    args = [
        "--issuer", oidc_provider.issuer, "--client-id", "agent-secret",
        "--grant", "client-credentials", "--client-secret-file", str(oidc_provider.secret_file),
        "--ca-file", str(oidc_provider.ca_file),
    ]  # fmt: skip
    before = await _login(args, _env(op_stack.tmp / "before"))
    assert before.returncode == 0, before.stderr
    old_token = _token(json.loads(before.stdout))
    listed = await kubectl(op_stack.kubeconfig(old_token, name="old"), "get", "pods")
    assert listed.returncode == 0, listed.stderr

    new_kid = await trio.to_thread.run_sync(_rotate, oidc_provider)
    after = await _login(args, _env(op_stack.tmp / "after"))
    assert after.returncode == 0, after.stderr
    new_token = _token(json.loads(after.stdout))
    assert (_kid(old_token), _kid(new_token)) != (new_kid, new_kid)
    assert _kid(new_token) == new_kid
    # The same gateway, never restarted: the unknown kid makes it fetch the JWKS again —
    # once its refresh rate limit (10 s after the first fetch) has passed.
    await trio.sleep(10.5)
    jwks_before = oidc_provider.requests().get("/jwks", 0)
    listed = await kubectl(op_stack.kubeconfig(new_token, name="new"), "get", "pods")
    assert listed.returncode == 0, listed.stderr
    assert oidc_provider.requests().get("/jwks", 0) == jwks_before + 1
    still = await kubectl(op_stack.kubeconfig(old_token, name="old2"), "get", "pods")
    assert still.returncode == 0, still.stderr  # the old key is still published
