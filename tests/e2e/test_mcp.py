"""The MCP endpoint with the official MCP Python SDK (`mcp`) as the client, over
Streamable HTTP, through the gateway in front of the sandbox cluster."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.mcp_client import http_client as _http
from tests.e2e.mcp_client import mcp
from tests.e2e.stack import CLUSTER_TOKEN, Stack, wait_for_event

ADMIN = ("platform-admins",)
AGENT = ("ai-agents-readonly",)
CONTRACT_TOOLS = {
    "whoami",
    "can_i",
    "list_resources",
    "get_resource",
    "pod_logs",
    "list_events",
    "apply_manifest",
    "delete_resource",
    "scale",
    "exec",
    "request_access",
}
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "nginx:1.27"}]}
"""


async def _call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def _refused(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def _records(stack: Stack, kind: str) -> list[dict[str, Any]]:
    return [e for e in stack.session_events() if e["type"] == kind]


# --- the protocol ------------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_initialize_and_list_tools_over_both_http_versions(stack: Stack, http2: bool) -> None:
    url = f"{stack.gateway_url}/mcp/dev"
    token = stack.token("agent-1", AGENT)
    async with (
        _http(stack, token, http2=http2) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name == "l7proxy"
        assert init.capabilities.tools is not None
        listed = (await session.list_tools()).tools
    assert {tool.name for tool in listed} == CONTRACT_TOOLS
    for tool in listed:
        assert tool.input_schema["type"] == "object" and tool.output_schema is not None
        assert tool.description
    event = await wait_for_event(stack, lambda e: e["reason"] == "MCP tools/list")
    assert (event["user"], event["http_version"]) == ("agent-1", "2" if http2 else "1.1")


async def test_whoami_and_can_i_answer_for_the_verified_caller(stack: Stack) -> None:
    async with mcp(stack, stack.token("agent-1", AGENT)) as session:
        me = await _call(session, "whoami")
        may_list = await _call(session, "can_i", verb="list", resource="pods", namespace="default")
        may_delete = await _call(session, "can_i", verb="delete", resource="pods")
    assert me == {"username": "agent-1", "groups": ["ai-agents-readonly"], "connection": "dev"}
    assert may_list["allowed"] is True and "agents-readonly" in may_list["reason"]
    assert may_delete["allowed"] is False


async def test_list_get_logs_and_events_read_the_cluster(stack: Stack) -> None:
    async with mcp(stack, stack.token("agent-1", AGENT)) as session:
        pods = await _call(session, "list_resources", resource="po", label_selector="app=web")
        everywhere = await _call(session, "list_resources", resource="namespaces")
        one = await _call(session, "list_resources", resource="pods", limit=1)
        two = await _call(
            session, "list_resources", resource="pods", limit=1, **{"continue": one["continue"]}
        )
        as_yaml = await _call(session, "get_resource", resource="pods", name="web-1")
        as_json = await _call(session, "get_resource", resource="Pod", name="web-1", format="json")
        logs = await _call(session, "pod_logs", pod="web-1", tail_lines=1)
        events = await _call(session, "list_events", object_name="web-1")
    names = sorted(item["metadata"]["name"] for item in pods["items"])
    assert names == ["web-1", "web-2"] and pods["kind"] == "Pod" and not pods["truncated"]
    assert "default" in [item["metadata"]["name"] for item in everywhere["items"]]
    assert one["count"] == 1 and one["continue"] and not one["truncated"]  # a page, and more
    assert [i["metadata"]["name"] for i in one["items"] + two["items"]] == ["web-1", "web-2"]
    assert two["continue"] == ""  # the last page
    assert "name: web-1" in as_yaml["manifest"] and as_yaml["format"] == "yaml"
    assert json.loads(as_json["manifest"])["metadata"]["name"] == "web-1"
    assert len(logs["text"].splitlines()) == 1 and not logs["truncated"]
    assert events["count"] >= 1
    assert all(e["object"] == "Pod/web-1" for e in events["events"])


async def test_apply_scale_and_delete_a_deployment(stack: Stack) -> None:
    async with mcp(stack, stack.token("alice", ADMIN)) as session:
        applied = await _call(session, "apply_manifest", manifest=DEPLOYMENT)
        again = await _call(session, "apply_manifest", manifest=DEPLOYMENT.replace("1.27", "1.28"))
        scaled = await _call(session, "scale", name="api", replicas=3)
        got = await _call(session, "get_resource", resource="deploy", name="api", format="json")
        deleted = await _call(session, "delete_resource", resource="deployments.apps", name="api")
        gone = await _refused(session, "get_resource", resource="deployments", name="api")
    assert applied["results"][0]["kind"] == "Deployment" and not applied["results"][0]["error"]
    assert again["results"][0]["action"] == "applied"
    assert (scaled["previous_replicas"], scaled["replicas"]) == (1, 3)
    deployment = json.loads(got["manifest"])
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert deleted["name"] == "api"
    assert "NotFound (404)" in gone


async def test_exec_runs_a_command_with_its_output_and_exit_code(stack: Stack) -> None:
    async with mcp(stack, stack.token("alice", ADMIN), http2=True) as session:
        hello = await _call(session, "exec", pod="web-1", command=["echo", "hello"])
        failing = await _call(session, "exec", pod="web-1", command=["sh", "-c", "exit 3"])
    assert (hello["stdout"], hello["exit_code"], hello["timed_out"]) == ("hello\n", 0, False)
    assert failing["exit_code"] == 3
    start = await wait_for_event(stack, lambda e: True, kind="session.start")
    assert start["user"] == "alice" and start["pod"] == "web-1"


async def test_a_refused_call_is_an_error_result_with_the_403_message(stack: Stack) -> None:
    async with mcp(stack, stack.token("agent-1", AGENT)) as session:
        deleting = await _refused(session, "delete_resource", resource="pods", name="web-1")
        executing = await _refused(session, "exec", pod="web-1", command=["ls"])
        secrets = await _refused(session, "list_resources", resource="secrets")
        still_there = await _call(session, "get_resource", resource="pods", name="web-1")
    assert deleting.startswith("Forbidden (403): ")
    assert 'User "agent-1"' in deleting and 'cannot delete resource "pods"' in deleting
    assert 'on connection "dev"' in deleting
    assert 'cannot get resource "pods/exec"' in executing or "pods/exec" in executing
    assert "denied by policy" in secrets
    assert still_there["name"] == "web-1"


async def test_invalid_arguments_are_an_error_result_the_model_can_fix(stack: Stack) -> None:
    async with mcp(stack, stack.token("agent-1", AGENT)) as session:
        missing = await _refused(session, "get_resource", resource="pods")
        extra = await _refused(session, "whoami", who="me")
        bounded = await _refused(session, "list_resources", resource="pods", limit=10_000)
    assert missing == "arguments: name is required"
    assert extra == "arguments: unknown argument who"
    assert bounded == "arguments.limit: between 1 and 500"


async def test_output_is_bounded_and_says_it_was_cut(stack: Stack) -> None:
    async with mcp(stack, stack.token("alice", ADMIN)) as session:
        big = "x" * 200_000
        cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{a: {big}}}\n"
        await _call(session, "apply_manifest", manifest=cm)
        got = await _call(session, "get_resource", resource="configmaps", name="big")
        listed = await _call(session, "list_resources", resource="configmaps")
        line = "y" * 6000
        script = f"echo {line} > /tmp/y; cat" + " /tmp/y" * 25  # 150 kB out of a 6 kB command
        noisy = await _call(session, "exec", pod="web-1", command=["sh", "-c", script])
        slow = await _call(session, "exec", pod="web-1", command=["sleep", "30"], timeout_seconds=1)
    assert got["truncated"] is True and len(got["manifest"].encode()) <= 128 * 1024
    assert listed["truncated"] is True
    assert "big" not in [item["metadata"]["name"] for item in listed["items"]]
    assert noisy["truncated"] is True and len(noisy["stdout"]) == 128 * 1024
    assert noisy["exit_code"] == 0
    assert (slow["timed_out"], slow["exit_code"]) == (True, None)


# --- audit ---------------------------------------------------------------------------


async def test_each_call_is_one_tool_call_event_linked_to_its_requests(stack: Stack) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n"
    async with mcp(stack, stack.token("alice", ADMIN)) as session:
        await _call(session, "list_resources", resource="deployments")
        await _call(session, "apply_manifest", manifest=secret)
        await _refused(session, "get_resource", resource="pods", name="nope")
    await wait_for_event(
        stack, lambda e: e["path"] == "/k8s/dev/api/v1/namespaces/default/pods/nope"
    )
    calls = _records(stack, "mcp.tool_call")
    assert [c["tool"] for c in calls] == ["list_resources", "apply_manifest", "get_resource"]
    listing, applying, getting = calls
    assert (listing["user"], listing["outcome"], listing["connection"]) == ("alice", "ok", "dev")
    assert listing["arguments"] == {"resource": "deployments"}
    requests = {e["audit_id"]: e for e in stack.audit_events()}
    made = [requests[audit_id] for audit_id in listing["requests"]]
    assert made[-1]["path"] == "/k8s/dev/apis/apps/v1/namespaces/default/deployments"
    assert all(e["parent_audit_id"] == listing["audit_id"] for e in made)
    assert all(e["user"] == "alice" and e["decision"] == "allow" for e in made)
    http_event = requests[listing["parent_audit_id"]]
    assert http_event["path"] == "/mcp/dev" and http_event["reason"] == "MCP tools/call"
    assert applying["arguments"]["manifest"].endswith("bytes: Secret/db")
    assert (getting["outcome"], getting["error"].split(":")[0]) == ("error", "NotFound (404)")
    assert "hunter2" not in stack.audit_path.read_text()


# --- authorization: the resource server ---------------------------------------------


async def test_401_names_the_protected_resource_metadata_which_names_the_issuer(
    stack: Stack,
) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with _http(stack, None) as client:
        refused = await client.post(f"{stack.gateway_url}/mcp/dev", json=message)
        challenge = refused.headers["www-authenticate"]
        url = challenge.split('resource_metadata="')[1].rstrip('"')
        metadata = (await client.get(url)).json()
        wrong_audience = stack.token("agent-1", AGENT, audience="someone-else")
        other = await client.post(
            f"{stack.gateway_url}/mcp/dev",
            json=message,
            headers={"authorization": f"Bearer {wrong_audience}"},
        )
    assert refused.status_code == 401 and challenge.startswith("Bearer ")
    assert url == f"{stack.gateway_url}/.well-known/oauth-protected-resource/mcp/dev"
    assert metadata["resource"] == f"{stack.gateway_url}/mcp/dev"
    assert metadata["authorization_servers"] == [stack.issuer.issuer]
    assert other.status_code == 401 and "audience" in other.json()["message"]
    assert "resource_metadata=" in other.headers["www-authenticate"]


async def test_the_callers_token_never_reaches_the_cluster(stack: Stack) -> None:
    token = stack.token("alice", ADMIN)
    async with mcp(stack, token) as session:
        await _call(session, "list_resources", resource="pods")
        await _call(session, "exec", pod="web-1", command=["true"])
    seen = stack.cluster.seen
    assert seen and all(
        value == f"Bearer {CLUSTER_TOKEN}".encode()
        for request in seen
        for key, value in request.headers
        if key == b"authorization"
    )
    assert not any(token.encode() in value for r in seen for _, value in r.headers)


# --- the transport's rules ------------------------------------------------------------


async def _post(
    client: httpx2.AsyncClient, stack: Stack, message: dict[str, Any], **headers: str
) -> httpx2.Response:
    return await client.post(
        f"{stack.gateway_url}/mcp/dev",
        json=message,
        headers={"accept": "application/json, text/event-stream", **headers},
    )


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


async def test_session_ids_are_required_bound_to_the_user_and_end_on_delete(stack: Stack) -> None:
    async with (
        _http(stack, stack.token("alice", ADMIN)) as alice,
        _http(stack, stack.token("mallory", ADMIN)) as mallory,
    ):
        opened = await _post(alice, stack, INITIALIZE)
        session_id = opened.headers["mcp-session-id"]
        without = await _post(alice, stack, LIST)
        bogus = await _post(alice, stack, LIST, **{"mcp-session-id": "nope"})
        stolen = await _post(mallory, stack, LIST, **{"mcp-session-id": session_id})
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        acknowledged = await _post(alice, stack, note, **{"mcp-session-id": session_id})
        listed = await _post(alice, stack, LIST, **{"mcp-session-id": session_id})
        stream = await alice.get(
            f"{stack.gateway_url}/mcp/dev",
            headers={"accept": "text/event-stream", "mcp-session-id": session_id},
        )
        ended = await alice.delete(
            f"{stack.gateway_url}/mcp/dev", headers={"mcp-session-id": session_id}
        )
        after = await _post(alice, stack, LIST, **{"mcp-session-id": session_id})
    assert opened.json()["result"]["protocolVersion"] == "2025-06-18"
    assert len(session_id) >= 32 and session_id.isascii()
    assert without.status_code == 400 and without.json()["error"]["code"] == -32600
    assert (bogus.status_code, stolen.status_code) == (404, 404)
    assert (acknowledged.status_code, acknowledged.content) == (202, b"")
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    assert len(listed.json()["result"]["tools"]) == len(CONTRACT_TOOLS)
    assert stream.status_code == 405 and stream.headers["allow"] == "POST, DELETE"
    assert ended.status_code == 204 and after.status_code == 404


# The SDK leaves its SSE reader's async generators unclosed when a response event ends the
# stream (it breaks out of them); under trio their finalizer reports that as a warning.
_SDK_SSE_GENERATORS = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object "
    r"(EventSource|PoolByteStream|Response)\.:pytest.PytestUnraisableExceptionWarning"
)


@_SDK_SSE_GENERATORS
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_progress_is_streamed_as_server_sent_events(stack: Stack, http2: bool) -> None:
    progress: list[tuple[float, str | None]] = []

    async def record(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with mcp(stack, stack.token("agent-1", AGENT), http2=http2) as session:
        result = await session.call_tool(
            "list_resources", {"resource": "deployments"}, progress_callback=record
        )
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["kind"] == "Deployment"
    assert [value for value, _ in progress] == list(range(1, len(progress) + 1))
    assert progress[-1][1] == "GET /k8s/dev/apis/apps/v1/namespaces/default/deployments"


async def test_sse_and_json_responses_follow_accept_and_progress_tokens(stack: Stack) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}, "_meta": {"progressToken": "p"}},
    }
    async with _http(stack, stack.token("alice", ADMIN)) as client:
        session_id = (await _post(client, stack, INITIALIZE)).headers["mcp-session-id"]
        sid = {"mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
        streamed = await _post(client, stack, call, **sid)
        only_json = await _post(client, stack, call, **sid, accept="application/json")
        neither = await _post(client, stack, call, **sid, accept="text/html")
        bad_version = await _post(client, stack, LIST, **{**sid, "mcp-protocol-version": "1999"})
        broken = await client.post(
            f"{stack.gateway_url}/mcp/dev",
            content=b"{not json",
            headers={"content-type": "application/json", **sid},
        )
    assert streamed.headers["content-type"] == "text/event-stream"
    events = [block for block in streamed.text.split("\n\n") if block]
    messages = [json.loads(block.split("data: ", 1)[1]) for block in events]
    assert messages[0]["method"] == "notifications/progress"
    assert messages[-1]["id"] == 7
    assert messages[-1]["result"]["structuredContent"]["username"] == "alice"
    assert only_json.headers["content-type"] == "application/json"
    assert only_json.json()["result"]["structuredContent"]["username"] == "alice"
    assert neither.status_code == 406
    assert bad_version.status_code == 400
    assert broken.status_code == 400 and broken.json()["error"]["code"] == -32700


async def test_a_foreign_origin_is_refused(stack: Stack) -> None:
    async with _http(stack, stack.token("alice", ADMIN)) as client:
        foreign = await _post(client, stack, INITIALIZE, origin="https://evil.example")
        own = await _post(client, stack, INITIALIZE, origin=stack.gateway_url)
    assert foreign.status_code == 403 and "mcp-session-id" not in foreign.headers
    assert own.status_code == 200


async def test_unknown_tool_and_method_are_protocol_errors(stack: Stack) -> None:
    async with _http(stack, stack.token("alice", ADMIN)) as client:
        sid = {"mcp-session-id": (await _post(client, stack, INITIALIZE)).headers["mcp-session-id"]}
        unknown_tool = await _post(
            client,
            stack,
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "rm"}},
            **sid,
        )
        unknown_method = await _post(
            client, stack, {"jsonrpc": "2.0", "id": 3, "method": "resources/list"}, **sid
        )
    assert unknown_tool.json()["error"] == {"code": -32602, "message": "unknown tool: 'rm'"}
    assert unknown_method.json()["error"]["code"] == -32601
