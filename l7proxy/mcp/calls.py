"""One `tools/call`: validate, run the tool as the caller, bound the result, audit it.

The call is one `mcp.tool_call` audit event (tool, arguments as the tool lets them be
recorded, user, outcome, the audit ids of the Kubernetes requests it made); each of those
requests has its own ordinary event whose `parent_audit_id` is the call's `audit_id`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from l7proxy.identity.oidc.authenticator import Authenticated
from l7proxy.mcp.catalog import TOOLS_BY_NAME
from l7proxy.mcp.kube import KubeClient, Progress, ToolError
from l7proxy.mcp.schema import InvalidArguments, check
from l7proxy.mcp.tools import Tool, ToolOutput
from l7proxy.pipeline.gateway import Gateway
from l7proxy.pipeline.internal import Caller
from protocols.mcp_transport import INVALID_PARAMS, MessageError


@dataclass(frozen=True, slots=True)
class CallContext:
    gateway: Gateway
    connection: str
    auth: Authenticated
    parent_audit_id: str  # the HTTP request's audit event


def _tool(params: dict[str, Any]) -> tuple[Tool, dict[str, Any]]:
    """The tool a `tools/call` names and its arguments; an unknown tool is a protocol
    error (the model cannot fix it by retrying), bad arguments are a tool error."""
    name = params.get("name")
    tool = TOOLS_BY_NAME.get(name) if isinstance(name, str) else None
    if tool is None:
        raise MessageError(INVALID_PARAMS, f"unknown tool: {name!r}")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise MessageError(INVALID_PARAMS, "arguments is an object")
    return tool, arguments


async def call_tool(
    context: CallContext, params: dict[str, Any], progress: Progress | None
) -> dict[str, Any]:
    tool, arguments = _tool(params)
    call_id = str(uuid.uuid4())
    kube = KubeClient(context.gateway, context.connection, Caller(context.auth, call_id), progress)
    started = time.monotonic()
    recorded: dict[str, Any] = {name: "(invalid)" for name in arguments}
    error, outcome = "", "cancelled"  # stays so if the caller goes away mid-call
    try:
        check(tool.input_schema, arguments)
        recorded = tool.audited(arguments)
        output = await tool.run(kube, arguments)
        outcome = "ok"
    except (InvalidArguments, ToolError) as exc:
        error, outcome = str(exc), "error"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        error = f"the cluster's answer could not be read ({type(exc).__name__})"
        outcome = "error"
    finally:
        identity = context.auth.identity
        context.gateway.audit.write_record(
            "mcp.tool_call",
            {
                "audit_id": call_id,
                "parent_audit_id": context.parent_audit_id,
                "user": identity.username,
                "groups": list(identity.groups),
                "connection": context.connection,
                "tool": tool.name,
                "arguments": recorded,
                "outcome": outcome,
                "error": error,
                "requests": kube.audit_ids,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            },
        )
    if error:
        return {"content": [{"type": "text", "text": error}], "isError": True}
    return _result(output)


def _result(output: ToolOutput) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": output.rendered()}],
        "structuredContent": output.structured,
        "isError": False,
    }
