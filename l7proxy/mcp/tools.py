"""What the MCP tools do (`catalog` names and describes them), each a few Kubernetes
requests through the gateway.

A tool gets validated arguments and a `KubeClient` acting as the caller; it returns its
structured output (which matches its `output_schema`) and the text a model reads. A
refused or failed request raises `ToolError` with the cluster's (or the gateway's) message,
which becomes a result with `isError: true`. Outputs are bounded in items and bytes and say
so (`truncated`) when cut.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import yaml

from l7proxy.mcp.exec import run_exec
from l7proxy.mcp.kube import GATEWAY_API, ApiResource, KubeClient, ToolError
from l7proxy.mcp.schema import Schema

# What one tool result carries at most: enough for a model's context, never a flood.
MAX_OUTPUT_BYTES = 128 * 1024
MAX_ITEMS = 500
DEFAULT_ITEMS = 100
MAX_MANIFEST_BYTES = 1024 * 1024
FIELD_MANAGER = "l7proxy-mcp"


@dataclass(frozen=True, slots=True)
class ToolOutput:
    structured: dict[str, Any]
    text: str = ""  # "" : the structured output as JSON

    def rendered(self) -> str:
        return self.text or json.dumps(self.structured, indent=1, ensure_ascii=False)


Run = Callable[[KubeClient, dict[str, Any]], Awaitable[ToolOutput]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    title: str
    description: str
    input_schema: Schema
    output_schema: Schema
    run: Run
    read_only: bool = True
    destructive: bool = False
    # Arguments as the audit event records them: none of them may carry a secret value.
    audited: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda args: args)

    def listing(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.read_only,
                "openWorldHint": False,
            },
        }


def _namespace(resource: ApiResource, args: dict[str, Any]) -> str:
    return str(args.get("namespace") or "default") if resource.namespaced else ""


def _tidy(obj: Any) -> Any:
    """An object without its managedFields, which say nothing a model needs."""
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        obj["metadata"].pop("managedFields", None)
    return obj


def _bounded(items: list[Any], limit: int = MAX_OUTPUT_BYTES) -> tuple[list[Any], bool]:
    """As many items as fit in `limit` bytes of JSON, in order; and whether some did not."""
    kept: list[Any] = []
    size = 0
    for item in items:
        size += len(json.dumps(item, ensure_ascii=False)) + 2
        if size > limit:
            return kept, True
        kept.append(item)
    return kept, False


def _cut(text: str, limit: int = MAX_OUTPUT_BYTES) -> tuple[str, bool]:
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", "ignore"), True


# --- the tools ---------------------------------------------------------------------------


async def whoami(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = await kube.ok_json(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body=json.dumps(review).encode(),
        content_type="application/json",
    )
    info = (answer.get("status") or {}).get("userInfo") or {}
    return ToolOutput(
        {
            "username": str(info.get("username", "")),
            "groups": [str(g) for g in info.get("groups") or []],
            "connection": kube.connection,
        }
    )


async def can_i(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    attributes: dict[str, Any] = {
        "verb": args["verb"],
        "resource": args["resource"],
        "group": args.get("api_group", ""),
    }
    for key, argument in (
        ("namespace", "namespace"),
        ("name", "name"),
        ("subresource", "subresource"),
    ):
        if args.get(argument):
            attributes[key] = args[argument]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    answer = await kube.ok_json(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        body=json.dumps(review).encode(),
        content_type="application/json",
    )
    status = answer.get("status") or {}
    return ToolOutput(
        {"allowed": bool(status.get("allowed")), "reason": str(status.get("reason", ""))}
    )


async def list_resources(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    resource = await kube.discover(args["resource"], args.get("api_version", ""))
    namespace = "" if args.get("all_namespaces") else _namespace(resource, args)
    query = {"limit": str(args.get("limit", DEFAULT_ITEMS))}
    if args.get("label_selector"):
        query["labelSelector"] = args["label_selector"]
    if args.get("field_selector"):
        query["fieldSelector"] = args["field_selector"]
    if args.get("continue"):
        query["continue"] = args["continue"]
    answer = await kube.ok_json("GET", resource.path(namespace), query)
    items = [_tidy(item) for item in answer.get("items") or []]
    limit = int(query["limit"])  # held to even where the server does not page
    kept, truncated = _bounded(items[:limit])
    truncated |= len(items) > limit
    return ToolOutput(
        {
            "resource": resource.name,
            "kind": resource.kind,
            "namespace": namespace,
            "items": kept,
            "count": len(kept),
            "continue": str((answer.get("metadata") or {}).get("continue") or ""),
            "truncated": truncated,
        }
    )


async def get_resource(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    resource = await kube.discover(args["resource"], args.get("api_version", ""))
    namespace = _namespace(resource, args)
    obj = _tidy(await kube.ok_json("GET", resource.path(namespace, args["name"])))
    form = args.get("format", "yaml")
    text = (
        yaml.safe_dump(obj, sort_keys=False)
        if form == "yaml"
        else json.dumps(obj, indent=2, ensure_ascii=False)
    )
    text, truncated = _cut(text)
    return ToolOutput(
        {
            "resource": resource.name,
            "name": args["name"],
            "namespace": namespace,
            "format": form,
            "manifest": text,
            "truncated": truncated,
        },
        text + ("\n# (cut: the object is larger than the output bound)" if truncated else ""),
    )


async def pod_logs(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    pods = await kube.discover("pods", "v1")
    namespace = _namespace(pods, args)
    query = {
        "tailLines": str(args.get("tail_lines", 200)),
        "limitBytes": str(MAX_OUTPUT_BYTES + 1),
    }
    if args.get("container"):
        query["container"] = args["container"]
    if args.get("since_seconds"):
        query["sinceSeconds"] = str(args["since_seconds"])
    if args.get("previous"):
        query["previous"] = "true"
    response = await kube.request("GET", pods.path(namespace, args["pod"], "log"), query)
    if not response.ok:
        raise response.failure()
    text, truncated = _cut(response.body.decode("utf-8", "replace"))
    return ToolOutput(
        {
            "pod": args["pod"],
            "namespace": namespace,
            "container": args.get("container", ""),
            "text": text,
            "truncated": truncated or response.truncated,
        },
        text,
    )


async def list_events(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    events = await kube.discover("events", "v1")
    namespace = "" if args.get("all_namespaces") else _namespace(events, args)
    query = {"limit": str(args.get("limit", DEFAULT_ITEMS))}
    if args.get("field_selector"):
        query["fieldSelector"] = args["field_selector"]
    answer = await kube.ok_json("GET", events.path(namespace), query)
    # Filtered here, not by an `involvedObject.name` selector: not every server has it.
    about = args.get("object_name")
    items = answer.get("items") or []
    rows = [
        _event_row(item)
        for item in items
        if not about or (item.get("involvedObject") or {}).get("name") == about
    ]
    rows.sort(key=lambda row: row["last_seen"])
    kept, truncated = _bounded(rows)
    return ToolOutput({"events": kept, "count": len(kept), "truncated": truncated})


def _event_row(event: dict[str, Any]) -> dict[str, Any]:
    involved = event.get("involvedObject") or {}
    return {
        "namespace": str((event.get("metadata") or {}).get("namespace", "")),
        "type": str(event.get("type", "")),
        "reason": str(event.get("reason", "")),
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "message": str(event.get("message", "")),
        "count": int(event.get("count") or 1),
        "last_seen": str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        ),
    }


def _documents(manifest: str) -> list[dict[str, Any]]:
    try:
        documents = [d for d in yaml.safe_load_all(manifest) if d is not None]
    except yaml.YAMLError as exc:
        raise ToolError(f"the manifest is not YAML or JSON: {exc}") from exc
    if not documents:
        raise ToolError("the manifest holds no object")
    for number, doc in enumerate(documents, start=1):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise ToolError(f"document {number}: an object needs apiVersion and kind")
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise ToolError(f"document {number}: an object needs metadata.name")
    return documents


async def apply_manifest(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    results = []
    for doc in _documents(args["manifest"]):
        resource = await kube.discover(str(doc["kind"]), str(doc["apiVersion"]))
        namespace = str(doc["metadata"].get("namespace") or args.get("namespace") or "default")
        namespace = namespace if resource.namespaced else ""
        if namespace:
            doc["metadata"]["namespace"] = namespace
        results.append(await _apply_one(kube, resource, namespace, doc, args))
    failed = [r for r in results if r["error"]]
    if failed:
        lines = [f"{r['kind']}/{r['name']}: {r['error'] or r['action']}" for r in results]
        raise ToolError("\n".join(lines))
    return ToolOutput({"results": results, "dry_run": bool(args.get("dry_run"))})


async def _apply_one(
    kube: KubeClient,
    resource: ApiResource,
    namespace: str,
    doc: dict[str, Any],
    args: dict[str, Any],
) -> dict[str, Any]:
    """Server-side apply; a cluster that does not take apply patches (415) gets a create,
    or a replace of the current object."""
    name = str(doc["metadata"]["name"])
    query = {"fieldManager": FIELD_MANAGER, "force": "true" if args.get("force") else "false"}
    if args.get("dry_run"):
        query["dryRun"] = "All"
    body = json.dumps(doc).encode()
    result = {
        "kind": resource.kind,
        "name": name,
        "namespace": namespace,
        "action": "",
        "error": "",
    }
    path = resource.path(namespace, name)
    response = await kube.request(
        "PATCH", path, query, body=body, content_type="application/apply-patch+yaml"
    )
    if response.status == 415:
        del query["force"]
        current = await kube.request("GET", path)
        if current.status == 404:
            response = await kube.request(
                "POST", resource.path(namespace), query, body=body, content_type="application/json"
            )
        elif current.ok:
            version = (current.json().get("metadata") or {}).get("resourceVersion")
            doc["metadata"]["resourceVersion"] = version
            response = await kube.request(
                "PUT", path, query, body=json.dumps(doc).encode(), content_type="application/json"
            )
        else:
            response = current
    if response.ok:
        result["action"] = "created" if response.status == 201 else "applied"
    else:
        result["error"] = str(response.failure())
    return result


def audited_manifest(args: dict[str, Any]) -> dict[str, Any]:
    """A manifest may hold Secret values: the audit keeps which objects, never the text."""
    try:
        objects = [f"{d['kind']}/{d['metadata']['name']}" for d in _documents(args["manifest"])]
    except ToolError:
        objects = ["(unreadable)"]
    summary = f"{len(args['manifest'].encode())} bytes: {', '.join(objects)}"
    return {**args, "manifest": summary}


async def delete_resource(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    resource = await kube.discover(args["resource"], args.get("api_version", ""))
    namespace = _namespace(resource, args)
    query = {"propagationPolicy": "Background"}
    if args.get("dry_run"):
        query["dryRun"] = "All"
    await kube.ok_json("DELETE", resource.path(namespace, args["name"]), query)
    return ToolOutput(
        {
            "resource": resource.name,
            "name": args["name"],
            "namespace": namespace,
            "dry_run": bool(args.get("dry_run")),
        }
    )


async def scale(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    resource = await kube.discover(args.get("resource", "deployments"), args.get("api_version", ""))
    namespace = _namespace(resource, args)
    path = resource.path(namespace, args["name"], "scale")
    before = await kube.ok_json("GET", path)
    patch = {"spec": {"replicas": args["replicas"]}}
    after = await kube.ok_json(
        "PATCH", path, body=json.dumps(patch).encode(), content_type="application/merge-patch+json"
    )
    return ToolOutput(
        {
            "resource": resource.name,
            "name": args["name"],
            "namespace": namespace,
            "previous_replicas": int((before.get("spec") or {}).get("replicas") or 0),
            "replicas": int((after.get("spec") or {}).get("replicas") or 0),
        }
    )


async def exec_command(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    pods = await kube.discover("pods", "v1")
    output = await run_exec(
        kube,
        pods,
        _namespace(pods, args),
        args["pod"],
        args["command"],
        container=args.get("container", ""),
        time_limit=float(args.get("timeout_seconds", 30)),
        max_bytes=MAX_OUTPUT_BYTES,
    )
    structured = {
        "stdout": output.stdout.decode("utf-8", "replace"),
        "stderr": output.stderr.decode("utf-8", "replace"),
        "exit_code": output.exit_code,
        "message": output.message,
        "timed_out": output.timed_out,
        "truncated": output.truncated,
    }
    if output.exit_code is None and not output.timed_out:
        raise ToolError(f"exec: {output.message or 'the command ended without an exit status'}")
    return ToolOutput(structured)


# How often a waiting `request_access` looks again; a decision is a person's, so seconds.
WAIT_POLL = 1.0


async def request_access(kube: KubeClient, args: dict[str, Any]) -> ToolOutput:
    """Files an access request as the caller (the gateway's `/l7proxy/v1/` API, on the
    same request path); with `wait_seconds`, waits that long for a decision."""
    body = {
        "grant": args["grant"],
        "reason": args["reason"],
        "duration": args.get("duration", "1h"),
    }
    request = await kube.ok_json(
        "POST",
        f"{GATEWAY_API}access-requests",
        body=json.dumps(body).encode(),
        content_type="application/json",
    )
    with trio.move_on_after(float(args.get("wait_seconds", 0))):
        while request["state"] == "pending":
            await trio.sleep(WAIT_POLL)
            request = await kube.ok_json("GET", f"{GATEWAY_API}access-requests/{request['id']}")
    fields = ("id", "grant", "requester", "reason", "duration", "state", "created", "expires")
    structured = {name: request[name] for name in fields}
    text = f"access request {request['id']} for {request['grant']} is {request['state']}" + (
        "; an approver must approve it" if request["state"] == "pending" else ""
    )
    return ToolOutput(structured, text)
