"""The real kubectl through the gateway to the sandbox cluster."""

from __future__ import annotations

import json

import pytest
import trio

from tests.e2e.stack import Stack, kubectl, read_until, start_kubectl, wait_for_event

BOTH_HTTP_VERSIONS = pytest.mark.parametrize("http1", [False, True], ids=["h2", "http1.1"])
READER = ("ai-agents-readonly",)
ADMIN = ("platform-admins",)


async def test_get_raw_reaches_the_cluster_through_the_prefix(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    # `--raw` takes a path from the server's root: the connection prefix is part of it.
    result = await kubectl(kc, "get", "--raw", "/k8s/dev/version", check=True)
    assert json.loads(result.stdout)["gitVersion"].startswith("v1.")
    assert stack.cluster.seen[-1].target == "/version"


@BOTH_HTTP_VERSIONS
async def test_get_pods_uses_discovery_and_prints_the_table(stack: Stack, http1: bool) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    result = await kubectl(kc, "get", "pods", check=True, http1=http1)
    lines = result.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert {line.split()[0] for line in lines[1:]} == {"web-1", "web-2"}


async def test_denied_delete_is_a_forbidden_status_naming_everything(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    result = await kubectl(kc, "delete", "pod", "web-1")
    assert result.returncode != 0
    message = result.stderr.decode()
    assert message.startswith("Error from server (Forbidden): ")
    for part in (
        'User "agent-7"',
        '"ai-agents-readonly"',
        "delete",
        '"pods"',
        '"default"',
        'connection "dev"',
        'policy "agents-readonly"',
    ):
        assert part in message
    assert "web-1" in (await kubectl(kc, "get", "pods", check=True)).stdout.decode()
    denied = await wait_for_event(stack, lambda e: e["verb"] == "delete")
    assert (denied["decision"], denied["status"], denied["user"]) == ("deny", 403, "agent-7")


async def test_a_deny_rule_beats_the_allow_rule(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    result = await kubectl(kc, "get", "secrets")
    assert "Forbidden" in result.stderr.decode()
    assert "deny rule" in result.stderr.decode()


async def test_allowed_delete_reaches_the_cluster_with_the_service_credential(stack: Stack) -> None:
    token = stack.token("admin-1", ADMIN)
    kc = stack.kubeconfig(token)
    result = await kubectl(kc, "delete", "pod", "web-2", "--wait=false", check=True)
    assert b'pod "web-2" deleted' in result.stdout
    delete = next(r for r in reversed(stack.cluster.seen) if r.method == "DELETE")
    headers = dict(delete.headers)
    assert headers[b"authorization"] == b"Bearer sandbox-service-token"
    assert token.encode() not in b"".join(v for _, v in delete.headers)
    event = await wait_for_event(stack, lambda e: e["verb"] == "delete")
    assert (event["decision"], event["policy"], event["name"], event["status"]) == (
        "allow",
        "platform-admins",
        "web-2",
        200,
    )


@BOTH_HTTP_VERSIONS
async def test_watch_delivers_each_event_before_the_stream_ends(stack: Stack, http1: bool) -> None:
    reader = stack.kubeconfig(stack.token("agent-7", READER), name="reader")
    admin = stack.kubeconfig(stack.token("admin-1", ADMIN), name="admin")
    async with trio.open_nursery() as nursery:
        process = await start_kubectl(
            nursery, reader, "get", "pods", "-w", "--no-headers", http1=http1
        )
        seen = b""
        with trio.fail_after(30):
            while seen.count(b"\n") < 2:
                seen += await process.stdout.receive_some()
            for name in ("watched-1", "watched-2"):
                await kubectl(admin, "run", name, "--image=nginx", check=True)
                await read_until(process, name.encode())
        assert process.returncode is None  # still streaming
        process.kill()
    # The gateway writes the event once it sees the client go.
    watch = await wait_for_event(stack, lambda e: e["verb"] == "watch")
    assert watch["ended_by"] == "client"
    assert watch["http_version"] == ("1.1" if http1 else "2")
    assert watch["bytes_out"] > 0


async def test_a_token_that_is_not_a_jwt_is_unauthorized(stack: Stack) -> None:
    result = await kubectl(stack.kubeconfig("not-a-jwt"), "get", "pods", "-v=6")
    assert "Unauthorized" in result.stderr.decode()
    event = await wait_for_event(stack, lambda e: e["status"] == 401)
    assert event["decision"] == "unauthenticated"


async def test_expired_token_is_unauthorized_and_says_why(stack: Stack) -> None:
    token = stack.token("agent-7", READER, expires_in=-600)
    result = await kubectl(stack.kubeconfig(token), "get", "pods", "-v=6")
    stderr = result.stderr.decode()
    assert "expired" in stderr
    assert token not in stderr
    assert token not in stack.audit_path.read_text()


async def test_wrong_audience_is_unauthorized_and_says_why(stack: Stack) -> None:
    token = stack.token("agent-7", READER, audience="someone-else")
    result = await kubectl(stack.kubeconfig(token), "get", "pods", "-v=6")
    assert "audience" in result.stderr.decode()
    event = await wait_for_event(stack, lambda e: e["status"] == 401)
    assert event["decision"] == "unauthenticated"


async def test_impersonation_without_a_grant_is_refused_naming_the_header(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("agent-7", READER))
    await kubectl(kc, "get", "pods", check=True)  # discovery cached, as for any kubectl user
    result = await kubectl(kc, "get", "pods", "--as=someone")
    assert "Error from server (Forbidden)" in result.stderr.decode()
    assert "cannot impersonate (Impersonate-User)" in result.stderr.decode()
    assert not any(k.startswith(b"impersonate-") for r in stack.cluster.seen for k, _ in r.headers)


async def test_granted_impersonation_is_decided_as_the_impersonated_identity(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN))  # admins may impersonate: verbs *
    await kubectl(kc, "get", "pods", check=True)
    as_agent = ("--as=agent-9", "--as-group=ai-agents-readonly")
    listed = await kubectl(kc, "get", "pods", *as_agent, check=True)
    assert b"web-1" in listed.stdout
    event = await wait_for_event(stack, lambda e: e["impersonated_user"] == "agent-9")
    assert (event["user"], event["decision"]) == ("admin-1", "allow")
    assert event["impersonated_groups"] == ["ai-agents-readonly", "system:authenticated"]
    refused = await kubectl(kc, "delete", "pod", "web-1", *as_agent)
    assert 'User "agent-9"' in refused.stderr.decode()
    assert "Forbidden" in refused.stderr.decode()
    assert not any(k.startswith(b"impersonate-") for r in stack.cluster.seen for k, _ in r.headers)


async def test_unknown_connection_is_not_found(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN), connection="nope")
    result = await kubectl(kc, "get", "--raw", "/k8s/nope/version")
    assert (
        'Error from server (NotFound): the gateway has no connection "nope"'
        in result.stderr.decode()
    )


async def test_unreachable_cluster_is_a_bad_gateway(stack: Stack) -> None:
    kc = stack.kubeconfig(stack.token("admin-1", ADMIN), connection="down")
    result = await kubectl(kc, "get", "--raw", "/k8s/down/version")
    assert result.returncode != 0
    assert "cannot connect to the cluster" in result.stderr.decode()
    event = await wait_for_event(stack, lambda e: e["connection"] == "down")
    assert (event["decision"], event["status"]) == ("error", 502)


async def test_kubectl_pages_a_list_with_chunk_size(stack: Stack) -> None:
    """kubectl follows `continue` through the gateway, one object per page."""
    reader = stack.kubeconfig(stack.token("agent-7", READER), name="reader")
    whole = await kubectl(reader, "get", "pods", "-o", "name")
    paged = await kubectl(reader, "get", "pods", "-o", "name", "--chunk-size=1")
    assert paged.returncode == 0, paged.stderr.decode()
    assert paged.stdout == whole.stdout == b"pod/web-1\npod/web-2\n"
    lists = [e for e in stack.audit_events() if e["verb"] == "list" and e["resource"] == "pods"]
    assert len(lists) == 3  # the whole list, then two pages (the second via `continue`)
