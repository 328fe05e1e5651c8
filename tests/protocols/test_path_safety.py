"""Request targets with more than one reading are refused; all others pass untouched."""

from __future__ import annotations

import string
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.attributes import UnresolvableRequest, resolve
from protocols.path_safety import UnsafeRequest, check_target
from protocols.status import StatusReason

# --- one refusal per rule -----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("/api/v1/namespaces/../secrets", "request path contains a dot segment"),
        ("/api/v1/./pods", "request path contains a dot segment"),
        ("/api/v1/pods/..", "request path contains a dot segment"),
        ("/api/v1/%2e%2e/secrets", "request path contains a dot segment"),
        ("/api/v1/%2E%2e/secrets", "request path contains a dot segment"),
        ("/api/v1/.%2E/secrets", "request path contains a dot segment"),
        ("/api/v1/%2e", "request path contains a dot segment"),
        ("/k8s/prod/../dev/api/v1/pods", "request path contains a dot segment"),
        ("/api/v1/namespaces/a%2fb/pods", "request path contains an encoded slash"),
        ("/api/v1/namespaces/a%2Fb/pods", "request path contains an encoded slash"),
        ("/api/v1/namespaces/a%5cb/pods", "request path contains an encoded backslash"),
        ("/api/v1/namespaces/a%5Cb/pods", "request path contains an encoded backslash"),
        ("/api/v1/namespaces/a\\b/pods", "request path contains a backslash"),
        ("/api/v1//pods", "request path contains an empty segment"),
        ("//api/v1/pods", "request path contains an empty segment"),
        ("/api/v1/pods//", "request path contains an empty segment"),
        ("/api/v1/pods%00", "request path contains an encoded control character"),
        ("/api/v1/pods%1f", "request path contains an encoded control character"),
        ("/api/v1/pods%0A", "request path contains an encoded control character"),
        ("/api/v1/pods%7F", "request path contains an encoded control character"),
        ("/api/v1/pods%c3%a9", "request path contains an encoded non-ASCII byte"),
        ("/api/v1/pods/%252e%252e", "request path contains an encoded percent sign"),
        ("/api/v1/pods\x00", "request target contains a control character"),
        ("/api/v1/pods\r\nHost: x", "request target contains a control character"),
        ("/api/v1/pods?watch=1\x7f", "request target contains a control character"),
        ("/api/v1/p\u00f6ds", "request target contains a non-ASCII character"),
        ("/api/v1/pods?labelSelector=\u00e9", "request target contains a non-ASCII character"),
        ("/api/v1/pods%zz", "request path contains invalid percent-encoding"),
        ("/api/v1/pods%4", "request path contains invalid percent-encoding"),
        ("/api/v1/pods%4?watch=1", "request path contains invalid percent-encoding"),
        ("/api/v1/pods%", "request path contains invalid percent-encoding"),
        ("https://cluster.example/api/v1/pods", "request target is in absolute form"),
        ("HTTP://cluster.example", "request target is in absolute form"),
        ("cluster.example:443", "request target is in authority form"),
        ("[::1]:6443", "request target is in authority form"),
        ("api/v1/pods", "request target does not start with '/'"),
        ("*", "request target does not start with '/'"),
        ("", "request target does not start with '/'"),
        ("/api/v1/pods#frag", "request target contains a fragment"),
        ("/api/v1/pods?watch=1#x", "request target contains a fragment"),
        ("/api/v1/pods?watch=1&watch=0", 'request query repeats the "watch" parameter'),
        ("/api/v1/pods?watch=1&watch=1", 'request query repeats the "watch" parameter'),
        ("/api/v1/pods?watch=1&%77atch=0", 'request query repeats the "watch" parameter'),
        (
            "/api/v1/pods?fieldSelector=metadata.name%3Da&fieldSelector=metadata.name%3Db",
            'request query repeats the "fieldSelector" parameter',
        ),
        ("/api/v1/pods?watch=%zz", "request query contains invalid percent-encoding"),
        ("/api/v1/pods?limit=5%", "request query contains invalid percent-encoding"),
        ("/api/v1/pods?watch=0;watch=1", "request query contains a semicolon"),
    ],
)
def test_each_rule_is_named_in_the_refusal(target: str, rule: str) -> None:
    with pytest.raises(UnsafeRequest) as refused:
        check_target(target)
    assert refused.value.message.startswith(rule + ": ")
    assert str(refused.value) == refused.value.message


def test_refusal_quotes_at_most_the_start_of_the_target_escaped() -> None:
    target = "/api/v1/" + "a" * 500 + "/../\u2028"
    with pytest.raises(UnsafeRequest) as refused:
        check_target(target)
    message = refused.value.message
    assert message.isascii()
    assert len(message) < 200
    assert "a" * 100 not in message
    assert message.endswith('..."')


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/api",
        "/api/",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "/api/v1/namespaces/default/pods/web-0/log?follow=true&container=app",
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion=10&labelSelector=app%3Dweb",
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb&watch=true",
        "/api/v1/namespaces/default/services/web:8080/proxy/",
        "/k8s/prod/api/v1/namespaces/default/pods/.hidden",
        "/k8s/prod/api/v1/namespaces/default/pods/a..b",
        "/openapi/v3/apis/apps/v1?hash=ABC",
        "/api/v1/namespaces/%6Bube-system/pods",
        "/api/v1/pods?",
        "/api/v1/pods?&&x=%20%2F%2e%2E",
    ],
)
def test_ordinary_kubernetes_targets_pass(target: str) -> None:
    check_target(target)


# --- properties ---------------------------------------------------------------

# RFC 3986 unreserved characters: never encoded, never special to any reader.
SAFE = string.ascii_letters + string.digits + "._~-"

safe_segments = st.text(alphabet=SAFE, min_size=1, max_size=10).filter(
    lambda segment: segment not in {".", ".."}
)
resources = safe_segments.filter(lambda r: r not in {"watch", "proxy", "namespaces"})
query_keys = st.sampled_from(["watch", "limit", "labelSelector", "resourceVersion", "x"])
safe_queries = st.dictionaries(query_keys, st.text(alphabet=SAFE, max_size=8), max_size=4).map(
    lambda params: "&".join(f"{key}={value}" for key, value in params.items())
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])


@given(
    st.one_of(st.none(), st.tuples(safe_segments, safe_segments)),
    st.one_of(st.none(), safe_segments),
    resources,
    st.one_of(st.none(), safe_segments),
    safe_queries,
    safe_segments,
    methods,
)
def test_targets_of_safe_segments_pass_and_resolve_to_what_was_built(
    group_version: tuple[str, str] | None,
    namespace: str | None,
    resource: str,
    name: str | None,
    query: str,
    connection: str,
    method: str,
) -> None:
    root = "/apis/{}/{}".format(*group_version) if group_version else "/api/v1"
    scope = f"/namespaces/{namespace}" if namespace else ""
    path = f"{root}{scope}/{resource}" + (f"/{name}" if name else "")
    target = f"{path}?{query}" if query else path

    # check_target only judges (it returns None): the accepted string is what is
    # forwarded, byte for byte, so resolving it is resolving what the cluster gets.
    check_target(target)
    # The gateway checks the target with its routing prefix still on.
    check_target(f"/k8s/{connection}{target}")

    got = resolve(method, path, query)
    assert got.is_resource_request
    assert got.path == path
    assert (got.namespace, got.resource, got.name) == (namespace or "", resource, name or "")


UNSAFE_ANYWHERE = [
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%25",
    "\\",
    "//",
    "%00",
    "%1f",
    "%1F",
    "%7f",
    "%7F",
    "%80",
    "%c3%a9",
    "%zz",
    "%4/",
    "%g1",
    "\x00",
    "\t",
    "\r\n",
    "\x7f",
    "\u00e9",
    "\u2028",
    "#",
]
DOT_SEGMENTS = [".", "..", "%2e", "%2E", "%2e%2e", "%2E%2e", ".%2e", "%2E.", "%2E%2E"]


@given(
    st.lists(safe_segments, min_size=1, max_size=6),
    st.sampled_from(UNSAFE_ANYWHERE),
    st.data(),
    st.one_of(st.just(""), safe_queries.map(lambda q: "?" + q)),
)
def test_an_unsafe_construct_anywhere_in_the_path_is_refused(
    segments: list[str], construct: str, data: st.DataObject, query: str
) -> None:
    path = "/" + "/".join(segments)
    at = data.draw(st.integers(0, len(path)))
    with pytest.raises(UnsafeRequest):
        check_target(path[:at] + construct + path[at:] + query)


@given(
    st.lists(safe_segments, max_size=6),
    st.sampled_from(DOT_SEGMENTS),
    st.data(),
    st.booleans(),
    st.one_of(st.just(""), safe_queries.map(lambda q: "?" + q)),
)
def test_a_dot_segment_anywhere_in_the_path_is_refused(
    segments: list[str], dots: str, data: st.DataObject, trailing_slash: bool, query: str
) -> None:
    at = data.draw(st.integers(0, len(segments)))
    parts = [*segments[:at], dots, *segments[at:]]
    path = "/" + "/".join(parts) + ("/" if trailing_slash else "")
    with pytest.raises(UnsafeRequest, match="dot segment"):
        check_target(path + query)


URLISH = st.text(alphabet="/%.?&=#\\;:+aAeEfFcC0125zw\x00\x7f\u00e9 ", max_size=40)


@given(st.one_of(st.text(), URLISH, URLISH.map(lambda text: "/" + text)), methods)
def test_any_text_passes_or_is_refused_with_unsafe_request_only(target: str, method: str) -> None:
    try:
        check_target(target)
    except UnsafeRequest as exc:
        assert exc.message
        return
    assert target.isascii()
    assert target.startswith("/")
    path, _, query = target.partition("?")
    # What passes is what the cluster parses, with no new separator once decoded.
    try:
        got = resolve(method, path, query)
    except UnresolvableRequest as exc:
        assert exc.reason is StatusReason.InternalError
        return
    assert got.path.split("/") == [unquote(segment) for segment in path.split("/")]
    assert not {".", ".."} & set(got.path.split("/"))
