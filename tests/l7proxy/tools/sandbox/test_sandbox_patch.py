"""The patch engine: strategic merge by the built-in types' merge keys and directives, JSON
merge patch (RFC 7386) as a property, JSON patch failures."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l7proxy.tools.sandbox.patch import PatchError, merge_patch, strategic_merge_patch

DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "web", "finalizers": ["a"]},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
                    {"name": "log", "image": "log:1"},
                ],
                "tolerations": [{"key": "x"}],
            }
        }
    },
}


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def test_a_sidecar_patched_in_keeps_the_existing_containers_and_no_directive_is_stored() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [
                        {"name": "side"},
                        {"name": "app"},
                        {"name": "log"},
                    ],
                    "containers": [{"name": "side", "image": "side:1"}],
                }
            }
        }
    }
    patched = strategic_merge_patch(DEPLOYMENT, patch)
    assert [c["name"] for c in _containers(patched)] == ["side", "app", "log"]
    assert _containers(patched)[1] == _containers(DEPLOYMENT)[0]
    assert "$" not in repr(patched)
    assert _containers(DEPLOYMENT)[0]["name"] == "app"  # the target is not changed


def test_items_merge_by_key_and_nested_lists_by_their_own_key() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:2", "ports": [{"containerPort": 443}]}
                    ]
                }
            }
        }
    }
    app = _containers(strategic_merge_patch(DEPLOYMENT, patch))[0]
    assert app["image"] == "app:2"
    assert app["ports"] == [{"containerPort": 80}, {"containerPort": 443}]


def test_patch_delete_removes_an_item_and_replace_swaps_the_list_whole() -> None:
    spec = strategic_merge_patch(
        DEPLOYMENT,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "log", "$patch": "delete"}],
                        "tolerations": [{"key": "y"}],
                    }
                }
            }
        },
    )["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert spec["tolerations"] == [{"key": "y"}]  # no merge key: replaced, as kube does
    replaced = strategic_merge_patch(
        DEPLOYMENT,
        {"spec": {"template": {"spec": {"containers": [{"name": "only"}, {"$patch": "replace"}]}}}},
    )
    assert _containers(replaced) == [{"name": "only"}]


def test_map_directives_replace_retain_and_primitive_list_deletion() -> None:
    patched = strategic_merge_patch(
        DEPLOYMENT,
        {
            "metadata": {
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "finalizers": ["b"],
                "labels": {"$patch": "replace", "only": "this"},
            },
            "spec": {"$retainKeys": ["template"], "replicas": 2},
        },
    )
    assert patched["metadata"]["finalizers"] == ["b"]
    assert patched["metadata"]["labels"] == {"only": "this"}
    assert set(patched["spec"]) == {"template"}
    with pytest.raises(PatchError):
        strategic_merge_patch(DEPLOYMENT, {"spec": {"$patch": "explode"}})
    with pytest.raises(PatchError):
        strategic_merge_patch(
            DEPLOYMENT, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
        )


_KEYS = st.text(alphabet="abxyz", max_size=3)  # never a merge-keyed list's name
_SCALARS = st.one_of(st.booleans(), st.integers(), st.text(max_size=5))
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=10,
)
_OBJECTS = st.dictionaries(_KEYS, _JSON, max_size=4)


def _diff(a: Any, b: Any) -> Any:
    """The merge patch that turns `a` into `b` (b holds no nulls)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return b
    patch: dict[str, Any] = {k: None for k in a if k not in b}
    patch.update({k: _diff(a.get(k), v) for k, v in b.items() if a.get(k) != v or k not in a})
    return patch


@given(_OBJECTS, _OBJECTS)
def test_merge_patch_of_a_diff_gives_the_other_object(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert merge_patch(a, _diff(a, b)) == b


@given(_OBJECTS, _OBJECTS)
def test_strategic_merge_agrees_with_merge_patch_without_merge_keyed_lists(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert strategic_merge_patch(a, _diff(a, b)) == b
