"""OpenID discovery, client authentication and the token endpoint (RFC 6749, 7523, 8414).

These are the parts every grant shares; the grants themselves live in `grants.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from josepy.jws import JWS

from l7proxy.identity.login.http import Http, LoginError, check_url

DISCOVERY_PATH = "/.well-known/openid-configuration"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_LIFETIME = 60  # seconds: a client assertion is used once, right away
_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class OAuthError(LoginError):
    """The provider answered an OAuth error (`error`, RFC 6749 §5.2)."""

    def __init__(self, where: str, error: str, description: str) -> None:
        detail = f": {description}" if description else ""
        super().__init__(f"{where} refused: {error}{detail}")
        self.error = error


@dataclass(frozen=True, slots=True)
class Provider:
    """The endpoints and capabilities from the provider's discovery document."""

    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None
    device_authorization_endpoint: str | None
    auth_methods: frozenset[str]


def discover(http: Http, issuer: str) -> Provider:
    """`<issuer>/.well-known/openid-configuration`, whose `issuer` must equal ours exactly
    (OpenID Discovery §4.3): otherwise the tokens would not be accepted for this issuer."""
    check_url(issuer, "--issuer")
    doc = http.get_json(issuer.rstrip("/") + DISCOVERY_PATH)
    if doc.get("issuer") != issuer:
        raise LoginError(
            f"the discovery document of {issuer} names the issuer {doc.get('issuer')!r}; "
            "pass that exact value as --issuer"
        )

    def endpoint(name: str) -> str | None:
        value = doc.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise LoginError(f"{issuer}: discovery field {name} is not a URL")
        return check_url(value, name)

    token_endpoint = endpoint("token_endpoint")
    if token_endpoint is None:
        raise LoginError(f"{issuer}: the discovery document has no token_endpoint")
    methods = doc.get("token_endpoint_auth_methods_supported")
    return Provider(
        issuer=issuer,
        token_endpoint=token_endpoint,
        authorization_endpoint=endpoint("authorization_endpoint"),
        device_authorization_endpoint=endpoint("device_authorization_endpoint"),
        auth_methods=frozenset(
            m for m in (methods if isinstance(methods, list) else []) if isinstance(m, str)
        ),
    )


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """How this client proves itself at the token endpoint: not at all (a public client), a
    secret (`client_secret_basic`, or `_post` where basic is not offered), or a signed
    assertion (`private_key_jwt`, RFC 7523)."""

    client_id: str
    secret: str | None = None
    key: JWK | None = None
    key_alg: str | None = None
    key_id: str | None = None

    @property
    def is_public(self) -> bool:
        return self.secret is None and self.key is None

    def apply(self, provider: Provider, fields: dict[str, str], headers: dict[str, str]) -> None:
        if self.key is not None and self.key_alg is not None:
            fields["client_id"] = self.client_id
            fields["client_assertion_type"] = CLIENT_ASSERTION_TYPE
            fields["client_assertion"] = self._assertion(
                self.key, self.key_alg, provider.token_endpoint
            )
        elif self.secret is not None:
            if "client_secret_basic" in provider.auth_methods or not provider.auth_methods:
                # RFC 6749 §2.3.1: each part is form-encoded before joining and base64.
                pair = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:
                fields["client_id"] = self.client_id
                fields["client_secret"] = self.secret
        else:
            fields["client_id"] = self.client_id

    def _assertion(self, key: JWK, alg: str, audience: str) -> str:
        """A one-use JWT naming this client, for the token endpoint (OIDC Core §9)."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME,
        }
        jws = JWS.sign(
            payload=json.dumps(claims).encode(),
            key=key,
            alg=JWASignature.from_json(alg),
            include_jwk=False,
            protect=frozenset({"alg", "kid"}),
            kid=self.key_id,
        )
        return str(jws.to_compact().decode("ascii"))


def load_private_key(path: Path, key_id: str | None) -> tuple[JWK, str, str]:
    """A PEM private key (RSA → RS256, EC → ES256/384/512), its alg and its kid (the RFC 7638
    thumbprint unless one is given, which is what providers derive from a registered JWK)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoginError(f"cannot read --private-key-file {path}: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise LoginError(
            f"--private-key-file {path} is not an unencrypted PEM private key"
        ) from None
    jwk: JWK
    if isinstance(private, rsa.RSAPrivateKey):
        jwk, alg = JWKRSA(key=private), "RS256"
    elif isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name in _EC_ALGS:
        jwk, alg = JWKEC(key=private), _EC_ALGS[private.curve.name]
    else:
        raise LoginError(f"--private-key-file {path}: only RSA and EC P-256/384/521 keys work")
    kid = key_id or thumbprint(jwk)
    return jwk, alg, kid


def thumbprint(jwk: JWK) -> str:
    """RFC 7638 SHA-256 thumbprint of the public key, base64url without padding."""
    digest = jwk.public_key().thumbprint()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_request(
    http: Http, provider: Provider, auth: ClientAuth, fields: dict[str, str], *, what: str
) -> dict[str, object]:
    """POST to the token endpoint; the token response, or `OAuthError` with the provider's
    `error` (callers act on `authorization_pending`, `invalid_grant`, …)."""
    headers: dict[str, str] = {}
    body = dict(fields)
    auth.apply(provider, body, headers)
    answer = http.post_form(provider.token_endpoint, body, headers)
    return oauth_answer(answer.status, answer.doc, what=what)


def oauth_answer(status: int, doc: dict[str, object], *, what: str) -> dict[str, object]:
    """The document of a successful answer; an `OAuthError` for an OAuth error answer."""
    error = doc.get("error")
    if status == 200 and error is None:
        return doc
    description = doc.get("error_description")
    raise OAuthError(
        what,
        error if isinstance(error, str) else f"HTTP {status}",
        description if isinstance(description, str) else "",
    )


def jwt_claims(token: str) -> dict[str, object] | None:
    """The payload of a compact JWS, *unverified*: only for our own bookkeeping (expiry, nonce).
    The gateway verifies every token it is given; this never decides access."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None
