"""kube's OpenAPI v3 schemas for the served kinds: the packed file `openapi_build` writes,
and the closure of the schemas a set of kinds needs."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

from l7proxy.tools.sandbox.resources import ResourceType

FILE = "openapi_schemas.json.gz"
REF = "#/components/schemas/"

Obj = dict[str, Any]


def load() -> dict[str, Obj]:
    packed = resources.files(__package__).joinpath(FILE).read_bytes()
    schemas: dict[str, Obj] = json.loads(gzip.decompress(packed))["schemas"]
    return schemas


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.removeprefix(REF)} if isinstance(ref, str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def reachable(schemas: dict[str, Obj], rtypes: tuple[ResourceType, ...]) -> dict[str, Obj]:
    """The schemas of these kinds and their subresources' kinds (Scale), with every schema
    they reference, found by `x-kubernetes-group-version-kind`."""
    kinds = {(r.group, r.version, r.kind) for r in rtypes}
    kinds |= {(s.group, s.version, s.kind) for r in rtypes for s in r.subresources if s.group}
    todo = {
        name
        for name, schema in schemas.items()
        for gvk in schema.get("x-kubernetes-group-version-kind", ())
        if (gvk["group"], gvk["version"], gvk["kind"]) in kinds
    }
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        keep.add(name)
        todo |= _refs(schemas[name]) - keep
    return {name: schemas[name] for name in sorted(keep)}
