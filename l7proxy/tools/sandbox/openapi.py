"""Just enough OpenAPI v3 for kubectl's field-validation check.

`kubectl create/apply -f` validate with `fieldValidation=Strict`. cli-runtime's
query_param_verifier_v3.go decides whether the server validates by finding, in the
group-version's OpenAPI v3 document, a PATCH operation tagged with the object's
`x-kubernetes-group-version-kind` that lists the query parameter. Without that document
kubectl falls back to client-side validation, which needs the full schema and fails with
"failed to download openapi". So each group-version gets a document with one such PATCH
operation per kind, and nothing else (no schemas: apply then computes patches from its
compiled-in types, as it does when the schema lacks the kind).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from l7proxy.tools.sandbox.resources import ResourceType, group_versions

Obj = dict[str, Any]

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _path_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(rtype: ResourceType) -> str:
    scope = "/namespaces/{namespace}" if rtype.namespaced else ""
    return f"/{_path_key(rtype.group, rtype.version)}{scope}/{rtype.name}/{{name}}"


def _patch_operation(rtype: ResourceType) -> Obj:
    return {
        "patch": {
            "operationId": f"patch{rtype.kind}",
            "x-kubernetes-group-version-kind": {
                "group": rtype.group,
                "version": rtype.version,
                "kind": rtype.kind,
            },
            "parameters": [
                {"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                for p in _QUERY_PARAMS
            ],
            "responses": {"200": {"description": "OK"}},
        }
    }


def _spec(rtypes: tuple[ResourceType, ...]) -> Obj:
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "sandbox"},
        "paths": {_item_path(r): _patch_operation(r) for r in rtypes},
    }


_SPECS: dict[str, Obj] = {_path_key(g, v): _spec(r) for (g, v), r in group_versions().items()}


def root() -> Obj:
    """The `/openapi/v3` index; the hash lets kubectl cache each document."""
    paths = {}
    for key, spec in _SPECS.items():
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": paths}


def group_version_spec(key: str) -> Obj | None:
    """The document for `api/v1` or `apis/<group>/<version>`."""
    return _SPECS.get(key)
