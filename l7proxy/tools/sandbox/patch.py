"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902: add, replace, remove).

Strategic merge patch is answered as a merge patch: the sandbox has no schema to know list
merge keys, and for what kubectl sends (apply, label, annotate, scale) the two agree
except on lists, which merge patch replaces whole.
"""

from __future__ import annotations

import copy
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
