import contextlib

from hypothesis import given
from hypothesis import strategies as st

from protocols.k8s_protobuf import MAGIC, ProtobufError, decode_review


def _field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return MAGIC + _field(1, type_meta) + bytes([2 << 3 | 2, len(raw)]) + raw


def test_an_access_review_decodes_to_its_json_shape() -> None:
    attributes = (
        _field(1, b"default") + _field(2, b"delete") + _field(5, b"pods") + _field(7, b"web")
    )
    spec = _field(1, attributes)
    body = _envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", _field(2, spec))
    assert decode_review(body) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": "default",
                "verb": "delete",
                "resource": "pods",
                "name": "web",
            }
        },
    }


def test_a_non_resource_access_review_and_a_rules_review_decode() -> None:
    spec = _field(2, _field(1, b"/version") + _field(2, b"get"))
    body = _envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", _field(2, spec))
    assert decode_review(body)["spec"] == {
        "nonResourceAttributes": {"path": "/version", "verb": "get"}
    }
    rules = _envelope(
        "authorization.k8s.io/v1", "SelfSubjectRulesReview", _field(2, _field(1, b"ns"))
    )
    assert decode_review(rules)["spec"] == {"namespace": "ns"}


def test_unknown_fields_are_skipped() -> None:
    attributes = bytes([10 << 3 | 0, 5]) + _field(2, b"get")  # field 10 varint, unknown
    body = _envelope(
        "authorization.k8s.io/v1", "SelfSubjectAccessReview", _field(2, _field(1, attributes))
    )
    assert decode_review(body)["spec"] == {"resourceAttributes": {"verb": "get"}}


def test_another_kind_is_refused() -> None:
    try:
        decode_review(_envelope("v1", "Pod", b""))
    except ProtobufError as exc:
        assert "not a review" in str(exc)
    else:
        raise AssertionError("a Pod was read as a review")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_protobuf_error(data: bytes) -> None:
    with contextlib.suppress(ProtobufError):
        decode_review(MAGIC + data)
