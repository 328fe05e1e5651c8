"""Header hygiene for a proxy (RFC 9110 §7.6.1, RFC 9113 §8.2.2).

What a caller sends never reaches a cluster unexamined: hop-by-hop fields, `Proxy-*`,
the caller's own `Authorization`, and every `Impersonate-*` field are removed before the
gateway adds the connection's credential.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

Headers = list[tuple[bytes, bytes]]

# Fields that describe one hop, never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Connection-specific fields an HTTP/2 message must not carry (RFC 9113 §8.2.2).
HTTP2_FORBIDDEN: Final = HOP_BY_HOP | {b"host"}

IMPERSONATE_PREFIX: Final = b"impersonate-"


def impersonation_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Names of the `Impersonate-*` fields present, canonically capitalised, for the
    refusal message (HTTP/2 sends them lower-case)."""
    return sorted(
        {
            "-".join(part.capitalize() for part in k.decode("latin-1").split("-"))
            for k, _ in headers
            if k.lower().startswith(IMPERSONATE_PREFIX)
        }
    )


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Field names listed in `Connection`, which are hop-by-hop too."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def request_headers_for_upstream(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The caller's fields that may reach a cluster: everything end-to-end except
    credentials, impersonation and proxy fields. `host` is left to the caller to set, and
    so is the body's framing: the gateway frames what it forwards itself, so the client's
    `Content-Length` (like `Transfer-Encoding`) never reaches a cluster to disagree with it."""
    headers = list(headers)
    extra_hop = connection_tokens(headers)
    kept: Headers = []
    for name, value in headers:
        lower = name.lower()
        if (
            lower in HOP_BY_HOP
            or lower in extra_hop
            or lower == b"host"
            or lower == b"content-length"
            or lower == b"authorization"
            or lower.startswith(b"proxy-")
            or lower.startswith(IMPERSONATE_PREFIX)
        ):
            continue
        kept.append((lower, value))
    return kept


def response_headers_for_client(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The cluster's response fields that are end-to-end (framing is re-done per hop)."""
    headers = list(headers)
    extra_hop = connection_tokens(headers)
    return [
        (name.lower(), value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP
        and name.lower() not in extra_hop
        and not name.lower().startswith(b"proxy-")
    ]


def upgrade_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The protocol a request asks to switch to (RFC 9110 §7.8): `Upgrade` offered and
    named in `Connection`; None for an ordinary request."""
    headers = list(headers)
    if b"upgrade" not in connection_tokens(headers):
        return None
    for name, value in headers:
        if name.lower() == b"upgrade" and value.strip():
            return value.strip()
    return None
