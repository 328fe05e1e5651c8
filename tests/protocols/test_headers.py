from hypothesis import given
from hypothesis import strategies as st

from protocols.headers import (
    impersonation_headers,
    request_headers_for_upstream,
    response_headers_for_client,
)

_NEVER_FORWARDED = (
    b"authorization",
    b"impersonate-user",
    b"impersonate-group",
    b"impersonate-uid",
    b"impersonate-extra-scopes",
    b"proxy-authorization",
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",  # the gateway frames what it forwards itself
    b"upgrade",
    b"te",
    b"host",
)


def test_credentials_impersonation_and_hop_by_hop_fields_are_not_forwarded() -> None:
    headers = [(name.title(), b"x") for name in _NEVER_FORWARDED] + [
        (b"Accept", b"application/json")
    ]
    assert request_headers_for_upstream(headers) == [(b"accept", b"application/json")]


def test_fields_named_in_connection_are_hop_by_hop() -> None:
    headers = [(b"connection", b"X-Trace, close"), (b"x-trace", b"1"), (b"x-kept", b"2")]
    assert request_headers_for_upstream(headers) == [(b"x-kept", b"2")]


def test_impersonation_headers_are_named_for_the_refusal() -> None:
    headers = [(b"Impersonate-User", b"bob"), (b"impersonate-group", b"g"), (b"accept", b"*/*")]
    assert impersonation_headers(headers) == ["Impersonate-Group", "Impersonate-User"]


def test_response_framing_fields_are_dropped_but_content_fields_kept() -> None:
    headers = [
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Type", b"application/json"),
        (b"Connection", b"keep-alive"),
    ]
    assert response_headers_for_client(headers) == [(b"content-type", b"application/json")]


_names = st.one_of(
    st.sampled_from(_NEVER_FORWARDED).map(lambda n: n.title()),
    st.binary(min_size=1, max_size=20).filter(lambda b: b":" not in b),
)


@given(st.lists(st.tuples(_names, st.binary(max_size=30)), max_size=30))
def test_no_credential_or_impersonation_field_survives_in_any_case(
    headers: list[tuple[bytes, bytes]],
) -> None:
    kept = request_headers_for_upstream(headers)
    for name, _ in kept:
        assert name == name.lower()
        assert name not in _NEVER_FORWARDED
        assert not name.startswith((b"impersonate-", b"proxy-"))
