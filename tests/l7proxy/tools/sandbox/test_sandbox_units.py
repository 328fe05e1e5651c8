"""The pure parts: merge and JSON patch, selectors, protobuf bodies."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l7proxy.tools.sandbox import protobuf
from l7proxy.tools.sandbox.patch import PatchError, json_patch, merge_patch
from l7proxy.tools.sandbox.selectors import Selector
from l7proxy.tools.sandbox.status import ApiError
from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

# RFC 7386 appendix A.
RFC7386_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386_CASES)
def test_merge_patch_follows_rfc_7386_examples(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(target=json_values, patch=json_values)
def test_merge_patch_never_mutates_its_inputs(target: Any, patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    result = merge_patch(target, patch)
    assert (target, patch) == before
    if isinstance(result, dict) and isinstance(patch, dict):
        assert all(k not in result for k, v in patch.items() if v is None)


def test_json_patch_failure_leaves_the_target_untouched() -> None:
    target = {"a": [1, 2]}
    with pytest.raises(PatchError):
        json_patch(target, [{"op": "remove", "path": "/a/0"}, {"op": "move", "path": "/a"}])
    assert target == {"a": [1, 2]}


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add"},
        [{"op": "add", "path": "/a/9", "value": 1}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a/01", "value": 1}],
    ],
)
def test_json_patch_rejects_malformed_or_inapplicable_operations(ops: Any) -> None:
    with pytest.raises(PatchError):
        json_patch({"a": [1]}, ops)


def test_selector_combines_labels_and_fields() -> None:
    selector = Selector.parse("pods", "app=web,tier!=db", "status.phase=Running")
    running = {"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Running"}}
    assert selector.matches(running)
    assert not selector.matches({**running, "status": {"phase": "Pending"}})
    assert not selector.matches({**running, "metadata": {"labels": {"app": "web", "tier": "db"}}})


def test_selector_rejects_unparsable_requirements() -> None:
    with pytest.raises(ApiError) as err:
        Selector.parse("pods", "app in web", "")
    assert err.value.code == 400


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(number: int, key: str, value: bytes) -> bytes:
    return _field(number, _field(1, key.encode()) + _field(2, value))


def _configmap_protobuf() -> bytes:
    meta = _field(1, b"from-proto") + _entry(11, "app", b"web")
    raw = _field(1, meta) + _entry(2, "greeting", b"hi") + _entry(3, "blob", b"\x00\x01")
    type_meta = _field(1, b"v1") + _field(2, b"ConfigMap")
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw)


def test_protobuf_configmap_decodes_to_its_json_form() -> None:
    assert protobuf.decode(_configmap_protobuf()) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "from-proto", "labels": {"app": "web"}},
        "data": {"greeting": "hi"},
        "binaryData": {"blob": "AAE="},
    }


async def test_protobuf_create_body_from_a_typed_client_is_stored(call: Call) -> None:
    # kubectl create configmap|secret|namespace sends protobuf, with no JSON fallback.
    response = await call(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        _configmap_protobuf(),
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert response.status == 201
    assert response.json()["data"] == {"greeting": "hi"}


async def test_protobuf_body_of_an_undecoded_kind_is_415(call: Call) -> None:
    type_meta = _field(1, b"v1") + _field(2, b"ServiceAccount")
    body = protobuf.MAGIC + _field(1, type_meta) + _field(2, b"")
    response = await call(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        body,
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert response.status == 415
    assert "v1 ServiceAccount" in json.loads(response.body)["message"]


def test_protobuf_pod_decodes_without_the_empty_values_go_writes() -> None:
    container = (
        _field(1, b"dbg")
        + _field(2, b"busybox")
        + _field(3, b"sleep")
        + _field(5, b"")  # workingDir: Go writes "", its JSON leaves it out
        + _varint(16 << 3)
        + _varint(1)  # stdin: true
        + _varint(18 << 3)
        + _varint(0)  # tty: false
        + _field(20, b"File")
    )
    spec = _field(2, container) + _field(10, b"") + _varint(27 << 3) + _varint(1)
    raw = _field(1, _field(1, b"copy")) + _field(2, spec)
    type_meta = _field(1, b"v1") + _field(2, b"Pod")
    assert protobuf.decode(protobuf.MAGIC + _field(1, type_meta) + _field(2, raw)) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "copy"},
        "spec": {
            "containers": [
                {
                    "name": "dbg",
                    "image": "busybox",
                    "command": ["sleep"],
                    "stdin": True,
                    "terminationMessagePolicy": "File",
                }
            ],
            "shareProcessNamespace": True,
        },
    }
