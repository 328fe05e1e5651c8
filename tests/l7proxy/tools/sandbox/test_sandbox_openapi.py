"""The OpenAPI v3 schemas: built from kube's own (kubernetes-validate's copy) into the packed
file the sandbox serves, rewritten to kube's OpenAPI v3 spelling, and complete per
group-version document (every reference resolves inside it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from l7proxy.tools.sandbox import openapi_build
from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

REF = "#/components/schemas/"


def test_the_packed_schemas_are_what_the_build_makes_from_upstream() -> None:
    built = openapi_build.encoded(openapi_build.build(openapi_build.upstream_definitions()))
    assert built == openapi_build.SCHEMAS.read_bytes(), "run `make sandbox-openapi`"


def test_json_schema_spellings_become_kubes_openapi_v3() -> None:
    definitions = {
        "a.Thing": {
            "type": ["object", "null"],
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
            "properties": {
                "kind": {"type": ["string", "null"], "enum": ["Pod"]},
                "port": {"oneOf": [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]},
                "meta": {"$ref": "#/$defs/a.Meta", "description": "its metadata"},
                "items": {"type": "array", "items": {"$ref": "#/$defs/a.Meta"}},
                "labels": {"additionalProperties": {"type": ["string", "null"]}},
            },
        },
        "a.Meta": {"type": "object", "properties": {"name": {"type": ["string", "null"]}}},
        "a.Unused": {"type": "object"},
    }
    schemas = openapi_build.build(definitions)
    assert sorted(schemas) == ["a.Meta", "a.Thing"]
    assert schemas["a.Thing"]["type"] == "object"
    assert schemas["a.Thing"]["properties"] == {
        "kind": {"type": "string"},
        "port": {"type": "string", "format": "int-or-string"},
        "meta": {"allOf": [{"$ref": REF + "a.Meta"}], "description": "its metadata"},
        "items": {"type": "array", "items": {"$ref": REF + "a.Meta"}},
        "labels": {"additionalProperties": {"type": "string"}},
    }


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if "$ref" in node else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


@pytest.mark.parametrize(
    ("path", "kinds"),
    [
        ("api/v1", {"Pod", "Namespace", "ConfigMap", "Secret", "Service", "Event", "Node"}),
        ("apis/apps/v1", {"Deployment", "ReplicaSet", "Scale"}),
        ("apis/batch/v1", {"Job"}),
    ],
)
async def test_each_document_holds_its_kinds_schemas_and_all_they_reference(
    call: Call, path: str, kinds: set[str]
) -> None:
    root = (await call("GET", "/openapi/v3")).json()
    spec = (await call("GET", root["paths"][path]["serverRelativeURL"])).json()
    schemas = spec["components"]["schemas"]
    served = {
        gvk["kind"]
        for s in schemas.values()
        for gvk in s.get("x-kubernetes-group-version-kind", ())
    }
    assert kinds <= served
    assert {r.removeprefix(REF) for r in _refs(schemas)} <= set(schemas)
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert '"type":[' not in json.dumps(spec, separators=(",", ":"))  # no JSON Schema nullables
