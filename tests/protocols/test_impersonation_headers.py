"""`Impersonate-*` headers read as kube-apiserver reads them."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.impersonation_headers import (
    ImpersonationRequest,
    InvalidImpersonation,
    parse_impersonation,
)


def test_no_impersonation_headers_is_no_impersonation() -> None:
    assert parse_impersonation([(b"accept", b"*/*"), (b"authorization", b"Bearer x")]) is None


def test_an_empty_user_alone_is_no_impersonation_as_in_kube() -> None:
    assert parse_impersonation([(b"Impersonate-User", b""), (b"Impersonate-Uid", b"")]) is None


def test_kubectl_as_and_as_group_in_any_case() -> None:
    headers = [
        (b"Impersonate-User", b"bob"),
        (b"impersonate-group", b"devs"),
        (b"IMPERSONATE-GROUP", b"oncall, sre"),
        (b"Impersonate-Uid", b"1234"),
    ]
    assert parse_impersonation(headers) == ImpersonationRequest(
        user="bob", groups=("devs", "oncall, sre"), uid="1234"
    )


def test_an_empty_group_value_is_still_a_group() -> None:
    parsed = parse_impersonation([(b"impersonate-user", b"bob"), (b"impersonate-group", b"")])
    assert parsed == ImpersonationRequest(user="bob", groups=("",))


def test_extra_keys_are_lower_cased_then_percent_decoded_values_kept_in_order() -> None:
    headers = [
        (b"Impersonate-User", b"bob"),
        (b"Impersonate-Extra-Scopes", b"view"),
        (b"Impersonate-Extra-Acme.com%2Fproject", b"p1"),
        (b"impersonate-extra-scopes", b"Edit"),
        (b"Impersonate-Extra-%41", b"x"),
    ]
    parsed = parse_impersonation(headers)
    assert parsed is not None
    assert parsed.extra == (
        ("scopes", ("view", "Edit")),
        ("acme.com/project", ("p1",)),
        # Go lower-cases before it unescapes, so an escaped capital survives.
        ("A", ("x",)),
    )


@pytest.mark.parametrize("key", [b"bad%zz", b"trunc%4", b"latin%e9"])
def test_an_extra_key_that_does_not_decode_is_kept_as_sent(key: bytes) -> None:
    parsed = parse_impersonation(
        [(b"impersonate-user", b"bob"), (b"impersonate-extra-" + key.upper(), b"v")]
    )
    assert parsed is not None
    assert parsed.extra == ((key.decode().lower(), ("v",)),)


@pytest.mark.parametrize(
    "header",
    [
        (b"Impersonate-Group", b"admins"),
        (b"Impersonate-Extra-Scopes", b"admin"),
        (b"Impersonate-Uid", b"1234"),
    ],
)
@pytest.mark.parametrize("user", [[], [(b"Impersonate-User", b"")]])
def test_groups_extra_or_uid_without_a_user_are_refused(
    header: tuple[bytes, bytes], user: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(InvalidImpersonation, match="without impersonating a user"):
        parse_impersonation([*user, header])


@pytest.mark.parametrize("name", [b"Impersonate-User", b"Impersonate-Uid"])
def test_a_single_valued_header_given_twice_is_refused(name: bytes) -> None:
    headers = [(b"impersonate-user", b"bob"), (name, b"a"), (name.lower(), b"b")]
    with pytest.raises(InvalidImpersonation) as refused:
        parse_impersonation(headers)
    assert refused.value.message == f"{name.decode()} is given more than once"


@pytest.mark.parametrize(
    ("header", "what"),
    [
        ((b"Impersonate-User", b"b\xffb"), "Impersonate-User"),
        ((b"Impersonate-Group", b"\xc3"), "Impersonate-Group"),
        ((b"Impersonate-Uid", b"\x80"), "Impersonate-Uid"),
        ((b"Impersonate-Extra-k", b"\xfe"), "Impersonate-Extra-k"),
        ((b"Impersonate-Extra-\xff", b"v"), "an Impersonate-Extra- field name"),
    ],
)
def test_values_that_are_not_utf8_are_refused(header: tuple[bytes, bytes], what: str) -> None:
    with pytest.raises(InvalidImpersonation) as refused:
        parse_impersonation([(b"impersonate-user", b"bob"), header])
    assert refused.value.message == f"{what} is not valid UTF-8"


values = st.text(st.characters(codec="utf-8"), max_size=10)
extra_keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=10).map(str.lower)


@given(
    values.filter(bool),
    st.lists(values, max_size=4),
    st.one_of(st.none(), values.filter(bool)),
    st.dictionaries(extra_keys, st.lists(values, min_size=1, max_size=3), max_size=3),
)
def test_headers_built_from_a_request_parse_back_to_it(
    user: str, groups: list[str], uid: str | None, extra: dict[str, list[str]]
) -> None:
    headers = [(b"Impersonate-User", user.encode())]
    headers += [(b"Impersonate-Group", group.encode()) for group in groups]
    if uid is not None:
        headers.append((b"Impersonate-Uid", uid.encode()))
    for key, key_values in extra.items():
        name = b"Impersonate-Extra-" + quote(key, safe="").encode()
        headers += [(name, value.encode()) for value in key_values]
    assert parse_impersonation(headers) == ImpersonationRequest(
        user=user,
        groups=tuple(groups),
        uid=uid,
        extra=tuple((key, tuple(key_values)) for key, key_values in extra.items()),
    )


header_names = st.one_of(
    st.sampled_from(
        [b"Impersonate-User", b"impersonate-group", b"Impersonate-Uid", b"Impersonate-Extra-"]
    ).flatmap(lambda name: st.binary(max_size=6).map(lambda suffix: name + suffix)),
    st.binary(max_size=20),
)


@given(st.lists(st.tuples(header_names, st.binary(max_size=12)), max_size=8))
def test_any_headers_parse_or_are_refused_with_invalid_impersonation_only(
    headers: list[tuple[bytes, bytes]],
) -> None:
    try:
        parsed = parse_impersonation(headers)
    except InvalidImpersonation as exc:
        assert exc.message
        return
    if parsed is not None:
        assert parsed.user
