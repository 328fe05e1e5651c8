"""`resolve` against kube-apiserver's own RequestInfo tests, then the cases around them.

The first tables restate requestinfo_test.go (TestGetAPIRequestInfo, TestGetNonAPIRequestInfo,
TestSelectorParsing); the rest pin down behaviour those tests leave implicit. Rows start with
their test id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from protocols.attributes import Attributes, UnresolvableRequest, resolve
from protocols.status import StatusReason


def _params(rows: Iterable[tuple[Any, ...]]) -> list[Any]:
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def _resolve(method: str, url: str) -> Attributes:
    path, _, query = url.partition("?")
    return resolve(method, path, query)


def _res(
    verb: str,
    path: str,
    resource: str,
    *,
    namespace: str = "",
    name: str = "",
    subresource: str = "",
    group: str = "",
    version: str = "v1",
) -> Attributes:
    """A resource request's expected attributes."""
    return Attributes(
        is_resource_request=True,
        path=path,
        verb=verb,
        api_prefix="apis" if group else "api",
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def _non(verb: str, path: str, api_prefix: str = "") -> Attributes:
    """A non-resource request's expected attributes."""
    return Attributes(is_resource_request=False, path=path, verb=verb, api_prefix=api_prefix)


# fmt: off
KUBE_SUCCESS_CASES = [
    # id, method, url, verb, namespace, resource, subresource, name
    ("list-namespaces", "GET", "/api/v1/namespaces", "list", "", "namespaces", "", ""),
    ("get-namespace-is-in-itself", "GET", "/api/v1/namespaces/other",
     "get", "other", "namespaces", "", "other"),
    ("list-namespaced", "GET", "/api/v1/namespaces/other/pods", "list", "other", "pods", "", ""),
    ("get-namespaced", "GET", "/api/v1/namespaces/other/pods/foo",
     "get", "other", "pods", "", "foo"),
    ("head-is-get", "HEAD", "/api/v1/namespaces/other/pods/foo", "get", "other", "pods", "", "foo"),
    ("list-all-namespaces", "GET", "/api/v1/pods", "list", "", "pods", "", ""),
    ("head-collection-is-list", "HEAD", "/api/v1/pods", "list", "", "pods", "", ""),
    ("proxy-root-verb", "GET", "/api/v1/proxy/namespaces/other/pods/foo",
     "proxy", "other", "pods", "", "foo"),
    ("proxy-root-has-no-subresource", "GET",
     "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource",
     "proxy", "other", "pods", "", "foo"),
    ("watch-root-verb", "GET", "/api/v1/watch/pods", "watch", "", "pods", "", ""),
    ("watch-true-query", "GET", "/api/v1/pods?watch=true", "watch", "", "pods", "", ""),
    ("watch-false-query", "GET", "/api/v1/pods?watch=false", "list", "", "pods", "", ""),
    ("watch-root-namespaced", "GET", "/api/v1/watch/namespaces/other/pods",
     "watch", "other", "pods", "", ""),
    ("watch-1-query", "GET", "/api/v1/namespaces/other/pods?watch=1",
     "watch", "other", "pods", "", ""),
    ("watch-0-query", "GET", "/api/v1/namespaces/other/pods?watch=0",
     "list", "other", "pods", "", ""),
    ("subresource", "GET", "/api/v1/namespaces/other/pods/foo/status",
     "get", "other", "pods", "status", "foo"),
    ("proxy-subresource-keeps-method-verb", "GET", "/api/v1/namespaces/other/pods/foo/proxy/sub",
     "get", "other", "pods", "proxy", "foo"),
    ("namespace-finalize-subresource", "PUT", "/api/v1/namespaces/other/finalize",
     "update", "other", "namespaces", "finalize", "other"),
    ("namespace-status-subresource", "PUT", "/api/v1/namespaces/other/status",
     "update", "other", "namespaces", "status", "other"),
    ("patch", "PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "other", "pods", "", "foo"),
    ("delete", "DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "other", "pods", "", "foo"),
    ("create", "POST", "/api/v1/namespaces/other/pods", "create", "other", "pods", "", ""),
    ("deletecollection-cluster-scoped", "DELETE", "/api/v1/nodes",
     "deletecollection", "", "nodes", "", ""),
    ("deletecollection-namespaces", "DELETE", "/api/v1/namespaces",
     "deletecollection", "", "namespaces", "", ""),
    ("deletecollection-namespaced", "DELETE", "/api/v1/namespaces/other/pods",
     "deletecollection", "other", "pods", "", ""),
]

# kube's table expects prefix "api" for these rows but never checks it; it is "apis".
KUBE_GROUPED_CASES = [
    # id, method, url, verb, version
    ("grouped-deletecollection", "DELETE", "/apis/extensions/v1/namespaces/other/pods",
     "deletecollection", "v1"),
    ("grouped-create", "POST", "/apis/extensions/v1/namespaces/other/pods", "create", "v1"),
    ("grouped-version", "POST", "/apis/extensions/v1beta3/namespaces/other/pods",
     "create", "v1beta3"),
]

KUBE_RESOURCE_OR_NOT = [
    # id, url, is a resource request
    ("no-resource-path", "/", False),
    ("just-api-version", "/api/version/", False),
    ("just-prefix-group-version", "/apis/group/version/", False),
    ("bad-prefix", "/badprefix/version/resource", False),
    ("missing-api-group", "/apis/version/resource", False),
    ("simple-groupless", "/api/version/resource", True),
    ("simple-group", "/apis/group/version/resource/name/subresource", True),
    ("more-steps", "/api/version/resource/name/subresource", True),
    ("group-list", "/apis/batch/v1/job", True),
    ("group-get", "/apis/batch/v1/job/foo", True),
    ("group-subresource", "/apis/batch/v1/job/foo/scale", True),
    ("bad-root", "/not-api/version/resource", False),
    ("group-without-enough-steps", "/apis/extensions/v1beta1", False),
    ("group-without-enough-steps-slash", "/apis/extensions/v1beta1/", False),
    ("not-enough-steps", "/api/version", False),
    ("one-step", "/api", False),
]

KUBE_SELECTOR_CASES = [
    # id, method, url (under /apis/group/version/), verb, name
    ("no-selector", "GET", "resource", "list", ""),
    ("metadata-name-selector", "GET", "resource?fieldSelector=metadata.name=name1",
     "list", "name1"),
    ("metadata-name-selector-with-watch", "GET",
     "resource?watch=true&fieldSelector=metadata.name=name1", "watch", "name1"),
    ("other-selector", "GET", "resource?fieldSelector=foo=bar&labelSelector=baz=qux", "list", ""),
    ("invalid-selector-drops-name", "GET", "resource?fieldSelector=metadata.name=name1,foo",
     "list", ""),
    ("invalid-selector-with-watch", "GET",
     "resource?fieldSelector=metadata.name=name1,foo&watch=true", "watch", ""),
    ("invalid-selector-with-watch-false", "GET",
     "resource?fieldSelector=metadata.name=name1,foo&watch=false", "list", ""),
    ("selector-on-deletecollection", "DELETE",
     "resource?fieldSelector=foo=bar&labelSelector=baz=qux", "deletecollection", ""),
    ("repeated-selector-first-wins", "GET",
     "resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar", "list", "foo"),
    ("selector-on-get-ignored", "GET", "resource/name?fieldSelector=foo=bar", "get", "name"),
    ("selector-on-watch-root-ignored", "GET",
     "watch/resource?fieldSelector=metadata.name=foo", "watch", ""),
    ("selector-on-watch-root-item-ignored", "GET",
     "watch/resource/name?fieldSelector=metadata.name=foo", "watch", "name"),
]

NON_RESOURCE_CASES = [
    # id, method, url, expected
    ("healthz", "GET", "/healthz", _non("get", "/healthz")),
    ("verb-is-lowercase-method", "POST", "/healthz/x", _non("post", "/healthz/x")),
    ("root", "OPTIONS", "/", _non("options", "/")),
    ("version", "PUT", "/version", _non("put", "/version")),
    ("discovery-api", "GET", "/api", _non("get", "/api")),
    ("discovery-api-v1", "GET", "/api/v1", _non("get", "/api/v1")),
    ("discovery-apis", "GET", "/apis", _non("get", "/apis")),
    ("discovery-group", "GET", "/apis/apps", _non("get", "/apis/apps")),
    ("discovery-group-version-keeps-prefix", "GET", "/apis/apps/v1",
     _non("get", "/apis/apps/v1", "apis")),
    ("openapi", "GET", "/openapi/v3/apis/apps/v1", _non("get", "/openapi/v3/apis/apps/v1")),
    ("ignores-watch-query", "GET", "/apis/apps/v1?watch=true",
     _non("get", "/apis/apps/v1", "apis")),
    ("asterisk-form", "OPTIONS", "*", _non("options", "*")),
]

WATCH_QUERY_CASES = [
    # id, query, verb (for GET on a collection)
    ("true-any-case", "watch=TRUE", "watch"),
    ("false-any-case", "watch=False", "list"),
    ("empty-value-is-true", "watch=", "watch"),
    ("bare-key-is-true", "watch", "watch"),
    ("only-false-and-0-are-false", "watch=no", "watch"),
    ("first-value-wins", "watch=false&watch=true", "list"),
    ("value-percent-decoded", "watch=%74rue", "watch"),
    ("key-percent-decoded", "%77atch=1", "watch"),
    ("pair-with-semicolon-dropped", "watch=1;x=y", "list"),
    ("pair-with-bad-escape-dropped", "watch=%zz", "list"),
    ("key-is-case-sensitive", "Watch=true", "list"),
    ("empty-pairs-skipped", "&&watch=1&", "watch"),
    ("among-other-params", "resourceVersion=0&watch=1", "watch"),
]

FIELD_SELECTOR_CASES = [
    # id, fieldSelector value as sent in the query, name (for GET on a collection)
    ("double-equals", "metadata.name==foo", "foo"),
    ("not-equals-is-no-name", "metadata.name!=foo", ""),
    ("with-other-terms", "metadata.name=foo,spec.nodeName=n1", "foo"),
    ("sorted-terms-first-wins", "metadata.name=b,metadata.name=a", "a"),
    ("skips-not-equals-term", "metadata.name!=a,metadata.name=b", "b"),
    ("escaped-comma", r"metadata.name=a\,b", "a,b"),
    ("escaped-equals", r"metadata.name=a\=b", "a=b"),
    ("escaped-backslash", r"metadata.name=a\\b", "a\\b"),
    ("unknown-escape-voids-selector", r"metadata.name=a\b", ""),
    ("trailing-backslash-voids-selector", "metadata.name=a\\", ""),
    ("bare-equals-voids-selector", "metadata.name=a=b", ""),
    ("triple-equals-voids-selector", "metadata.name===a", ""),
    ("dot-dot-not-a-name", "metadata.name=..", ""),
    ("dot-not-a-name", "metadata.name=.", ""),
    ("slash-not-a-name", "metadata.name=a%2Fb", ""),
    ("percent-not-a-name", "metadata.name=a%25b", ""),
    ("plus-is-space", "metadata.name=a+b", "a b"),
    ("encoded-equals", "metadata.name%3Dfoo", "foo"),
    ("empty-name", "metadata.name=", ""),
    ("empty-terms-skipped", ",metadata.name=foo,", "foo"),
    ("other-field", "metadata.namespace=foo", ""),
]

MORE_RESOURCE_CASES = [
    # id, method, url, expected
    ("watch-query-ignored-with-name", "GET", "/api/v1/namespaces/ns/pods/foo?watch=true",
     _res("get", "/api/v1/namespaces/ns/pods/foo", "pods", namespace="ns", name="foo")),
    ("head-watch", "HEAD", "/api/v1/pods?watch=1", _res("watch", "/api/v1/pods", "pods")),
    ("deletecollection-selector-sets-no-name", "DELETE",
     "/api/v1/pods?fieldSelector=metadata.name=foo",
     _res("deletecollection", "/api/v1/pods", "pods")),
    ("unknown-method-has-no-verb", "OPTIONS", "/api/v1/pods", _res("", "/api/v1/pods", "pods")),
    ("method-is-case-sensitive", "get", "/api/v1/pods", _res("", "/api/v1/pods", "pods")),
    ("exec", "POST", "/api/v1/namespaces/ns/pods/p/exec?command=ls",
     _res("create", "/api/v1/namespaces/ns/pods/p/exec", "pods", namespace="ns", name="p",
          subresource="exec")),
    ("logs", "GET", "/api/v1/namespaces/ns/pods/p/log?follow=true",
     _res("get", "/api/v1/namespaces/ns/pods/p/log", "pods", namespace="ns", name="p",
          subresource="log")),
    ("service-proxy-subresource", "GET", "/api/v1/namespaces/ns/services/svc:80/proxy/a/b",
     _res("get", "/api/v1/namespaces/ns/services/svc:80/proxy/a/b", "services", namespace="ns",
          name="svc:80", subresource="proxy")),
    ("proxy-root-cluster-scoped", "GET", "/api/v1/proxy/nodes/n1/stats",
     _res("proxy", "/api/v1/proxy/nodes/n1/stats", "nodes", name="n1")),
    ("watch-root-ignores-method", "POST", "/api/v1/watch/pods",
     _res("watch", "/api/v1/watch/pods", "pods")),
    ("watch-root-item-grouped", "GET", "/apis/apps/v1/watch/namespaces/ns/deployments/d",
     _res("watch", "/apis/apps/v1/watch/namespaces/ns/deployments/d", "deployments",
          namespace="ns", name="d", group="apps")),
    ("delete-namespace", "DELETE", "/api/v1/namespaces/ns",
     _res("delete", "/api/v1/namespaces/ns", "namespaces", namespace="ns", name="ns")),
    ("namespace-subresource-ignores-rest", "GET", "/api/v1/namespaces/ns/status/extra",
     _res("get", "/api/v1/namespaces/ns/status/extra", "namespaces", namespace="ns", name="ns",
          subresource="status")),
    ("cluster-scoped-get", "GET", "/api/v1/nodes/n1",
     _res("get", "/api/v1/nodes/n1", "nodes", name="n1")),
    ("cluster-scoped-grouped-update", "PUT",
     "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
     _res("update", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", "clusterroles",
          name="admin", group="rbac.authorization.k8s.io")),
    ("auth-can-i", "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     _res("create", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
          "selfsubjectaccessreviews", group="authorization.k8s.io")),
    ("trailing-slash-trimmed", "GET", "/api/v1/pods/", _res("list", "/api/v1/pods/", "pods")),
    ("empty-segments-kept", "GET", "/api//v1/pods",
     _res("get", "/api//v1/pods", "v1", name="pods", version="")),
    ("namespaces-trailing-slash", "GET", "/api/v1/namespaces/",
     _res("list", "/api/v1/namespaces/", "namespaces")),
]

PERCENT_DECODING_CASES = [
    # id, raw path, expected (for GET)
    ("escaped-namespace-decoded", "/api/v1/namespaces/%6Bube-system/secrets",
     _res("list", "/api/v1/namespaces/kube-system/secrets", "secrets", namespace="kube-system")),
    ("escaped-prefix-decoded", "/%61pi/v1/pods", _res("list", "/api/v1/pods", "pods")),
    ("escaped-slash-splits-like-kube", "/api/v1/namespaces/ns/pods/a%2Fb",
     _res("get", "/api/v1/namespaces/ns/pods/a/b", "pods", namespace="ns", name="a",
          subresource="b")),
    ("plus-kept-in-path", "/api/v1/namespaces/ns/configmaps/a+b",
     _res("get", "/api/v1/namespaces/ns/configmaps/a+b", "configmaps", namespace="ns",
          name="a+b")),
    ("utf8-decoded", "/api/v1/namespaces/ns/configmaps/%C3%A9",
     _res("get", "/api/v1/namespaces/ns/configmaps/\u00e9", "configmaps", namespace="ns",
          name="\u00e9")),
    ("non-resource-path-decoded", "/heal%74hz", _non("get", "/healthz")),
]

UNRESOLVABLE_CASES = [
    # id, raw path, raw query, the reason kube-apiserver (or Go's HTTP server) answers with
    ("watch-root-alone", "/api/v1/watch", "", StatusReason.InternalError),
    ("proxy-root-alone", "/apis/apps/v1/proxy/", "", StatusReason.InternalError),
    ("bad-escape", "/api/v1/pods/%zz", "", StatusReason.BadRequest),
    ("short-escape", "/api/v1/pods/%4", "", StatusReason.BadRequest),
    ("not-utf8", "/api/v1/pods/%FF", "", StatusReason.BadRequest),
    ("control-in-path", "/api/v1/pods\x00", "", StatusReason.BadRequest),
    ("control-in-query", "/api/v1/pods", "watch=1\r\n", StatusReason.BadRequest),
    ("empty-target", "", "", StatusReason.BadRequest),
    ("relative-target", "api/v1/pods", "", StatusReason.BadRequest),
    ("absolute-form", "http://h/api/v1/pods", "", StatusReason.BadRequest),
]
# fmt: on


@pytest.mark.parametrize(
    ("method", "url", "verb", "namespace", "resource", "subresource", "name"),
    _params(KUBE_SUCCESS_CASES),
)
def test_kube_success_cases(
    method: str, url: str, verb: str, namespace: str, resource: str, subresource: str, name: str
) -> None:
    path = url.partition("?")[0]
    expected = _res(verb, path, resource, namespace=namespace, name=name, subresource=subresource)
    assert _resolve(method, url) == expected


@pytest.mark.parametrize(("method", "url", "verb", "version"), _params(KUBE_GROUPED_CASES))
def test_kube_grouped_cases(method: str, url: str, verb: str, version: str) -> None:
    expected = _res(verb, url, "pods", namespace="other", group="extensions", version=version)
    assert _resolve(method, url) == expected


@pytest.mark.parametrize(("url", "is_resource"), _params(KUBE_RESOURCE_OR_NOT))
def test_kube_resource_or_not(url: str, is_resource: bool) -> None:
    assert _resolve("GET", url).is_resource_request is is_resource


@pytest.mark.parametrize(("method", "url", "verb", "name"), _params(KUBE_SELECTOR_CASES))
def test_kube_selector_cases(method: str, url: str, verb: str, name: str) -> None:
    got = _resolve(method, f"/apis/group/version/{url}")
    assert (got.verb, got.name) == (verb, name)


@pytest.mark.parametrize(("method", "url", "expected"), _params(NON_RESOURCE_CASES))
def test_non_resource_requests(method: str, url: str, expected: Attributes) -> None:
    assert _resolve(method, url) == expected


@pytest.mark.parametrize(("query", "verb"), _params(WATCH_QUERY_CASES))
def test_watch_query_parameter(query: str, verb: str) -> None:
    assert resolve("GET", "/api/v1/namespaces/ns/pods", query).verb == verb


@pytest.mark.parametrize(("selector", "name"), _params(FIELD_SELECTOR_CASES))
def test_field_selector_name(selector: str, name: str) -> None:
    got = resolve("GET", "/api/v1/namespaces/ns/pods", f"fieldSelector={selector}")
    assert (got.verb, got.name) == ("list", name)


@pytest.mark.parametrize(("method", "url", "expected"), _params(MORE_RESOURCE_CASES))
def test_more_resource_requests(method: str, url: str, expected: Attributes) -> None:
    assert _resolve(method, url) == expected


@pytest.mark.parametrize(("raw", "expected"), _params(PERCENT_DECODING_CASES))
def test_path_is_percent_decoded(raw: str, expected: Attributes) -> None:
    assert resolve("GET", raw, "") == expected


@pytest.mark.parametrize(("path", "query", "reason"), _params(UNRESOLVABLE_CASES))
def test_unresolvable_requests(path: str, query: str, reason: StatusReason) -> None:
    with pytest.raises(UnresolvableRequest) as caught:
        resolve("GET", path, query)
    assert caught.value.reason is reason


def test_unresolvable_message_names_the_url() -> None:
    with pytest.raises(UnresolvableRequest, match=r"from url, /api/v1/watch\?x=1$"):
        resolve("GET", "/api/v1/watch", "x=1")
