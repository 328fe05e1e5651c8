"""OpenAPI v3: `/openapi/v3` and one document per group-version, for kubectl.

Each document has kube's schemas for its kinds (`components/schemas`, with everything they
reference: built from kube's own by `openapi_build`), which `kubectl explain` prints and
`kubectl apply`/`diff` read list merge keys from. Its `paths` hold only what kubectl's
field-validation check reads: `kubectl create/apply -f` validate with
`fieldValidation=Strict`, and cli-runtime's query_param_verifier_v3.go decides whether the
server validates by finding a PATCH operation tagged with the object's
`x-kubernetes-group-version-kind` that lists the query parameter. So each kind gets one
such operation, and the sandbox serves no other operations in OpenAPI.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from l7proxy.tools.sandbox import openapi_schemas
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


_SCHEMAS = openapi_schemas.load()


def _spec(rtypes: tuple[ResourceType, ...]) -> Obj:
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "sandbox"},
        "paths": {_item_path(r): _patch_operation(r) for r in rtypes},
        "components": {"schemas": openapi_schemas.reachable(_SCHEMAS, rtypes)},
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
