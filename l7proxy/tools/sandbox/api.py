"""The resource API: `/api/v1/...` and `/apis/<group>/<version>/...` requests by verb."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from l7proxy.tools.sandbox import logs, protobuf
from l7proxy.tools.sandbox.paging import page
from l7proxy.tools.sandbox.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from l7proxy.tools.sandbox.portforward import serve_portforward
from l7proxy.tools.sandbox.resources import UPGRADE_SUBRESOURCES, ResourceType, lookup
from l7proxy.tools.sandbox.selectors import Selector
from l7proxy.tools.sandbox.status import (
    FieldError,
    bad_request,
    invalid,
    method_not_allowed,
    path_not_found,
    success,
    unsupported_media_type,
)
from l7proxy.tools.sandbox.store import Store
from l7proxy.tools.sandbox.tables import INCLUDE_OBJECT, table
from l7proxy.tools.sandbox.watch import DEFAULT_TIMEOUT, TableFormat, WatchRequest, serve_watch
from l7proxy.tools.sandbox.wire import (
    APPLY,
    TABLE,
    encode,
    parse_apply,
    parse_json,
    query_params,
    respond,
    wants_table,
)
from l7proxy.wire.exchange import Exchange
from protocols.k8s_protobuf import ProtobufError

Obj = dict[str, Any]

_NAMESPACE_SUBRESOURCES = ("status", "finalize")  # namespaces/<name>/<these> name a namespace


@dataclass(frozen=True, slots=True)
class Target:
    """What a resource URL names. `namespace` is None for a list across all namespaces;
    cluster-scoped resources live in namespace ""."""

    rtype: ResourceType
    namespace: str | None
    name: str
    subresource: str


def parse_target(group: str, version: str, segments: list[str]) -> Target:
    """Split the path after the group-version as kube's RequestInfoFactory does."""
    namespace: str | None = None
    if (
        segments[0] == "namespaces"
        and len(segments) > 2
        and segments[2] not in _NAMESPACE_SUBRESOURCES
    ):
        namespace, segments = segments[1], segments[2:]
    if not 1 <= len(segments) <= 3 or not all(segments):
        raise path_not_found()
    rtype = lookup(group, version, segments[0])
    name = segments[1] if len(segments) > 1 else ""
    subresource = segments[2] if len(segments) > 2 else ""
    if rtype is None or (subresource and rtype.subresource(subresource) is None):
        raise path_not_found()
    if not rtype.namespaced:
        if namespace is not None:
            raise path_not_found()
        namespace = ""
    elif namespace is None and name:
        raise path_not_found()
    return Target(rtype, namespace, name, subresource)


def _media_type(exchange: Exchange) -> str:
    raw = exchange.head.header(b"content-type") or b""
    return raw.decode("latin-1").partition(";")[0].strip().lower()


def _list(rtype: ResourceType, items: list[Obj], metadata: Obj) -> Obj:
    return {
        "kind": f"{rtype.kind}List",
        "apiVersion": rtype.api_version,
        "metadata": metadata,
        "items": items,
    }


def _scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    labels = obj.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


def _view(target: Target, obj: Obj) -> Obj:
    """The representation a (sub)resource URL reads and writes."""
    return _scale(obj) if target.subresource == "scale" else obj


def _merge_view(target: Target, current: Obj, view: Obj) -> Obj:
    """The full object after writing `view` to the URL, keeping what that URL does not own:
    the main resource leaves status alone, `status` changes only status, `scale` only
    spec.replicas. The view's resourceVersion is kept as the write's precondition."""
    if not isinstance(view, dict):
        raise bad_request(f"expected a JSON object for {target.rtype.kind}")
    meta = view.get("metadata")
    precondition = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if target.subresource == "":
        full = copy.deepcopy(view)
        if target.rtype.subresource("status") is not None:
            full.pop("status", None)
            if "status" in current:
                full["status"] = current["status"]
        return full
    full = copy.deepcopy(current)
    if target.subresource == "status":
        full["status"] = view.get("status", {})
    elif target.subresource == "ephemeralcontainers":
        spec = view.get("spec")
        added = spec.get("ephemeralContainers") if isinstance(spec, dict) else None
        full["spec"]["ephemeralContainers"] = _ephemeral(target, current, added)
    else:  # scale: the store's validation checks the replicas
        spec = view.get("spec")
        full["spec"]["replicas"] = spec.get("replicas") if isinstance(spec, dict) else None
    full["metadata"]["resourceVersion"] = precondition
    return full


def _ephemeral(target: Target, current: Obj, containers: Any) -> list[Obj]:
    """The pod's ephemeral containers after a write: kube lets them be added, never
    changed or removed."""
    field = "spec.ephemeralContainers"
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        raise invalid(target.rtype, target.name, FieldError(field, "Invalid", "must be a list"))
    before = {c.get("name"): c for c in current["spec"].get("ephemeralContainers") or []}
    after = {c.get("name"): c for c in containers}
    taken = {c.get("name") for c in current["spec"].get("containers") or []}
    errors = [
        FieldError(field, "Forbidden", f'existing ephemeral containers "{name}" may not be changed')
        for name, old in before.items()
        if after.get(name) != old
    ]
    for index, new in enumerate(containers):
        at, name = f"{field}[{index}]", new.get("name")
        if not name:
            errors.append(FieldError(f"{at}.name", "Required"))
        elif name in taken:
            errors.append(FieldError(f"{at}.name", "Duplicate", value=json.dumps(name)))
        if not new.get("image"):
            errors.append(FieldError(f"{at}.image", "Required"))
    if errors:
        raise invalid(target.rtype, target.name, *errors)
    return containers


def _patch(exchange: Exchange, target: Target, current: Obj, body: bytes) -> Obj:
    media_type = _media_type(exchange)
    if media_type == APPLY:
        document: Any = _applied(parse_apply(body), query_params(exchange.head.query), None)
        media_type = "application/strategic-merge-patch+json"
    else:
        document = parse_json(body)
    try:
        if media_type == "application/merge-patch+json":
            patched: Obj = merge_patch(current, document)
        elif media_type == "application/strategic-merge-patch+json":
            patched = strategic_merge_patch(current, document)
        elif media_type == "application/json-patch+json":
            patched = json_patch(current, document)
        else:
            raise unsupported_media_type(media_type)
    except PatchError as err:
        raise invalid(target.rtype, target.name, FieldError("patch", "Invalid", str(err))) from err
    return patched


def _applied(obj: Any, params: dict[str, str], now: float | None) -> Obj:
    """A server-side apply body with its manager recorded in `managedFields` (the sandbox
    keeps no field ownership: an apply merges like a strategic merge patch)."""
    if not isinstance(obj, dict):
        raise bad_request("an apply patch must be an object")
    manager = params.get("fieldManager", "")
    if not manager:
        raise bad_request("PatchOptions.meta.k8s.io: fieldManager: Required value")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    meta["managedFields"] = [
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": obj.get("apiVersion", ""),
            "time": stamp,
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
    ]
    return obj


def _object_body(exchange: Exchange, rtype: ResourceType, body: bytes) -> Obj:
    """A create or update body: JSON, or the protobuf kubectl's typed clients send."""
    media_type = _media_type(exchange)
    if media_type in ("", "application/json"):  # the official Python client sends none
        obj = parse_json(body)
    elif media_type == protobuf.MEDIA_TYPE:
        try:
            obj = protobuf.decode(body)
        except ProtobufError as err:
            raise unsupported_media_type(f"{media_type} ({err})") from err
    else:
        raise unsupported_media_type(media_type)
    if not isinstance(obj, dict):
        raise bad_request(f"expected a JSON object for {rtype.kind}")
    return obj


def _dry_run(method: str, params: dict[str, str], body: bytes) -> bool:
    """`dryRun=All` from the query, or for a DELETE from the DeleteOptions body (kubectl
    sends it there)."""
    values = [params["dryRun"]] if "dryRun" in params else []
    if method == "DELETE" and body.strip():
        options = parse_json(body)
        listed = options.get("dryRun") if isinstance(options, dict) else None
        if listed is not None and not isinstance(listed, list):
            raise bad_request("DeleteOptions.dryRun must be a list")
        values += listed or []
    for value in values:
        if value not in ("", "All"):
            raise bad_request(f"unsupported dry run option: {value!r}")
    return "All" in values


class ResourceApi:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    async def serve(self, exchange: Exchange, target: Target, body: bytes) -> None:
        method = exchange.head.method
        params = query_params(exchange.head.query)
        if target.subresource == "portforward":
            assert target.namespace is not None  # pods are namespaced: parse_target saw a name
            await serve_portforward(exchange, self._store, target.namespace, target.name)
            return
        if target.subresource in UPGRADE_SUBRESOURCES:
            raise bad_request("upgrade required")
        if target.subresource == "log":
            if method != "GET":
                raise method_not_allowed()
            assert target.namespace is not None  # pods are namespaced: parse_target saw a name
            req = logs.parse_request(self._store, target.namespace, target.name, params)
            await logs.serve_logs(exchange, self._store, req, self._clock)
        elif method == "GET" and params.get("watch", "").lower() in ("true", "1"):
            await serve_watch(exchange, self._store, self._watch_request(exchange, target, params))
        elif method == "GET":
            await self._read(exchange, target, params)
        else:
            status, obj = self._write(exchange, method, target, params, body)
            await respond(exchange, status, encode(obj))

    def _selector(self, target: Target, params: dict[str, str]) -> Selector:
        fields = params.get("fieldSelector", "")
        if target.name:
            fields = ",".join(f for f in (f"metadata.name={target.name}", fields) if f)
        return Selector.parse(target.rtype.name, params.get("labelSelector", ""), fields)

    def _table_format(
        self, exchange: Exchange, target: Target, params: dict[str, str]
    ) -> TableFormat | None:
        if not wants_table(exchange.head.header(b"accept"), tables=not target.subresource):
            return None
        include = params.get("includeObject", "Metadata")
        if include not in INCLUDE_OBJECT:
            raise bad_request(f"includeObject must be one of {', '.join(INCLUDE_OBJECT)}")
        return TableFormat(include, self._clock)

    def _watch_request(
        self, exchange: Exchange, target: Target, params: dict[str, str]
    ) -> WatchRequest:
        if target.subresource:
            raise method_not_allowed()
        since_text = params.get("resourceVersion", "")
        timeout_text = params.get("timeoutSeconds", "")
        if not all(t.isdigit() for t in (since_text, timeout_text) if t):
            raise bad_request("resourceVersion and timeoutSeconds must be non-negative integers")
        return WatchRequest(
            target.rtype,
            target.namespace,
            self._selector(target, params),
            int(since_text) if since_text not in ("", "0") else None,
            float(timeout_text or 0) or DEFAULT_TIMEOUT,  # 0 means the server's default
            self._table_format(exchange, target, params),
        )

    async def _read(self, exchange: Exchange, target: Target, params: dict[str, str]) -> None:
        tables = self._table_format(exchange, target, params)
        if target.name:
            obj = self._store.get(target.rtype, target.namespace or "", target.name)
            objects = [obj]
            metadata: Obj = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            result = _view(target, obj)
        else:
            listed = page(
                self._store.list(target.rtype, target.namespace, self._selector(target, params)),
                params,
            )
            objects = listed.items
            metadata = listed.metadata(
                str(self._store.resource_version),
                count_remaining=not (params.get("labelSelector") or params.get("fieldSelector")),
            )
            result = _list(target.rtype, objects, metadata)
        if tables is None:
            await respond(exchange, 200, encode(result))
            return
        doc = table(
            target.rtype, objects, now=self._clock(), include=tables.include, metadata=metadata
        )
        await respond(exchange, 200, encode(doc), TABLE)

    def _write(
        self, exchange: Exchange, method: str, target: Target, params: dict[str, str], body: bytes
    ) -> tuple[int, Obj]:
        store, rtype, dry_run = self._store, target.rtype, _dry_run(method, params, body)
        namespace = target.namespace
        if not target.name:
            if method == "POST" and namespace is not None:
                created = _object_body(exchange, rtype, body)
                return 201, store.create(rtype, namespace, created, dry_run=dry_run)
            if method == "DELETE" and "deletecollection" in rtype.verbs:
                doomed = store.list(rtype, namespace, self._selector(target, params))
                gone = [
                    store.delete(
                        rtype,
                        o["metadata"].get("namespace", ""),
                        o["metadata"]["name"],
                        dry_run=dry_run,
                    )
                    for o in doomed
                ]
                return 200, _list(rtype, gone, {"resourceVersion": str(store.resource_version)})
            raise method_not_allowed()
        assert namespace is not None  # parse_target never names an object across namespaces
        if method == "DELETE" and not target.subresource:
            removed = store.delete(rtype, namespace, target.name, dry_run=dry_run)
            return 200, success(rtype, removed)
        if method not in ("PUT", "PATCH"):
            raise method_not_allowed()
        if (
            method == "PATCH"
            and _media_type(exchange) == APPLY
            and not target.subresource
            and not store.exists(rtype, namespace, target.name)
        ):  # server-side apply creates what is not there yet
            applied = _applied(parse_apply(body), params, self._clock())
            return 201, store.create(rtype, namespace, applied, dry_run=dry_run)
        current = store.get(rtype, namespace, target.name)
        if method == "PUT":
            view = _object_body(exchange, rtype, body)
        else:
            view = _patch(exchange, target, _view(target, current), body)
        full = _merge_view(target, current, view)
        return 200, _view(
            target, store.update(rtype, namespace, target.name, full, dry_run=dry_run)
        )
