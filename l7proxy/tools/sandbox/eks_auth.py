"""EKS bearer tokens in the sandbox, verified the way EKS verifies them.

A `k8s-aws-v1.` token is a presigned STS `GetCallerIdentity` URL. As aws-iam-authenticator's
`pkg/token` does, the sandbox checks the URL's form (scheme and host of the configured STS,
path `/`, only SigV4 query parameters, each once, `Action=GetCallerIdentity`, `x-k8s-aws-id`
signed, `X-Amz-Expires` within 0..900, `X-Amz-Date` under 15 minutes old), then sends the
request to STS with the cluster's name in `x-k8s-aws-id` and takes the ARN STS answers as the
caller. The sandbox cannot check the signature itself (it holds no secret key): that is STS's
job, as in EKS.

The username is the STS ARN as EKS access entries map it by default: for a role,
`arn:aws:sts::<account>:assumed-role/<role>/<session name>`; for an IAM user, its ARN.

For local STS stand-ins: moto's server finds the operation and the caller's access key in the
`Authorization` header, not in a presigned query, so with `signature_in_header` (the default)
the query's credential and signature are presented there as well. Real STS refuses a request
signed both ways; turn it off for one.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import json
import re
import ssl
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import h11
import trio

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
# aws-iam-authenticator's limits.
MAX_TOKEN_BYTES = 4096
PRESIGNED_URL_LIFETIME = 15 * 60
MAX_EXPIRES = 900
ALLOWED_PARAMETERS = frozenset(
    {
        "action",
        "version",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-signedheaders",
    }
)
# A verified token is trusted again for this long (kube-apiserver's webhook token cache
# keeps answers for 2 minutes; shorter here), never past its own 15 minutes.
CACHE_TTL = 60.0
CACHE_LIMIT = 4096
STS_TIMEOUT = 5.0
_BODY_LIMIT = 64 * 1024
_ARN = re.compile(r"arn:[\w-]+:(sts::\d{12}:assumed-role/[^/]+/.+|iam::\d{12}:user/.+)")


class TokenRejected(Exception):
    """The token is not one EKS would accept, or STS does not vouch for it. The message
    says which rule failed; it never contains the token."""


@dataclass(frozen=True, slots=True)
class PresignedUrl:
    url: str
    params: dict[str, str]  # keys lower-cased
    signed_at: float  # X-Amz-Date, Unix seconds


def decode_token(token: str) -> str:
    """The presigned URL inside a token: prefix, then base64url without padding."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("token is too large")
    if not token.startswith(TOKEN_PREFIX):
        raise TokenRejected(f"token is missing expected {TOKEN_PREFIX!r} prefix")
    body = token[len(TOKEN_PREFIX) :]
    if not re.fullmatch(r"[A-Za-z0-9_-]*", body) or len(body) % 4 == 1:
        raise TokenRejected("token is not base64url without padding")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TokenRejected("token does not decode to a URL") from exc


def check_token(token: str, *, sts_endpoint: str, now: float) -> PresignedUrl:
    """EKS's rules on the token's form, in aws-iam-authenticator's order."""
    url = decode_token(token)
    parts = urlsplit(url)
    expected = urlsplit(sts_endpoint)
    if parts.scheme != expected.scheme:
        raise TokenRejected(f"unexpected scheme {parts.scheme!r} in pre-signed URL")
    if parts.netloc != expected.netloc:
        raise TokenRejected(f"unexpected hostname {parts.netloc!r} in pre-signed URL")
    if parts.path != "/":
        raise TokenRejected("unexpected path in pre-signed URL")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise TokenRejected("malformed query parameter") from exc
    params: dict[str, str] = {}
    for key, values in query.items():
        lower = key.lower()
        if lower in params:
            raise TokenRejected(f"duplicate query parameter found: {key!r}")
        if lower not in ALLOWED_PARAMETERS:
            raise TokenRejected(f"non-whitelisted query parameter {key!r}")
        if len(values) != 1:
            raise TokenRejected("query parameter with multiple values not supported")
        params[lower] = values[0]
    if params.get("action") != "GetCallerIdentity":
        raise TokenRejected("unexpected action parameter in pre-signed URL")
    signed = [name.lower() for name in params.get("x-amz-signedheaders", "").split(";")]
    if CLUSTER_ID_HEADER not in signed:
        raise TokenRejected(
            f"client did not sign the {CLUSTER_ID_HEADER} header in the pre-signed URL"
        )
    expires = params.get("x-amz-expires", "")
    if not (expires.isascii() and expires.isdigit() and int(expires) <= MAX_EXPIRES):
        raise TokenRejected(f"invalid X-Amz-Expires parameter in pre-signed URL: {expires!r}")
    date = params.get("x-amz-date")
    if not date:
        raise TokenRejected("X-Amz-Date parameter must be present in pre-signed URL")
    try:
        signed_at = float(calendar.timegm(time.strptime(date, "%Y%m%dT%H%M%SZ")))
    except ValueError as exc:
        raise TokenRejected(f"error parsing X-Amz-Date parameter {date!r}") from exc
    if now > signed_at + PRESIGNED_URL_LIFETIME:
        raise TokenRejected("X-Amz-Date parameter is expired (15 minute expiration)")
    return PresignedUrl(url, params, signed_at)


def caller_arn(body: bytes) -> str:
    """The ARN in a GetCallerIdentity answer, JSON (as EKS asks for) or XML (moto's)."""
    try:
        if body.lstrip().startswith(b"{"):
            document = json.loads(body)
            result = document["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
            arn = result["Arn"]
        else:
            root = ET.fromstring(body)
            arn = next((el.text for el in root.iter() if el.tag.rpartition("}")[2] == "Arn"), None)
    except (ValueError, KeyError, TypeError, ET.ParseError) as exc:
        raise TokenRejected("STS answered something other than a caller identity") from exc
    if not isinstance(arn, str) or not _ARN.fullmatch(arn):
        raise TokenRejected(f"STS answered an unexpected principal ARN {arn!r}")
    return arn


class EksTokenVerifier:
    """Turns EKS tokens for one cluster into usernames, asking `sts_endpoint` about each
    token once per `CACHE_TTL` (concurrent requests with one token share the question)."""

    def __init__(
        self,
        *,
        sts_endpoint: str,
        cluster_name: str,
        ssl_context: ssl.SSLContext | None = None,
        signature_in_header: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(sts_endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) STS endpoint URL, got {sts_endpoint!r}")
        self.sts_endpoint = sts_endpoint
        self.cluster_name = cluster_name
        self._ssl_context = ssl_context
        self._signature_in_header = signature_in_header
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, trio.Event] = {}
        self.sts_calls = 0  # GetCallerIdentity requests made, for tests
        self.rejections: deque[str] = deque(maxlen=100)  # why recent tokens were refused

    async def username(self, token: str) -> str:
        """The caller's username; raises `TokenRejected`."""
        key = hashlib.sha256(token.encode()).hexdigest()
        while True:
            cached = self._cache.get(key)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            pending = self._pending.get(key)
            if pending is None:
                break
            await pending.wait()  # one STS question per token, however many requests carry it
        done = self._pending[key] = trio.Event()
        try:
            now = self._clock()
            presigned = check_token(token, sts_endpoint=self.sts_endpoint, now=now)
            arn = await self._ask_sts(presigned)
        except TokenRejected as exc:
            self.rejections.append(str(exc))
            raise
        finally:
            del self._pending[key]
            done.set()
        until = min(now + CACHE_TTL, presigned.signed_at + PRESIGNED_URL_LIFETIME)
        self._remember(key, arn, until)
        return arn

    def _remember(self, key: str, username: str, until: float) -> None:
        now = self._clock()
        if len(self._cache) >= CACHE_LIMIT:
            for stale in [k for k, (_, end) in self._cache.items() if end <= now]:
                del self._cache[stale]
            while len(self._cache) >= CACHE_LIMIT:
                del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[key] = (username, until)

    async def _ask_sts(self, presigned: PresignedUrl) -> str:
        parts = urlsplit(presigned.url)
        headers = [
            (CLUSTER_ID_HEADER, self.cluster_name),
            ("accept", "application/json"),
        ]
        if self._signature_in_header:
            credential = presigned.params.get("x-amz-credential", "")
            signed = presigned.params.get("x-amz-signedheaders", "")
            signature = presigned.params.get("x-amz-signature", "")
            headers.append(
                (
                    "authorization",
                    f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, "
                    f"Signature={signature}",
                )
            )
        self.sts_calls += 1
        try:
            with trio.fail_after(STS_TIMEOUT):
                status, body = await _get(
                    self.sts_endpoint, "/?" + parts.query, headers, self._ssl_context
                )
        except trio.TooSlowError as exc:
            raise TokenRejected(f"STS did not answer within {STS_TIMEOUT:g}s") from exc
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            raise TokenRejected(f"error during GET to STS: {type(exc).__name__}") from exc
        if status != 200:
            text = body[:300].decode(errors="replace")
            raise TokenRejected(f"error from AWS (expected 200, got {status}). Body: {text}")
        return caller_arn(body)


async def _get(
    endpoint: str, target: str, headers: list[tuple[str, str]], context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    """One GET over a fresh connection (HTTP/1.1, plain or TLS): enough for an STS check."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, parts.port or (443 if tls else 80))
    try:
        if tls:
            stream = trio.SSLStream(
                stream, context or ssl.create_default_context(), server_hostname=host
            )
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=target,
            headers=[("host", parts.netloc), ("connection", "close"), *headers],
        )
        await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        status = 0
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(_BODY_LIMIT)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _BODY_LIMIT:
                    raise h11.RemoteProtocolError("STS answered too much")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, body
    finally:
        await trio.aclose_forcefully(stream)
