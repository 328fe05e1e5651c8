"""Living access on the request path, with the real kubectl: an approved access request
adds its policy for the requester, a lock refuses before authorization, and both end the
streams already open (`ended_by: grant ended` / `lock`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from tests.e2e.mcp_client import mcp
from tests.e2e.stack import Stack, kubectl, start_kubectl, start_stack, wait_for_event
from tests.e2e.test_access_requests import Caller, with_access_requests
from tests.e2e.test_live_config import echoes, start_exec

AGENT_GROUPS = ("ai-agents-readonly",)


@pytest.fixture
async def stack(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Stack]:
    yield await start_stack(nursery, ca, tmp_path, configure=with_access_requests)


async def _eventually_succeeds(kc: Path, *args: str) -> bytes:
    """Changes reach the request path within one poll of the store (well under 2 s)."""
    with trio.fail_after(10):
        while True:
            result = await kubectl(kc, *args)
            if result.returncode == 0:
                return result.stdout
            await trio.sleep(0.2)


async def _eventually_refused(kc: Path, *args: str) -> str:
    with trio.fail_after(10):
        while True:
            result = await kubectl(kc, *args)
            if result.returncode != 0:
                return result.stderr.decode()
            await trio.sleep(0.2)


async def _approved_request(stack: Stack, agent: Caller) -> str:
    lead = Caller(stack, "lead-1", "sre-leads")
    created = await agent.ok(
        "request", "create", "--grant", "prod-write", "--reason", "hotfix", "--duration", "1h"
    )
    await lead.ok("request", "approve", str(created["id"]), "--reason", "ok")
    return str(created["id"])


async def test_a_403_that_a_grant_would_lift_names_it_and_the_approved_grant_lifts_it(
    stack: Stack,
) -> None:
    agent = Caller(stack, "agent-7", *AGENT_GROUPS)
    kc = stack.kubeconfig(agent.token, name="agent")
    refused = await kubectl(kc, "create", "configmap", "fix", "--from-literal=a=b")
    assert refused.returncode == 1
    assert "(request it: l7proxy request create --grant prod-write" in refused.stderr.decode()
    can_i = await kubectl(kc, "auth", "can-i", "create", "configmaps")
    assert can_i.stdout.startswith(b"no")

    request_id = await _approved_request(stack, agent)
    await _eventually_succeeds(kc, "create", "configmap", "fix", "--from-literal=a=b")
    assert (await kubectl(kc, "auth", "can-i", "create", "configmaps")).stdout.startswith(b"yes")
    event = await wait_for_event(
        stack, lambda e: e["resource"] == "configmaps" and e["decision"] == "allow"
    )
    assert (event["user"], event["policy"], event["grant"]) == (
        "agent-7",
        "platform-admins",
        request_id,
    )
    # Someone else in the same group has no such grant.
    other = stack.kubeconfig(stack.token("agent-8", AGENT_GROUPS), name="other")
    assert (await kubectl(other, "create", "configmap", "other")).returncode == 1


async def test_a_revoked_grant_refuses_again_and_ends_the_exec_it_allowed(stack: Stack) -> None:
    agent = Caller(stack, "agent-7", *AGENT_GROUPS)
    kc = stack.kubeconfig(agent.token, name="agent")
    request_id = await _approved_request(stack, agent)
    # The read-only policy has no exec; the grant's policy has.
    await _eventually_succeeds(kc, "auth", "can-i", "create", "pods/exec")
    shell = await start_exec(kc)
    try:
        assert await echoes(shell, b"under the grant\n")
        await agent.ok("request", "revoke", request_id)
        ended = await wait_for_event(stack, lambda e: e["subresource"] == "exec")
        assert (ended["ended_by"], ended["grant"]) == ("grant ended", request_id)
        with trio.fail_after(10):
            await shell.wait()
        refusal = await _eventually_refused(kc, "exec", "web-1", "--", "true")
        assert "(request it: l7proxy request create --grant prod-write" in refusal
    finally:
        shell.kill()


async def test_a_lock_refuses_the_user_and_ends_their_watch_until_it_is_lifted(
    stack: Stack, nursery: trio.Nursery
) -> None:
    admin = Caller(stack, "root-1", "platform-admins")
    agent = Caller(stack, "agent-7", *AGENT_GROUPS)
    kc = stack.kubeconfig(agent.token, name="agent")
    watch = await start_kubectl(nursery, kc, "get", "pods", "--watch")
    with trio.fail_after(10):
        assert watch.stdout is not None
        await watch.stdout.receive_some()

    lock = await admin.ok(
        "lock", "create", "--user", "agent-7", "--message", "incident 42: agent misbehaving"
    )
    refusal = await _eventually_refused(kc, "get", "pods")
    assert "locked out" in refusal and "incident 42: agent misbehaving" in refusal
    ended = await wait_for_event(stack, lambda e: e["verb"] == "watch" and e["user"] == "agent-7")
    assert ended["ended_by"] == "lock"
    refused = await wait_for_event(stack, lambda e: e["verb"] == "list" and e["decision"] == "deny")
    assert refused["status"] == 403 and "locked out" in str(refused["reason"])
    # Other users go on.
    other = stack.kubeconfig(stack.token("agent-8", AGENT_GROUPS), name="other")
    assert (await kubectl(other, "get", "pods")).returncode == 0

    await admin.ok("lock", "delete", str(lock["id"]))
    await _eventually_succeeds(kc, "get", "pods")


async def test_an_agent_asks_for_the_grant_its_refusal_names_through_mcp_and_gets_it(
    stack: Stack, nursery: trio.Nursery
) -> None:
    lead = Caller(stack, "lead-1", "sre-leads")
    async with mcp(stack, stack.token("agent-7", AGENT_GROUPS)) as session:
        refused = await session.call_tool("exec", {"pod": "web-1", "command": ["echo", "hi"]})
        assert refused.is_error
        assert "--grant prod-write" in refused.content[0].text  # type: ignore[union-attr]

        async def approve_when_filed() -> None:
            with trio.fail_after(20):
                while True:
                    pending = await lead.ok("request", "list", "--state", "pending")
                    if pending["items"]:
                        break
                    await trio.sleep(0.2)
            [item] = pending["items"]  # type: ignore[misc]
            await lead.ok("request", "approve", str(item["id"]), "--reason", "go")

        nursery.start_soon(approve_when_filed)
        asked = await session.call_tool(
            "request_access",
            {"grant": "prod-write", "reason": "INC-9", "duration": "30m", "wait_seconds": 30},
        )
        assert not asked.is_error, asked.content
        assert asked.structured_content is not None
        assert (asked.structured_content["state"], asked.structured_content["requester"]) == (
            "approved",
            "agent-7",
        )
        with trio.fail_after(10):  # the grant reaches the request path within a poll
            while True:
                ran = await session.call_tool("exec", {"pod": "web-1", "command": ["echo", "hi"]})
                if not ran.is_error:
                    break
                await trio.sleep(0.2)
        assert ran.structured_content is not None
        assert ran.structured_content["stdout"] == "hi\n"
    calls = [e for e in stack.session_events() if e["type"] == "mcp.tool_call"]
    assert [c["tool"] for c in calls].count("request_access") == 1
