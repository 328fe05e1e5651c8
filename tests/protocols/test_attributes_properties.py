"""Properties of `resolve` over generated paths and queries."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from protocols.attributes import Attributes, UnresolvableRequest, resolve
from protocols.status import StatusReason

RESOURCE_VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", ""}
)
METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

# Characters that need no percent-encoding in a path segment (RFC 3986 unreserved, plus ':').
SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:"

segments = st.text(alphabet=SAFE, max_size=12)
names = st.text(alphabet=SAFE, min_size=1, max_size=12)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"])


def _queries(keys: list[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(st.sampled_from(keys), segments), max_size=3)
    return pairs.map(lambda items: "&".join(f"{key}={value}" for key, value in items))


queries = _queries(["watch", "fieldSelector", "limit", "x"])
queries_without_watch = _queries(["fieldSelector", "limit", "x"])


def _percent_encode_all(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def _outcome(method: str, path: str) -> Attributes | StatusReason:
    try:
        return resolve(method, path, "")
    except UnresolvableRequest as exc:
        return exc.reason


@given(
    st.one_of(
        st.lists(segments, max_size=8),
        st.tuples(st.sampled_from(["api", "apis"]), st.lists(segments, max_size=7)).map(
            lambda t: [t[0], *t[1]]
        ),
    ),
    st.booleans(),
    methods,
    queries,
)
def test_safe_paths_resolve_to_a_known_verb(
    parts: list[str], trailing_slash: bool, method: str, query: str
) -> None:
    path = "/" + "/".join(parts) + ("/" if trailing_slash else "")
    try:
        got = resolve(method, path, query)
    except UnresolvableRequest as exc:
        # Only a bare /watch or /proxy root, with nothing after it, is refused.
        assert exc.reason is StatusReason.InternalError
        assert path.strip("/").split("/")[-1] in {"watch", "proxy"}
        return
    assert got.path == path
    if got.is_resource_request:
        assert got.verb in RESOURCE_VERBS
        assert got.api_prefix in {"api", "apis"}
        fields = (got.api_group, got.namespace, got.resource, got.subresource, got.name)
        assert all(field in parts for field in fields if field)
    else:
        assert got.verb == method.lower()
        assert (got.namespace, got.resource, got.subresource, got.name) == ("", "", "", "")


@given(
    st.one_of(st.just(("", "v1")), st.tuples(names, names)),
    names,
    names.filter(lambda r: r not in {"status", "finalize"}),
    names,
    st.one_of(st.just(""), names),
    methods,
)
def test_namespaced_path_round_trips(
    group_version: tuple[str, str],
    namespace: str,
    resource: str,
    name: str,
    subresource: str,
    method: str,
) -> None:
    group, version = group_version
    root = f"/apis/{group}/{version}" if group else "/api/v1"
    path = f"{root}/namespaces/{namespace}/{resource}/{name}"
    if subresource:
        path += f"/{subresource}"
    got = resolve(method, path, "")
    assert got.is_resource_request
    assert (got.api_group, got.api_version) == (group, version)
    assert (got.namespace, got.resource, got.name, got.subresource) == (
        namespace,
        resource,
        name,
        subresource,
    )
    expected_verb = "get" if method in {"GET", "HEAD"} else METHOD_VERBS.get(method, "")
    assert got.verb == expected_verb


@given(
    names,
    names,
    names.filter(lambda r: r not in {"watch", "proxy", "namespaces"}),
    st.one_of(st.just(""), names),
)
def test_cluster_scoped_delete_round_trips(
    group: str, version: str, resource: str, name: str
) -> None:
    path = f"/apis/{group}/{version}/{resource}" + (f"/{name}" if name else "")
    got = resolve("DELETE", path, "")
    assert (got.api_group, got.api_version, got.namespace) == (group, version, "")
    assert (got.resource, got.name) == (resource, name)
    assert got.verb == ("delete" if name else "deletecollection")


@given(st.sampled_from(["GET", "HEAD"]), segments, queries_without_watch, queries)
def test_watch_query_turns_list_into_watch(
    method: str, value: str, before: str, after: str
) -> None:
    collection = "/api/v1/namespaces/ns/pods"
    assert resolve(method, collection, before).verb == "list"
    # Only the first watch value counts: any in `after` must not matter.
    query = "&".join(q for q in (before, f"watch={value}", after) if q)
    expected = "list" if value.lower() in {"false", "0"} else "watch"
    assert resolve(method, collection, query).verb == expected


@given(
    st.lists(
        st.text(alphabet=SAFE + "\u00e9\u4e2d \"'?#[]@!$&()*+,;=", min_size=1, max_size=8),
        min_size=1,
        max_size=7,
    ),
    methods,
)
def test_percent_encoding_does_not_change_the_answer(parts: list[str], method: str) -> None:
    # kube-apiserver decodes before it splits, so a client cannot hide a namespace,
    # resource or name from policy by encoding it.
    plain = "/" + "/".join(parts)
    encoded = "/" + "/".join(_percent_encode_all(part) for part in parts)
    assert _outcome(method, encoded) == _outcome(method, plain)


@given(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="/%"),
        min_size=1,
    ).filter(lambda n: n not in {".", ".."}),
    st.booleans(),
)
def test_field_selector_name_round_trips(name: str, watch: bool) -> None:
    escaped = name.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    query = "fieldSelector=" + quote(f"metadata.name={escaped}", safe="")
    if watch:
        query += "&watch=true"
    got = resolve("GET", "/apis/apps/v1/namespaces/ns/deployments", query)
    assert (got.verb, got.name) == ("watch" if watch else "list", name)


@given(st.text(), st.text())
def test_any_target_resolves_or_is_refused(path: str, query: str) -> None:
    try:
        got = resolve("GET", "/" + path, query)
    except UnresolvableRequest as exc:
        assert exc.reason in {StatusReason.BadRequest, StatusReason.InternalError}
    else:
        assert got.verb in RESOURCE_VERBS
