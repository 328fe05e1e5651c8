"""The grants: authorization code + PKCE on a loopback redirect (RFC 6749, 7636, 8252), device
authorization (RFC 8628), client credentials, and refresh.

Each returns the provider's token response. None of them prints a token, a code or a secret:
what the user is shown (a URL to open, a user code to type) goes through `announce`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlencode, urlsplit

from l7proxy.identity.login.http import Http, LoginError
from l7proxy.identity.login.oauth import (
    ClientAuth,
    OAuthError,
    Provider,
    jwt_claims,
    oauth_answer,
    token_request,
)

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_POLL_INTERVAL = 5.0  # RFC 8628 §3.2: when the provider names none
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
_CALLBACK_PATH = "/callback"
_DONE_PAGE = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>l7proxy</title></head>
<body><p>Signed in. You can close this window and go back to the terminal.</p></body></html>"""
_FAILED_PAGE = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>l7proxy</title></head>
<body><p>The sign-in did not succeed; the terminal says why.</p></body></html>"""

Announce = Callable[[str], None]


def _scope_fields(scopes: Sequence[str]) -> dict[str, str]:
    return {"scope": " ".join(scopes)} if scopes else {}


def client_credentials(
    http: Http,
    provider: Provider,
    auth: ClientAuth,
    *,
    scopes: Sequence[str],
    extra: Mapping[str, str],
) -> dict[str, object]:
    """The agent's own credential (a secret or a signed assertion) for a token; no person."""
    if auth.is_public:
        raise LoginError(
            "--grant client-credentials needs --client-secret, --client-secret-file "
            "or --private-key-file"
        )
    fields = {"grant_type": "client_credentials", **_scope_fields(scopes), **extra}
    return token_request(http, provider, auth, fields, what="the token endpoint")


def refresh(
    http: Http, provider: Provider, auth: ClientAuth, refresh_token: str
) -> dict[str, object]:
    """A new token from a cached refresh token (same scopes as the original grant)."""
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(http, provider, auth, fields, what="the token endpoint (refresh)")


def device_code(
    http: Http,
    provider: Provider,
    auth: ClientAuth,
    *,
    scopes: Sequence[str],
    extra: Mapping[str, str],
    announce: Announce,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, object]:
    """RFC 8628: show where to go and the code to type, then poll at the provider's pace
    (`slow_down` adds 5 s) until approved, refused or expired."""
    endpoint = provider.device_authorization_endpoint
    if endpoint is None:
        raise LoginError(f"{provider.issuer} does not offer the device grant")
    fields = {**_scope_fields(scopes), **extra}
    headers: dict[str, str] = {}
    auth.apply(provider, fields, headers)
    answer = http.post_form(endpoint, fields, headers)
    doc = oauth_answer(answer.status, answer.doc, what="the device authorization endpoint")
    device = doc.get("device_code")
    user_code = doc.get("user_code")
    # `verification_url` is what some providers (Google) still send.
    uri = doc.get("verification_uri", doc.get("verification_url"))
    if not (isinstance(device, str) and isinstance(user_code, str) and isinstance(uri, str)):
        raise LoginError(f"{endpoint} answered without device_code, user_code or verification_uri")
    complete = doc.get("verification_uri_complete")
    expires_in = _number(doc.get("expires_in"), 600.0)
    interval = _number(doc.get("interval"), DEFAULT_POLL_INTERVAL)
    lines = ["To sign in, use a browser on any device:"]
    if isinstance(complete, str):
        lines.append(f"  open {complete}")
        lines.append(f"  (or open {uri} and enter the code {user_code})")
    else:
        lines.append(f"  open {uri} and enter the code {user_code}")
    lines.append(f"Waiting up to {expires_in:.0f} s for the sign-in to be approved...")
    announce("\n".join(lines))
    deadline = clock() + expires_in
    while True:
        sleep(interval)
        if clock() >= deadline:
            raise LoginError("the device code expired before the sign-in was approved")
        try:
            return token_request(
                http,
                provider,
                auth,
                {"grant_type": DEVICE_CODE_GRANT, "device_code": device},
                what="the token endpoint",
            )
        except OAuthError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += SLOW_DOWN_STEP
                continue
            if exc.error == "access_denied":
                raise LoginError("the sign-in was refused (access_denied)") from None
            if exc.error == "expired_token":
                raise LoginError(
                    "the device code expired before the sign-in was approved"
                ) from None
            raise


def _number(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_code(
    http: Http,
    provider: Provider,
    auth: ClientAuth,
    *,
    scopes: Sequence[str],
    extra: Mapping[str, str],
    announce: Announce,
    open_browser: bool,
    redirect_port: int,
    timeout: float,
) -> dict[str, object]:
    """A person signs in with a browser; the code comes back to a one-shot HTTP server on
    127.0.0.1 (RFC 8252 §7.3) and is redeemed with the PKCE verifier."""
    endpoint = provider.authorization_endpoint
    if endpoint is None:
        raise LoginError(f"{provider.issuer} does not offer the authorization code grant")
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with _CallbackServer(redirect_port) as server:
        redirect_uri = f"http://127.0.0.1:{server.port}{_CALLBACK_PATH}"
        query = urlencode(
            {
                "response_type": "code",
                "client_id": auth.client_id,
                "redirect_uri": redirect_uri,
                **_scope_fields(scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                **extra,
            }
        )
        url = f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
        if open_browser:
            announce(f"Opening a browser to sign in; if none opens, visit:\n  {url}")
            webbrowser.open(url)
        else:
            announce(f"To sign in, open this URL in a browser:\n  {url}")
        params = server.wait(state, timeout)
    issuer = params.get("iss")  # RFC 9207: which provider answered (mix-up defence)
    if issuer is not None and issuer != provider.issuer:
        raise LoginError(f"the sign-in answer came from {issuer!r}, not {provider.issuer!r}")
    if "error" in params:
        raise OAuthError("the sign-in", params["error"], params.get("error_description", ""))
    code = params.get("code")
    if not code:
        raise LoginError("the sign-in answer carried no authorization code")
    tokens = token_request(
        http,
        provider,
        auth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        what="the token endpoint",
    )
    id_token = tokens.get("id_token")
    if isinstance(id_token, str):
        claims = jwt_claims(id_token)
        if claims is None or claims.get("nonce") != nonce:
            raise LoginError("the ID token does not carry this sign-in's nonce")
    return tokens


class _CallbackServer:
    """Waits for the browser's redirect to 127.0.0.1:<port>/callback with our `state`.

    Anything else (a favicon, a stale tab with another state) gets an error page and the wait
    goes on. Its request log is silenced: the query holds the authorization code.
    """

    def __init__(self, port: int) -> None:
        self._expected_state = ""
        self._result: dict[str, str] | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._on_request(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        try:
            self._server = HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise LoginError(
                f"cannot listen on 127.0.0.1:{port} for the sign-in redirect: {exc.strerror}"
            ) from None
        self.port = int(self._server.server_address[1])

    def __enter__(self) -> _CallbackServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.server_close()

    def wait(self, state: str, timeout: float) -> dict[str, str]:
        self._expected_state = state
        deadline = time.monotonic() + timeout
        while self._result is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoginError(f"no sign-in arrived within {timeout:g} s")
            self._server.timeout = remaining
            self._server.handle_request()
        return self._result

    def _on_request(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        accepted = parts.path == _CALLBACK_PATH and secrets.compare_digest(
            params.get("state", "").encode(), self._expected_state.encode()
        )
        ok = accepted and "code" in params and "error" not in params
        body = _DONE_PAGE if ok else _FAILED_PAGE
        request.send_response(200 if accepted else 400)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(body)
        if accepted:
            self._result = params
