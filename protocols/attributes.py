"""Kubernetes request attributes, resolved the way kube-apiserver's RequestInfo does.

`resolve` ports RequestInfoFactory.NewRequestInfo (k8s.io/apiserver, endpoints/request/
requestinfo.go) with APIPrefixes {"api", "apis"} and GrouplessAPIPrefixes {"api"}, plus the
part of Go's net/url that runs before it: kube-apiserver splits the *percent-decoded* path
and reads the query with url.ParseQuery. Authorizing on anything else would let
`/api/v1/namespaces/%6Bube-system/secrets` be judged as a namespace the cluster never sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote, unquote_plus

from protocols.status import StatusReason


@dataclass(frozen=True, slots=True)
class Attributes:
    """What kube-apiserver's RequestInfoFactory would make of a request.

    Fields follow RequestInfo: empty strings where kube-apiserver leaves them empty.
    """

    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


class UnresolvableRequest(ValueError):
    """kube-apiserver would refuse this request before authorizing it.

    `reason` is the answer it would give: BadRequest where Go's HTTP server rejects the
    request target, InternalError where the WithRequestInfo filter fails.
    """

    def __init__(self, message: str, reason: StatusReason) -> None:
        super().__init__(message)
        self.reason = reason


API_PREFIXES = frozenset({"api", "apis"})
GROUPLESS_API_PREFIXES = frozenset({"api"})

# Path segments that set the verb themselves: the deprecated /watch/ and /proxy/ roots.
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
# Under /proxy/ everything after the name is the proxied path, never a subresource.
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
# /namespaces/{ns}/status is the namespace's subresource, not a resource named "status".
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})

# net/url refuses a URL with an ASCII control byte, or a '%' not followed by two hex digits.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def resolve(method: str, path: str, query: str) -> Attributes:
    """Resolve a request the way kube-apiserver does before it authorizes it.

    `path` and `query` are the raw request target split at the first '?', still
    percent-encoded; the returned `path` is decoded, as RequestInfo.Path is. Raises
    UnresolvableRequest where kube-apiserver would answer with an error instead.
    """
    decoded = _decode_path(path, query)
    info = Attributes(is_resource_request=False, path=decoded, verb=method.lower())

    parts = _split_path(decoded)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return info
    api_prefix, parts = parts[0], parts[1:]
    api_group = ""
    if api_prefix not in GROUPLESS_API_PREFIXES:
        # The prefix is consumed already, so this asks "are there four parts?". Like
        # RequestInfo, such a discovery request keeps the prefix it was recognised by.
        if len(parts) < 3:
            return replace(info, api_prefix=api_prefix)
        api_group, parts = parts[0], parts[1:]
    api_version, parts = parts[0], parts[1:]

    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            url = f"{path}?{query}" if query else path
            raise UnresolvableRequest(
                f"unable to determine kind and namespace from url, {url}",
                StatusReason.InternalError,
            )
        verb, parts = parts[0], parts[1:]
    else:
        verb = _verb_for_method(method)

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    # parts is now resource/name/subresource/anything/else/uninterpreted
    resource = parts[0]
    name = parts[1] if len(parts) > 1 else ""
    has_subresource = len(parts) > 2 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES
    subresource = parts[2] if has_subresource else ""

    if not name and verb == "get":
        params = _first_query_values(query)
        verb = "watch" if _is_true(params.get("watch")) else "list"
        name = _field_selector_name(params.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"

    return Attributes(
        is_resource_request=True,
        path=decoded,
        verb=verb,
        api_prefix=api_prefix,
        api_group=api_group,
        api_version=api_version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def _split_path(path: str) -> list[str]:
    """Segments between slashes, empty ones kept, as requestinfo.go's splitPath."""
    trimmed = path.strip("/")
    return trimmed.split("/") if trimmed else []


def _decode_path(path: str, query: str) -> str:
    """Percent-decode the path as url.ParseRequestURI does, refusing what it refuses.

    A path that is not valid UTF-8 once decoded is refused too: Go would carry the bytes
    through, but no Kubernetes object or route has such a name, and a lossy decoding could
    make two different paths look alike to policy.
    """
    if _CONTROL.search(path) or _CONTROL.search(query):
        raise UnresolvableRequest(
            "net/url: invalid control character in URL", StatusReason.BadRequest
        )
    if path != "*" and not path.startswith("/"):
        raise UnresolvableRequest("invalid URI for request", StatusReason.BadRequest)
    if bad := _BAD_ESCAPE.search(path):
        escape = path[bad.start() : bad.start() + 3]
        raise UnresolvableRequest(f'invalid URL escape "{escape}"', StatusReason.BadRequest)
    try:
        return unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise UnresolvableRequest(
            "request path is not UTF-8 once percent-decoded", StatusReason.BadRequest
        ) from exc


def _verb_for_method(method: str) -> str:
    """The verb a method means on a resource; "" for others, as RequestInfo leaves it."""
    match method:
        case "POST":
            return "create"
        case "GET" | "HEAD":
            return "get"
        case "PUT":
            return "update"
        case "PATCH":
            return "patch"
        case "DELETE":
            return "delete"
        case _:
            return ""


def _first_query_values(query: str) -> dict[str, str]:
    """The first value of each query key, parsed as Go's url.ParseQuery parses it.

    Unlike urllib's parse_qs, ParseQuery drops a pair holding ';' or a malformed escape
    instead of keeping it, and kube-apiserver reads the same values we read here.
    """
    values: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair or ";" in pair or _BAD_ESCAPE.search(pair):
            continue
        key, _, value = pair.partition("=")
        key, value = unquote_plus(key, errors="replace"), unquote_plus(value, errors="replace")
        values.setdefault(key, value)
    return values


def _is_true(value: str | None) -> bool:
    """ListOptions' bool decoding: absent, "false" or "0" is false; anything else, even
    an empty value, is true (apimachinery runtime.Convert_Slice_string_To_bool)."""
    return value is not None and value.lower() not in ("false", "0")


def _field_selector_name(selector: str) -> str:
    """The name a list or watch is narrowed to by `metadata.name=<name>`, else "".

    Follows fields.ParseSelector then RequiresExactMatch: terms are split on unescaped
    commas and sorted, any malformed term voids the whole selector, and the first sorted
    `=`/`==` term on metadata.name wins. The name must also pass IsValidPathSegmentName.

    kube-apiserver also drops the name when another list option fails to decode (a bad
    labelSelector, a non-integer limit); such a request then fails with 400 at the
    apiserver whatever was authorized, so that is not replicated here.
    """
    name: str | None = None
    for term in sorted(_split_terms(selector)):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            return ""
        field, operator, raw_value = split
        value = _unescape_value(raw_value)
        if value is None:
            return ""
        if name is None and operator != "!=" and field == "metadata.name":
            name = value
    if name is None or name in (".", "..") or "/" in name or "%" in name:
        return ""
    return name


def _split_terms(selector: str) -> list[str]:
    """Split on commas, except those escaped by a backslash (kept, with the backslash)."""
    terms: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """(field, operator, raw value) at the first operator; "!=" and "==" beat "="."""
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape_value(raw: str) -> str | None:
    r"""Undo `\\`, `\,` and `\=`; None for any other escape or a bare ',' or '='."""
    chars: list[str] = []
    escaped = False
    for char in raw:
        if escaped:
            if char not in "\\,=":
                return None
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            return None
        else:
            chars.append(char)
    return None if escaped else "".join(chars)
