"""JSON merge patch (RFC 7386), JSON patch (RFC 6902: add, replace, remove) and strategic
merge patch.

Strategic merge follows the built-in types' `patchMergeKey` tags (a list named `containers`
merges its items by `name`, and so on: `MERGE_KEYS`); other lists are replaced, as kube
does for lists without a merge strategy. The directives `$patch` (replace, delete, merge),
`$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and `$retainKeys` are honoured
and never stored.
"""

from __future__ import annotations

import copy
import json
from typing import Any


class PatchError(ValueError):
    """The patch document is malformed or does not apply to the object."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces.

    Works on copies: the result shares nothing with `target` or `patch`."""
    return _merge(copy.deepcopy(target), patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


# The list fields of the built-in types with `patchStrategy:"merge"` and their merge key.
# `ports` is keyed by `containerPort` in a container and by `port` in a Service.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",),
    "resourceClaims": ("name",),
}
_PRIMITIVE_MERGE_LISTS = frozenset({"finalizers"})
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """kube's strategic merge patch, on copies."""
    return _strategic(copy.deepcopy(target), patch)


def _strategic(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive: {directive!r}")
    result: dict[str, Any] = target if isinstance(target, dict) else {}
    retain = patch.pop("$retainKeys", None)
    orders = {k[len(_ORDER) :]: patch.pop(k) for k in list(patch) if k.startswith(_ORDER)}
    deletions = {
        k[len(_DELETE_PRIMITIVES) :]: patch.pop(k)
        for k in list(patch)
        if k.startswith(_DELETE_PRIMITIVES)
    }
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        else:
            merged = _strategic(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, doomed in deletions.items():
        if isinstance(result.get(key), list) and isinstance(doomed, list):
            result[key] = [v for v in result[key] if v not in doomed]
    for key, order in orders.items():
        if isinstance(result.get(key), list) and isinstance(order, list):
            result[key] = _ordered(key, result[key], order)
    if isinstance(retain, list):
        for key in [k for k in result if k not in retain]:
            del result[key]
    return result


def _strip(value: Any) -> Any:
    """A patch value with its directives removed, as stored when it replaces whole."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return copy.deepcopy(value)


def _merge_key(field: str, items: list[Any]) -> str | None:
    for key in MERGE_KEYS.get(field, ()):
        if any(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return _strip(patch)  # type: ignore[no-any-return]
    if field in _PRIMITIVE_MERGE_LISTS:
        return current + [v for v in patch if v not in current]
    key = _merge_key(field, current + patch)
    if key is None:
        return _strip(patch)  # type: ignore[no-any-return]
    result = list(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"{field}: an item has no merge key {key!r}")
        at = next((i for i, c in enumerate(result) if c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del result[at]
        elif at is None:
            result.append(_strip(item))
        else:
            result[at] = _strategic(result[at], item)
    return result


def _ordered(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    """`$setElementOrder`: the listed items first, in that order; the rest after."""
    key = _merge_key(field, items)

    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [o.get(key) if key and isinstance(o, dict) else o for o in order]
    rank = {json.dumps(w, sort_keys=True): i for i, w in enumerate(wanted)}
    return sorted(items, key=lambda i: rank.get(json.dumps(ident(i), sort_keys=True), len(rank)))


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _index(container: list[Any], token: str, *, appending: bool) -> int:
    if appending and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) - (0 if appending else 1):
        raise PatchError(f"array index out of range: {index}")
    return index


def _apply(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
        raise PatchError(f"unsupported JSON patch operation: {op!r}")
    tokens = _pointer(op.get("path"))
    if op["op"] != "remove" and "value" not in op:
        raise PatchError(f"{op['op']} operation has no value")
    if not tokens:  # the whole document
        if op["op"] == "remove":
            raise PatchError("cannot remove the whole document")
        return copy.deepcopy(op["value"])
    parent: Any = doc
    for token in tokens[:-1]:
        if isinstance(parent, dict) and token in parent:
            parent = parent[token]
        elif isinstance(parent, list):
            parent = parent[_index(parent, token, appending=False)]
        else:
            raise PatchError(f"path not found: {op['path']}")
    last = tokens[-1]
    if isinstance(parent, dict):
        if op["op"] != "add" and last not in parent:
            raise PatchError(f"path not found: {op['path']}")
        if op["op"] == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(op["value"])
    elif isinstance(parent, list):
        index = _index(parent, last, appending=op["op"] == "add")
        if op["op"] == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif op["op"] == "replace":
            parent[index] = copy.deepcopy(op["value"])
        else:
            del parent[index]
    else:
        raise PatchError(f"path not found: {op['path']}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902, applied to a copy: a failing operation leaves `target` untouched."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        doc = _apply(doc, op)
    return doc
