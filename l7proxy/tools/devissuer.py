"""A development OpenID issuer for tests and the local demo: mints tokens, serves discovery/JWKS.

It is a real HTTPS server speaking the same protocol as a production issuer, so the gateway's
discovery, JWKS fetching and key rotation are exercised end to end without any stubbing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import ssl
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

import h11
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from josepy.jws import JWS

RSA_KID = "dev-rsa"
EC_KID = "dev-ec"
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_DISCOVERY_PATH = "/.well-known/openid-configuration"
_JWKS_PATH = "/jwks"
_TOKEN_PATH = "/token"
_MAX_FORM_BYTES = 64 * 1024
# A development server still bounds each connection: a stuck client cannot hold it forever.
_CONNECTION_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class _SigningKey:
    kid: str
    jwk: JWK  # private
    alg: str | None  # published in the JWKS; None lets an RSA key sign both RS* and PS*


@dataclass(frozen=True, slots=True)
class DevClient:
    """A confidential client of the development issuer (the demo's agents and admins):
    `client_credentials` with its secret yields an access token for `subject` in `groups`."""

    client_id: str
    secret: str
    subject: str
    groups: tuple[str, ...] = ()
    audience: str = "l7proxy"
    expires_in: float = 3600


def _rsa_key(kid: str) -> _SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _SigningKey(kid=kid, jwk=JWKRSA(key=private), alg=None)


class DevIssuer:
    """An issuer with an RSA key (`dev-rsa`, RS256) and an EC P-256 key (`dev-ec`, ES256).

    The issuer URL is `https://<host>:<port>` once `serve` has bound its port, unless one is
    given up front (for tests that only mint and verify, with no server).
    `requests` counts the requests served by path, so tests can see every fetch.
    """

    def __init__(self, issuer: str | None = None) -> None:
        self._fixed_issuer = issuer
        self._issuer = issuer
        self._rsa_kid = RSA_KID
        self._rotations = 0
        self._keys: dict[str, _SigningKey] = {
            RSA_KID: _rsa_key(RSA_KID),
            EC_KID: _SigningKey(
                kid=EC_KID, jwk=JWKEC(key=ec.generate_private_key(ec.SECP256R1())), alg="ES256"
            ),
        }
        self.requests: Counter[str] = Counter()
        self._clients: dict[str, DevClient] = {}
        # Sent as Cache-Control on discovery and JWKS when set, e.g. "max-age=600".
        self.cache_control: str | None = None

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise RuntimeError("the DevIssuer has no URL until serve() has bound its port")
        return self._issuer

    def rotate(self, *, drop_old: bool = False) -> str:
        """Add a new RSA signing key (the default from now on) and return its kid."""
        self._rotations += 1
        kid = f"{RSA_KID}-{self._rotations}"
        if drop_old:
            for old in [k for k, key in self._keys.items() if isinstance(key.jwk, JWKRSA)]:
                del self._keys[old]
        self._keys[kid] = _rsa_key(kid)
        self._rsa_kid = kid
        return kid

    def add_client(self, client: DevClient) -> None:
        """Register a client for the token endpoint (served once any client exists)."""
        self._clients[client.client_id] = client

    def jwks(self) -> dict[str, object]:
        """The JWKS document: public halves only."""
        keys = []
        for key in self._keys.values():
            entry = dict(key.jwk.public_key().to_json(), kid=key.kid, use="sig")
            if key.alg is not None:
                entry["alg"] = key.alg
            keys.append(entry)
        return {"keys": keys}

    def discovery(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "issuer": self.issuer,
            "jwks_uri": self.issuer + _JWKS_PATH,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted(_RSA_ALGS | {"ES256"}),
        }
        if self._clients:
            doc["token_endpoint"] = self.issuer + _TOKEN_PATH
            doc["grant_types_supported"] = ["client_credentials"]
            doc["token_endpoint_auth_methods_supported"] = [
                "client_secret_basic",
                "client_secret_post",
            ]
        return doc

    def mint(
        self,
        subject: str,
        *,
        groups: Iterable[str] = (),
        audience: str | Sequence[str] = "l7proxy",
        expires_in: float = 3600,
        alg: str = "RS256",
        kid: str | None = None,
        extra_claims: Mapping[str, object] | None = None,
        now: float | None = None,
        typ: str | None = None,
    ) -> str:
        """A signed ID token; `extra_claims` override the defaults and None values remove them.

        `kid` picks one of this issuer's keys (default: the current RSA key, or `dev-ec` for
        ES256). PS* signatures use josepy's maximal PSS salt, which verifiers accept. `typ` sets
        the header's type, e.g. "at+jwt" for an RFC 9068 access token.
        """
        if kid is None:
            kid = self._rsa_kid if alg in _RSA_ALGS else EC_KID
        key = self._keys[kid]
        if not (
            (alg in _RSA_ALGS and isinstance(key.jwk, JWKRSA))
            or (alg == "ES256" and isinstance(key.jwk, JWKEC))
        ):
            raise ValueError(f"key {kid!r} cannot sign {alg}")
        issued = time.time() if now is None else now
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience if isinstance(audience, str) else list(audience),
            "iat": int(issued),
            "exp": int(issued + expires_in),
            "groups": list(groups),
        }
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        jws = JWS.sign(
            payload=json.dumps(claims).encode(),
            key=key.jwk,
            alg=JWASignature.from_json(alg),
            include_jwk=False,
            protect=frozenset({"alg", "kid"} | ({"typ"} if typ is not None else set())),
            kid=kid,
            # josepy holds media types in full and writes them compact ("application/" cut).
            **({} if typ is None else {"typ": f"application/{typ.removeprefix('application/')}"}),
        )
        return jws.to_compact().decode("ascii")

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve discovery and JWKS over HTTPS; `nursery.start` returns the bound port."""
        # A host name may resolve to several addresses, each bound to its own free port; the
        # issuer URL names one, so only that one is served.
        listener, *extra = await trio.open_tcp_listeners(port, host=host)
        for other in extra:
            await other.aclose()
        bound = listener.socket.getsockname()[1]
        if self._fixed_issuer is None:
            authority = f"[{host}]" if ":" in host else host
            self._issuer = f"https://{authority}:{bound}"
        tls_listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, [tls_listener])
            task_status.started(bound)

    async def _handle(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        """One request per connection; a client that breaks off only ends its own connection."""
        try:
            async with stream:
                with trio.move_on_after(_CONNECTION_TIMEOUT):
                    await self._answer(stream)
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            return

    async def _answer(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        conn = h11.Connection(h11.SERVER)
        received = await _read_request(conn, stream)
        if received is None:
            return
        request, form = received
        path = request.target.decode("ascii", "replace").partition("?")[0]
        self.requests[path] += 1
        extra_headers: list[tuple[str, str]] = []
        if path == _TOKEN_PATH and self._clients:
            status, doc = self._token(request, form)
            extra_headers.append(("Cache-Control", "no-store"))
            if status == 401:
                extra_headers.append(("WWW-Authenticate", 'Basic realm="dev-issuer"'))
        else:
            status, doc = self._route(request.method, path)
            if status == 200 and self.cache_control is not None:
                extra_headers.append(("Cache-Control", self.cache_control))
        body = json.dumps(doc).encode()
        response = h11.Response(
            status_code=status,
            headers=[
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *extra_headers,
            ],
        )
        await stream.send_all(
            conn.send(response) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )

    def _route(self, method: bytes, path: str) -> tuple[int, dict[str, object]]:
        if path not in (_DISCOVERY_PATH, _JWKS_PATH):
            return 404, {"error": "not found"}
        if method != b"GET":
            return 405, {"error": "method not allowed"}
        return 200, self.discovery() if path == _DISCOVERY_PATH else self.jwks()

    def _token(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, object]]:
        """RFC 6749 §4.4 for the registered clients: client_secret_basic or _post, then an
        access token (a JWT for the gateway's audience) for the client's subject and groups."""
        if request.method != b"POST":
            return 405, {"error": "invalid_request", "error_description": "POST only"}
        form = {
            k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items() if len(v) == 1
        }
        client_id, secret = _basic_credentials(request.headers)
        if client_id is None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        client = self._clients.get(client_id or "")
        if (
            client is None
            or secret is None
            or not hmac.compare_digest(secret.encode(), client.secret.encode())
        ):
            return 401, {"error": "invalid_client", "error_description": "unknown client or secret"}
        if form.get("grant_type") != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "only client_credentials is offered",
            }
        token = self.mint(
            client.subject,
            groups=client.groups,
            audience=client.audience,
            expires_in=client.expires_in,
            extra_claims={"client_id": client.client_id},
        )
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(client.expires_in),
        }


def _basic_credentials(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """(client_id, secret) from `Authorization: Basic`, each part form-decoded (RFC 6749
    §2.3.1); (None, None) when there is no such header or it cannot be read."""
    for name, value in headers:
        if name.lower() != b"authorization" or value[:6].lower() != b"basic ":
            continue
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return None, None
        return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
    return None, None


async def _read_request(
    conn: h11.Connection, stream: trio.abc.ReceiveStream
) -> tuple[h11.Request, bytes] | None:
    """The request head and its (small) body once the whole request has arrived; None if the
    client went away or sent more than a token request's form can be."""
    request = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(16 * 1024)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_FORM_BYTES:
                return None
        elif isinstance(event, h11.EndOfMessage):
            return (request, bytes(body)) if request is not None else None
        elif isinstance(event, h11.ConnectionClosed):
            return None
