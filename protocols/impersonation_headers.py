"""The `Impersonate-*` request headers, read as kube-apiserver reads them.

Follows buildImpersonationRequests (k8s.io/apiserver, endpoints/filters/impersonation.go):
`Impersonate-User` names the user and an empty value means no impersonation;
`Impersonate-Group` repeats, one group per field line (values are not split on commas);
`Impersonate-Uid` names the uid; `Impersonate-Extra-<key>` repeats, one value per field
line, its key lower-cased and then percent-decoded (a key that does not decode is kept
as sent). Groups, extras or a uid without a user are an error, as they are in kube.

Two stricter choices, since the gateway acts on the answer instead of passing the
headers on: a second `Impersonate-User` or `Impersonate-Uid` field is refused, where
Go would silently take the first, and so is a value that is not UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

_USER = b"impersonate-user"
_GROUP = b"impersonate-group"
_UID = b"impersonate-uid"
_EXTRA_PREFIX = b"impersonate-extra-"
# url.PathUnescape fails on a '%' not followed by two hex digits (the key is lower-cased).
_BAD_ESCAPE = re.compile(r"%(?![0-9a-f]{2})")


@dataclass(frozen=True, slots=True)
class ImpersonationRequest:
    """Who the caller asks to act as. `user` is never empty: without a user there is
    no impersonation at all. `extra` keeps keys and values in the order sent."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str | None = None
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class InvalidImpersonation(ValueError):
    """The impersonation headers cannot be honoured as sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_impersonation(headers: Sequence[tuple[bytes, bytes]]) -> ImpersonationRequest | None:
    """The impersonation the headers ask for, None when they ask for none."""
    users: list[str] = []
    groups: list[str] = []
    uids: list[str] = []
    extra: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if name == _USER:
            users.append(_text(raw_value, "Impersonate-User"))
        elif name == _GROUP:
            groups.append(_text(raw_value, "Impersonate-Group"))
        elif name == _UID:
            uids.append(_text(raw_value, "Impersonate-Uid"))
        elif name.startswith(_EXTRA_PREFIX):
            field = _text(raw_name, "an Impersonate-Extra- field name")
            key = _extra_key(field[len(_EXTRA_PREFIX) :])
            extra.setdefault(key, []).append(_text(raw_value, f"Impersonate-Extra-{key}"))
    user = _single(users, "Impersonate-User")
    uid = _single(uids, "Impersonate-Uid")
    if not user:
        if groups or extra or uid:
            raise InvalidImpersonation(
                "requested groups, extra or a uid without impersonating a user"
            )
        return None
    return ImpersonationRequest(
        user=user,
        groups=tuple(groups),
        uid=uid,
        extra=tuple((key, tuple(values)) for key, values in extra.items()),
    )


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidImpersonation(f"{what} is not valid UTF-8") from exc


def _single(values: list[str], header: str) -> str | None:
    """The one value of a header kube reads once; empty counts as absent, as in kube."""
    if len(values) > 1:
        raise InvalidImpersonation(f"{header} is given more than once")
    if not values or not values[0]:
        return None
    return values[0]


def _extra_key(encoded: str) -> str:
    """Lower-case, then percent-decode as url.PathUnescape; a key that does not decode
    (a bad escape, or bytes that are not UTF-8) is kept as sent, lower-cased."""
    lowered = encoded.lower()
    if _BAD_ESCAPE.search(lowered):
        return lowered
    try:
        return unquote(lowered, errors="strict")
    except UnicodeDecodeError:
        return lowered
