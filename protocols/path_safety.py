"""Request targets that another reader could understand differently, refused up front.

The gateway authorizes what `resolve` makes of a target and then forwards the very same
bytes. That is only sound if every reader on the way (kube-apiserver and Go's net/url, a
load balancer in front of EKS, a path-normalising proxy) reads the target as `resolve`
does, so a target that leaves any room for a second reading is refused before it is
authorized, never repaired: a rewritten target would no longer be what was authorized.
The check covers the whole target, `/k8s/<connection>` prefix included.

The rules, each named in the refusal message:

- no control character (0x00-0x1f, 0x7f) and no non-ASCII character, raw;
- no `#` fragment: clients never send one and parsers disagree on where it starts;
- origin form only, starting with `/`: never absolute form (`https://host/path`),
  authority form (`host:443`) or anything else;
- in the path, percent-encoding is `%` and two hex digits, and encodes no control
  character (`%00`-`%1f`, `%7f`), no non-ASCII byte (`%80`-`%ff`), no `/` (`%2f`), no `\\`
  (`%5c`) and no `%` (`%25`, a double encoding a second decoder would undo);
- no raw `\\` in the path, which some servers take for `/`;
- no `.` or `..` path segment, raw or percent-encoded (`%2e`, `%2E%2e`), which a
  normalising reader would resolve away;
- no empty path segment (`//`), which a normalising reader would merge; a single
  trailing `/` is kept, as kube-apiserver routes it;
- in the query, percent-encoding is `%` and two hex digits, and there is no `;`: Go's
  url.ParseQuery drops a pair holding one where other parsers split the pair there;
- the query names `watch` and `fieldSelector` at most once each: they decide the verb
  and the name that are authorized, so two values, even equal ones, are refused rather
  than trusting every reader to pick the same one.
"""

from __future__ import annotations

import json
import re
from typing import NoReturn
from urllib.parse import unquote, unquote_plus

# Beyond this many characters a refusal message stops quoting the target.
_EXCERPT_LIMIT = 100

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# RFC 9112 §3.2.3 authority-form (host ":" port) and RFC 3986 §3.1 scheme ":" of
# absolute-form; the former is tested first, since "host:443" also reads as a scheme.
_AUTHORITY_FORM = re.compile(r"[^/]*:[0-9]*")
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_DOT_SEGMENTS = frozenset({".", ".."})
# Query parameters whose value becomes part of what is authorized (see `resolve`).
_SINGLE_PARAMETERS = ("watch", "fieldSelector")


class UnsafeRequest(ValueError):
    """The request target could be read differently by the cluster than by the gateway."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_target(target: str) -> None:
    """Raise UnsafeRequest unless `target` has exactly one reading; never changes it."""
    if _CONTROL.search(target):
        _refuse("request target contains a control character", target)
    if _NON_ASCII.search(target):
        _refuse("request target contains a non-ASCII character", target)
    if "#" in target:
        _refuse("request target contains a fragment", target)
    if not target.startswith("/"):
        if _AUTHORITY_FORM.fullmatch(target):
            _refuse("request target is in authority form", target)
        if _ABSOLUTE_FORM.match(target):
            _refuse("request target is in absolute form", target)
        _refuse("request target does not start with '/'", target)
    path, _, query = target.partition("?")
    _check_path(path, target)
    _check_query(query, target)


def _check_path(path: str, target: str) -> None:
    if _BAD_ESCAPE.search(path):
        _refuse("request path contains invalid percent-encoding", target)
    for escape in _ESCAPE.finditer(path):
        if rule := _encoded_byte_rule(int(escape.group(1), 16)):
            _refuse(rule, target)
    if "\\" in path:
        _refuse("request path contains a backslash", target)
    if "//" in path:
        _refuse("request path contains an empty segment", target)
    # Only ASCII other than '/' and '%' can be encoded by now, so decoding a segment
    # cannot fail and cannot split it.
    segments = path.split("/")
    if "%" in path:
        segments = [unquote(segment) for segment in segments]
    if not _DOT_SEGMENTS.isdisjoint(segments):
        _refuse("request path contains a dot segment", target)


def _encoded_byte_rule(byte: int) -> str | None:
    """The rule a percent-encoded byte of the path breaks, if any."""
    if byte < 0x20 or byte == 0x7F:
        return "request path contains an encoded control character"
    if byte >= 0x80:
        return "request path contains an encoded non-ASCII byte"
    if byte == ord("/"):
        return "request path contains an encoded slash"
    if byte == ord("\\"):
        return "request path contains an encoded backslash"
    if byte == ord("%"):
        return "request path contains an encoded percent sign"
    return None


def _check_query(query: str, target: str) -> None:
    if _BAD_ESCAPE.search(query):
        _refuse("request query contains invalid percent-encoding", target)
    if ";" in query:
        _refuse("request query contains a semicolon", target)
    seen: set[str] = set()
    for pair in query.split("&"):
        key = unquote_plus(pair.partition("=")[0])
        if key in _SINGLE_PARAMETERS:
            if key in seen:
                _refuse(f'request query repeats the "{key}" parameter', target)
            seen.add(key)


def _refuse(rule: str, target: str) -> NoReturn:
    """Raise for `rule`, quoting at most the start of the target, escaped for logs."""
    excerpt = target[:_EXCERPT_LIMIT] + ("..." if len(target) > _EXCERPT_LIMIT else "")
    raise UnsafeRequest(f"{rule}: {json.dumps(excerpt)}")
