"""The tools as `tools/list` shows them: names (contract), descriptions, and the JSON Schemas
of their inputs and outputs. Inputs use only what `schema.check` verifies."""

from __future__ import annotations

from typing import Any

from l7proxy.mcp import tools
from l7proxy.mcp.schema import Schema
from l7proxy.mcp.tools import MAX_ITEMS, MAX_MANIFEST_BYTES, MAX_OUTPUT_BYTES, Tool


def _obj(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _str(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, "maxLength": 1024, **extra}


def _int(description: str, minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "description": description, "minimum": minimum, "maximum": maximum}


def _bool(description: str) -> Schema:
    return {"type": "boolean", "description": description}


_RESOURCE = _str(
    "resource type: plural, singular, kind or short name, e.g. pods, deploy, "
    "Deployment, deployments.apps"
)
_API_VERSION = _str("group/version of the resource type, e.g. apps/v1 (default: discovered)")
_NAMESPACE = _str('namespace (default "default"; ignored for cluster-scoped resources)')
_NAME = _str("object name", minLength=1)
_TRUNCATED = _bool("the output was cut to stay within its bounds")
_ANY_OBJECT: Schema = {"type": "object"}
_STRING: Schema = {"type": "string"}
_INTEGER: Schema = {"type": "integer"}
_BOOLEAN: Schema = {"type": "boolean"}


def _output(properties: dict[str, Schema]) -> Schema:
    """A tool's output schema: every field is always there."""
    return _obj(properties, tuple(properties))


_STRS: Schema = {"type": "array", "items": {"type": "string"}}

TOOLS: tuple[Tool, ...] = (
    Tool(
        "whoami",
        "Who am I",
        "The identity the gateway verified for this session, and the connection (cluster).",
        _obj({}),
        _output({"username": _STRING, "groups": _STRS, "connection": _STRING}),
        tools.whoami,
    ),
    Tool(
        "can_i",
        "Can I",
        "Whether the caller's policies allow a request, like `kubectl auth can-i`.",
        _obj(
            {
                "verb": _str("get, list, watch, create, update, patch, delete, ..."),
                "resource": _str("resource type, plural, e.g. pods"),
                "api_group": _str('API group ("" for the core group)'),
                "namespace": _str("namespace (omit for every namespace / cluster scope)"),
                "name": _str("object name (omit for any)"),
                "subresource": _str("subresource, e.g. log, exec, scale"),
            },
            ("verb", "resource"),
        ),
        _output({"allowed": _BOOLEAN, "reason": _STRING}),
        tools.can_i,
    ),
    Tool(
        "list_resources",
        "List resources",
        "List objects of any resource type the cluster serves, in a namespace or all, "
        f"filtered by label and field selectors; at most `limit` ({MAX_ITEMS} max) per page, "
        "`continue` for the next page.",
        _obj(
            {
                "resource": _RESOURCE,
                "api_version": _API_VERSION,
                "namespace": _NAMESPACE,
                "all_namespaces": _bool("list in every namespace"),
                "label_selector": _str("label selector, e.g. app=web,tier!=db"),
                "field_selector": _str("field selector, e.g. status.phase=Running"),
                "limit": _int("objects per page", 1, MAX_ITEMS),
                "continue": _str("the `continue` token of the previous page", maxLength=4096),
            },
            ("resource",),
        ),
        _output(
            {
                "resource": _STRING,
                "kind": _STRING,
                "namespace": _STRING,
                "items": {"type": "array", "items": _ANY_OBJECT},
                "count": _INTEGER,
                "continue": _STRING,
                "truncated": _TRUNCATED,
            }
        ),
        tools.list_resources,
    ),
    Tool(
        "get_resource",
        "Get a resource",
        "One object as YAML (default) or JSON.",
        _obj(
            {
                "resource": _RESOURCE,
                "name": _NAME,
                "namespace": _NAMESPACE,
                "api_version": _API_VERSION,
                "format": {"type": "string", "enum": ["yaml", "json"]},
            },
            ("resource", "name"),
        ),
        _output(
            {
                "resource": _STRING,
                "name": _STRING,
                "namespace": _STRING,
                "format": {"type": "string", "enum": ["yaml", "json"]},
                "manifest": _STRING,
                "truncated": _TRUNCATED,
            }
        ),
        tools.get_resource,
    ),
    Tool(
        "pod_logs",
        "Pod logs",
        "The last lines of a pod's container log (not followed).",
        _obj(
            {
                "pod": _NAME,
                "namespace": _NAMESPACE,
                "container": _str("container (default: the pod's only or default container)"),
                "tail_lines": _int("lines from the end (default 200)", 1, 10000),
                "since_seconds": _int("only lines newer than this", 1, 30 * 86400),
                "previous": _bool("the previous (crashed) container's log"),
            },
            ("pod",),
        ),
        _output(
            {
                "pod": _STRING,
                "namespace": _STRING,
                "container": _STRING,
                "text": _STRING,
                "truncated": _TRUNCATED,
            }
        ),
        tools.pod_logs,
    ),
    Tool(
        "list_events",
        "List events",
        "Events in a namespace (or all), optionally for one object, oldest first.",
        _obj(
            {
                "namespace": _NAMESPACE,
                "all_namespaces": _bool("events of every namespace"),
                "object_name": _str(
                    "only the events (of the page read) about the object of this name"
                ),
                "field_selector": _str("field selector, e.g. type=Warning"),
                "limit": _int("events at most", 1, MAX_ITEMS),
            }
        ),
        _output(
            {
                "events": {"type": "array", "items": _ANY_OBJECT},
                "count": _INTEGER,
                "truncated": _TRUNCATED,
            }
        ),
        tools.list_events,
    ),
    Tool(
        "apply_manifest",
        "Apply a manifest",
        "Create or update the objects of a YAML or JSON manifest (several documents allowed) "
        "with server-side apply (field manager l7proxy-mcp), or create/replace where the "
        "cluster takes no apply patches.",
        _obj(
            {
                "manifest": _str("the objects, YAML or JSON", maxLength=MAX_MANIFEST_BYTES),
                "namespace": _str('namespace for objects that name none (default "default")'),
                "dry_run": _bool("validate on the server, change nothing"),
                "force": _bool("take over fields another manager owns"),
            },
            ("manifest",),
        ),
        _output({"results": {"type": "array", "items": _ANY_OBJECT}, "dry_run": _BOOLEAN}),
        tools.apply_manifest,
        read_only=False,
        audited=tools.audited_manifest,
    ),
    Tool(
        "delete_resource",
        "Delete a resource",
        "Delete one object (dependents in the background).",
        _obj(
            {
                "resource": _RESOURCE,
                "name": _NAME,
                "namespace": _NAMESPACE,
                "api_version": _API_VERSION,
                "dry_run": _bool("check on the server, delete nothing"),
            },
            ("resource", "name"),
        ),
        _output({"resource": _STRING, "name": _STRING, "namespace": _STRING, "dry_run": _BOOLEAN}),
        tools.delete_resource,
        read_only=False,
        destructive=True,
    ),
    Tool(
        "scale",
        "Scale",
        "Set the replicas of a deployment, statefulset or replicaset (its scale subresource).",
        _obj(
            {
                "resource": _str("resource type (default deployments)"),
                "api_version": _API_VERSION,
                "name": _NAME,
                "namespace": _NAMESPACE,
                "replicas": _int("desired replicas", 0, 10000),
            },
            ("name", "replicas"),
        ),
        _output(
            {
                "resource": _STRING,
                "name": _STRING,
                "namespace": _STRING,
                "previous_replicas": _INTEGER,
                "replicas": _INTEGER,
            }
        ),
        tools.scale,
        read_only=False,
        destructive=True,
    ),
    Tool(
        "exec",
        "Exec",
        "Run a command in a pod's container without stdin or a TTY; output is bounded "
        f"({MAX_OUTPUT_BYTES} bytes) and so is its time.",
        _obj(
            {
                "pod": _NAME,
                "namespace": _NAMESPACE,
                "container": _str("container (default: the pod's default container)"),
                "command": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 8192},
                    "minItems": 1,
                    "maxItems": 64,
                    "description": 'the command and its arguments, e.g. ["ls", "/"]',
                },
                "timeout_seconds": _int("how long it may run (default 30)", 1, 300),
            },
            ("pod", "command"),
        ),
        _output(
            {
                "stdout": _STRING,
                "stderr": _STRING,
                "exit_code": {"type": ["integer", "null"]},
                "message": _STRING,
                "timed_out": _BOOLEAN,
                "truncated": _TRUNCATED,
            }
        ),
        tools.exec_command,
        read_only=False,
        destructive=True,
    ),
    Tool(
        "request_access",
        "Request access",
        "File an access request for a grant of the gateway's configuration (more access for "
        "a while, once an approver approves); optionally wait for the decision. A refused "
        "call's message names the grant that would lift it.",
        _obj(
            {
                "grant": _str("the grant to ask for, e.g. prod-write", minLength=1),
                "reason": _str("why, for the approver", minLength=1),
                "duration": _str("how long, e.g. 30m, 4h, 1h30m (default 1h)"),
                "wait_seconds": _int("wait this long for a decision (default 0)", 0, 600),
            },
            ("grant", "reason"),
        ),
        _output(
            {
                "id": _STRING,
                "grant": _STRING,
                "requester": _STRING,
                "reason": _STRING,
                "duration": _STRING,
                "state": _STRING,
                "created": _STRING,
                "expires": _STRING,
            }
        ),
        tools.request_access,
        read_only=False,
    ),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
