"""Build the sandbox's OpenAPI schemas from kube's own, as `kubernetes-validate` ships them.

`make sandbox-openapi` runs this (it needs the `dev` extra): it reads the definitions of
`KUBERNETES_VERSION` from the kubernetes-validate package (Apache-2.0; JSON Schema made
from kube's `api/openapi-spec`), keeps those reachable from the kinds the sandbox serves
and writes them, as kube-apiserver's OpenAPI v3 spells them, to `SCHEMAS`. The rewriting
undoes what the JSON Schema conversion added: `$ref`s point into `components/schemas`
(wrapped in `allOf` where they carry a description, as kube's), a nullable `["string",
"null"]` type is `string` again, int-or-string is kube's `format: int-or-string`, and the
enums it put on every kind's `apiVersion` and `kind` are dropped.
"""

from __future__ import annotations

import gzip
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from l7proxy.tools.sandbox import openapi_schemas
from l7proxy.tools.sandbox.resources import ALL

KUBERNETES_VERSION = "v1.32.0"
SCHEMAS = Path(__file__).with_name(openapi_schemas.FILE)
_JSON_REF = "#/$defs/"
_INT_OR_STRING = [{"type": "string"}, {"type": "integer"}]

Obj = dict[str, Any]


def _ref(node: Obj) -> str | None:
    ref = node.get("$ref")
    return ref.removeprefix(_JSON_REF) if isinstance(ref, str) else None


def _schema(node: Any) -> Any:
    """One schema node in kube's OpenAPI v3 form."""
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            value = next((t for t in value if t != "null"), "object")
        elif key == "properties":
            value = {name: _schema(v) for name, v in value.items()}
        elif key in ("items", "additionalProperties"):
            value = _schema(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            value = [_schema(v) for v in value]
        out[key] = value
    if out.get("oneOf") == _INT_OR_STRING:
        del out["oneOf"]
        out.update(type="string", format="int-or-string")
    ref = _ref(node)
    if ref is None:
        return out
    target = {"$ref": openapi_schemas.REF + ref}
    return {"allOf": [target], **out} if out else target


def build(definitions: dict[str, Obj]) -> dict[str, Obj]:
    """The OpenAPI v3 schemas the served kinds need."""
    schemas = openapi_schemas.reachable({n: _schema(d) for n, d in definitions.items()}, ALL)
    for schema in schemas.values():
        if "x-kubernetes-group-version-kind" in schema:
            for field in ("apiVersion", "kind"):
                schema.get("properties", {}).get(field, {}).pop("enum", None)
    return schemas


def upstream_definitions() -> dict[str, Obj]:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    source = folder / f"{KUBERNETES_VERSION}-local" / "_definitions.json"
    definitions: dict[str, Obj] = json.loads(source.read_text())["$defs"]
    return definitions


def encoded(schemas: dict[str, Obj]) -> bytes:
    """The file's bytes: the same schemas give the same bytes (mtime 0)."""
    document = {"kubernetes": KUBERNETES_VERSION, "schemas": schemas}
    text = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(text, compresslevel=9, mtime=0)


def main() -> None:
    data = encoded(build(upstream_definitions()))
    SCHEMAS.write_bytes(data)
    sys.stdout.write(f"wrote {SCHEMAS} ({len(data)} bytes)\n")


if __name__ == "__main__":
    main()
