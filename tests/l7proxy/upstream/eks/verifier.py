"""A token verifier that checks an EKS token the way EKS does (aws-iam-authenticator's
`pkg/token/token.go`), recomputes its signature the way STS does, and asks moto's STS whom it
belongs to."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import time
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

PREFIX = "k8s-aws-v1."
MAX_TOKEN_BYTES = 4096
PRESIGNED_URL_LIFETIME = 15 * 60
ALLOWED_PARAMETERS = {
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
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class TokenRejected(Exception):
    pass


def decode(token: str) -> str:
    """The presigned URL inside a token: prefix, then base64url without padding."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("token is too large")
    if not token.startswith(PREFIX):
        raise TokenRejected(f"token is missing expected {PREFIX!r} prefix")
    body = token[len(PREFIX) :]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", body):
        raise TokenRejected("not base64url without padding")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def check(token: str, *, sts_hosts: set[str], scheme: str = "https") -> dict[str, str]:
    """EKS's format rules, in its order; returns the query parameters, keys lower-cased."""
    url = urlsplit(decode(token))
    if url.scheme != scheme:
        raise TokenRejected(f"unexpected scheme {url.scheme!r} in pre-signed URL")
    if url.netloc not in sts_hosts:
        raise TokenRejected(f"unexpected hostname {url.netloc!r} in pre-signed URL")
    if url.path != "/":
        raise TokenRejected("unexpected path in pre-signed URL")
    params: dict[str, str] = {}
    for key, values in parse_qs(url.query, keep_blank_values=True, strict_parsing=True).items():
        if key.lower() not in ALLOWED_PARAMETERS:
            raise TokenRejected(f"non-whitelisted query parameter {key!r}")
        if len(values) != 1:
            raise TokenRejected("query parameter with multiple values not supported")
        params[key.lower()] = values[0]
    if params.get("action") != "GetCallerIdentity":
        raise TokenRejected("unexpected action parameter in pre-signed URL")
    signed = [h.lower() for h in params.get("x-amz-signedheaders", "").split(";")]
    if "x-k8s-aws-id" not in signed:
        raise TokenRejected("client did not sign the x-k8s-aws-id header in the pre-signed URL")
    expires = int(params.get("x-amz-expires", "-1"))
    if not 0 <= expires <= 900:
        raise TokenRejected(f"invalid X-Amz-Expires parameter in pre-signed URL: {expires}")
    if not params.get("x-amz-date"):
        raise TokenRejected("X-Amz-Date parameter must be present in pre-signed URL")
    if time.time() > signed_at(params) + PRESIGNED_URL_LIFETIME:
        raise TokenRejected("X-Amz-Date parameter is expired (15 minute expiration)")
    return params


def signed_at(params: dict[str, str]) -> float:
    return float(calendar.timegm(time.strptime(params["x-amz-date"], "%Y%m%dT%H%M%SZ")))


def signature_valid(token: str, *, cluster: str, secret_key: str) -> bool:
    """Recompute the SigV4 query signature as STS would, with the header EKS sends."""
    url = urlsplit(decode(token))
    pairs = [
        (k, v) for k, v in (p.split("=", 1) for p in url.query.split("&")) if k != "X-Amz-Signature"
    ]
    given = dict(p.split("=", 1) for p in url.query.split("&"))["X-Amz-Signature"]
    params = parse_qs(url.query)
    signed_headers = params["X-Amz-SignedHeaders"][0].split(";")
    header_values = {"host": url.netloc, "x-k8s-aws-id": cluster}
    canonical_request = "\n".join(
        [
            "GET",
            "/",
            "&".join(f"{k}={v}" for k, v in sorted(pairs)),
            "".join(f"{h}:{header_values[h]}\n" for h in signed_headers),
            ";".join(signed_headers),
            _EMPTY_SHA256,
        ]
    )
    _, date, region, service, terminator = params["X-Amz-Credential"][0].split("/")
    scope = f"{date}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"][0],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def who_is(token: str, *, cluster: str, moto_url: str) -> str:
    """Send the presigned request to moto's STS, as EKS sends it to STS, and return the ARN.

    moto's server routes by the Authorization header and takes the caller's access key from
    it, so the presigned query's credential and signature are presented there too.
    """
    url = decode(token)
    params = parse_qs(urlsplit(url).query)
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={params['X-Amz-Credential'][0]}, "
        f"SignedHeaders={params['X-Amz-SignedHeaders'][0]}, "
        f"Signature={params['X-Amz-Signature'][0]}"
    )
    target = moto_url + "/?" + urlsplit(url).query
    request = urllib.request.Request(
        target,
        headers={
            "x-k8s-aws-id": cluster,
            "accept": "application/json",
            "authorization": authorization,
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    root = ET.fromstring(body)
    arn = next(el.text for el in root.iter() if el.tag.endswith("}Arn") or el.tag == "Arn")
    assert arn is not None
    return arn


def canonical_role_arn(assumed_role_arn: str) -> str:
    """arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION -> arn:aws:iam::ACCOUNT:role/NAME."""
    match = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/(.+)", assumed_role_arn)
    if match is None:
        raise TokenRejected(f"not an assumed-role ARN: {assumed_role_arn}")
    partition, account, role, _ = match.groups()
    return f"arn:{partition}:iam::{account}:role/{role}"
