"""RFC 9112 §6 request framing: the header combinations a gateway must refuse, since the
cluster behind it could read the body's end differently (request smuggling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# Longer lengths are refused: no Kubernetes request body is an exabyte.
_MAX_LENGTH_DIGITS: Final = 18


def framing_problem(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """Why a request head's body framing is ambiguous, or None when it is not."""
    te = [v for k, v in headers if k.lower() == b"transfer-encoding"]
    cl = [v for k, v in headers if k.lower() == b"content-length"]
    if te and cl:
        return "both Transfer-Encoding and Content-Length"
    if len(te) > 1 or len(cl) > 1:
        return "repeated framing header"
    if te and te[0].strip().lower() != b"chunked":
        return "unsupported Transfer-Encoding"
    if cl:
        length = cl[0].strip(b" \t")
        if not (length.isdigit() and length.isascii()) or len(length) > _MAX_LENGTH_DIGITS:
            return "invalid Content-Length"
    return None
