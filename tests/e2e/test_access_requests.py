"""Access requests and locks end to end: the `l7proxy request` and `l7proxy lock` commands
against a running gateway (its SQLite store), with the development issuer's tokens."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from l7proxy.config.settings import Config, StateStore
from policy.access import Grant, Subjects
from tests.e2e.stack import Stack, event_for, start_stack, wait_for_event
from tests.e2e.test_http import curl
from tests.postgres import Postgres

L7PROXY = [sys.executable, "-m", "l7proxy"]
GRANT = Grant(
    name="prod-write",
    policy="platform-admins",
    requesters=Subjects(groups=("ai-agents-readonly",)),
    approvers=Subjects(groups=("sre-leads",)),
    min_approvals=1,
    max_duration=4 * 3600,
)


def with_access_requests(config: Config, state: StateStore | None = None) -> Config:
    return dataclasses.replace(
        config,
        admins=Subjects(groups=("platform-admins",)),
        access_requests=(GRANT,),
        state=state or config.state,
    )


@pytest.fixture
async def stack(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Stack]:
    yield await start_stack(nursery, ca, tmp_path, configure=with_access_requests)


class Caller:
    """`l7proxy request|lock …` as one user, with a token file."""

    def __init__(self, stack: Stack, user: str, *groups: str) -> None:
        self.stack = stack
        self.user = user
        self.token = stack.token(user, groups)
        self.token_file = stack.tmp / f"token-{user}"
        self.token_file.write_text(self.token + "\n")

    async def run(self, *argv: str, json_output: bool = True) -> trio.Process:
        command, action, *rest = argv
        options = ["--gateway", self.stack.gateway_url, "--ca-file", str(self.stack.tmp / "ca.pem")]
        options += ["--token-file", str(self.token_file)]
        options += ["--output", "json"] if json_output else []
        with trio.fail_after(60):
            result = await trio.run_process(
                [*L7PROXY, command, action, *rest, *options],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={k: v for k, v in os.environ.items() if k != "L7PROXY_TOKEN"},
            )
        assert self.token.encode() not in result.stdout + result.stderr
        return result

    async def ok(self, *argv: str) -> dict[str, object]:
        result = await self.run(*argv)
        assert result.returncode == 0, result.stderr.decode()
        document: dict[str, object] = json.loads(result.stdout)
        return document

    async def refused(self, *argv: str) -> str:
        result = await self.run(*argv)
        assert result.returncode == 1, result.stdout.decode()
        assert b"Traceback" not in result.stderr
        return result.stderr.decode()


async def test_a_request_is_created_approved_and_shown(stack: Stack) -> None:
    agent = Caller(stack, "agent-7", "ai-agents-readonly")
    lead = Caller(stack, "lead-1", "sre-leads")
    created = await agent.ok(
        "request", "create", "--grant", "prod-write", "--reason", "deploy fix", "--duration", "30m"
    )
    assert set(created) == {
        "id",
        "grant",
        "requester",
        "reason",
        "duration",
        "state",
        "reviews",
        "created",
        "expires",
    }
    assert (created["grant"], created["requester"], created["state"]) == (
        "prod-write",
        "agent-7",
        "pending",
    )
    assert (created["reason"], created["duration"], created["reviews"]) == ("deploy fix", "30m", [])
    request_id = str(created["id"])

    approved = await lead.ok("request", "approve", request_id, "--reason", "looks right")
    assert approved["state"] == "approved"
    assert approved["reviews"] == [
        {
            "reviewer": "lead-1",
            "decision": "approve",
            "reason": "looks right",
            "at": approved["reviews"][0]["at"],
        }  # type: ignore[index]
    ]
    shown = await agent.ok("request", "show", request_id)
    assert shown == approved
    listed = await lead.ok("request", "list", "--state", "approved")
    assert [item["id"] for item in listed["items"]] == [request_id]  # type: ignore[union-attr,index]
    assert (await lead.ok("request", "list", "--state", "pending"))["items"] == []

    events = [e for e in stack.session_events() if str(e["type"]).startswith("access_request.")]
    assert [(e["type"], e["user"], e["id"]) for e in events] == [
        ("access_request.created", "agent-7", request_id),
        ("access_request.approved", "lead-1", request_id),
    ]
    assert events[1]["reason"] == "looks right"


async def test_a_requester_cannot_approve_their_own_request(stack: Stack) -> None:
    both = Caller(stack, "agent-9", "ai-agents-readonly", "sre-leads")
    created = await both.ok(
        "request", "create", "--grant", "prod-write", "--reason", "x", "--duration", "1h"
    )
    message = await both.refused("request", "approve", str(created["id"]), "--reason", "me")
    assert "Error from server (Forbidden)" in message
    assert "may not review their own request" in message
    assert (await both.ok("request", "show", str(created["id"])))["state"] == "pending"


async def test_only_requesters_request_and_only_approvers_review(stack: Stack) -> None:
    stranger = Caller(stack, "eve", "dev")
    message = await stranger.refused(
        "request", "create", "--grant", "prod-write", "--reason", "x", "--duration", "1h"
    )
    assert "not one of its requesters" in message
    agent = Caller(stack, "agent-7", "ai-agents-readonly")
    created = await agent.ok(
        "request", "create", "--grant", "prod-write", "--reason", "x", "--duration", "9h"
    )
    assert created["duration"] == "4h"  # max_duration caps it
    assert "not one of its approvers" in await stranger.refused(
        "request", "deny", str(created["id"]), "--reason", "no"
    )
    assert "NotFound" in await stranger.refused("request", "show", str(created["id"]))
    assert (await stranger.ok("request", "list"))["items"] == []


async def test_a_denied_request_cannot_be_approved_or_revoked(stack: Stack) -> None:
    agent = Caller(stack, "agent-7", "ai-agents-readonly")
    lead = Caller(stack, "lead-1", "sre-leads")
    request_id = str(
        (
            await agent.ok(
                "request", "create", "--grant", "prod-write", "--reason", "x", "--duration", "1h"
            )
        )["id"]
    )
    assert (await lead.ok("request", "deny", request_id, "--reason", "not now"))["state"] == (
        "denied"
    )
    assert "Error from server (Conflict)" in await Caller(stack, "lead-2", "sre-leads").refused(
        "request", "approve", request_id, "--reason", "ok"
    )
    assert "it is denied, not approved" in await agent.refused("request", "revoke", request_id)


async def test_create_wait_returns_once_approved_and_revoke_ends_it(stack: Stack) -> None:
    agent = Caller(stack, "agent-7", "ai-agents-readonly")
    lead = Caller(stack, "lead-1", "sre-leads")
    async with trio.open_nursery() as nursery:
        waited: list[dict[str, object]] = []

        async def wait_for_decision() -> None:
            waited.append(
                await agent.ok(
                    "request",
                    "create",
                    "--grant",
                    "prod-write",
                    "--reason",
                    "x",
                    "--duration",
                    "1h",
                    "--wait",
                )
            )

        nursery.start_soon(wait_for_decision)
        created = await wait_for_event(stack, lambda e: True, kind="access_request.created")
        request_id = str(created["id"])
        await lead.ok("request", "approve", request_id, "--reason", "ok")
    assert waited[0]["state"] == "approved"
    revoked = await agent.ok("request", "revoke", request_id)
    assert (revoked["state"], revoked["revoked_by"]) == ("revoked", "agent-7")
    assert stack.session_events()[-1]["type"] == "access_request.revoked"


async def test_admins_place_list_and_lift_locks(stack: Stack) -> None:
    admin = Caller(stack, "root", "platform-admins")
    agent = Caller(stack, "agent-7", "ai-agents-readonly")
    assert "not an admin" in await agent.refused(
        "lock", "create", "--user", "agent-7", "--message", "x"
    )
    lock = await admin.ok(
        "lock", "create", "--user", "agent-7", "--duration", "10m", "--message", "incident 42"
    )
    assert (lock["user"], lock["message"], lock["created_by"]) == ("agent-7", "incident 42", "root")
    assert lock["expires"] is not None
    forever = await admin.ok("lock", "create", "--connection", "dev", "--message", "freeze")
    assert forever["expires"] is None
    listed = await admin.ok("lock", "list")
    assert sorted(str(item["id"]) for item in listed["items"]) == sorted(  # type: ignore[union-attr,index]
        [str(lock["id"]), str(forever["id"])]
    )
    assert "not an admin" in await agent.refused("lock", "list")
    assert (await admin.ok("lock", "delete", str(lock["id"])))["id"] == lock["id"]
    assert "NotFound" in await admin.refused("lock", "delete", str(lock["id"]))
    types = [e["type"] for e in stack.session_events() if str(e["type"]).startswith("lock.")]
    assert types == ["lock.created", "lock.created", "lock.deleted"]


async def test_text_output_and_a_bad_state_filter(stack: Stack) -> None:
    agent = Caller(stack, "agent-7", "ai-agents-readonly")
    created = await agent.run(
        "request",
        "create",
        "--grant",
        "prod-write",
        "--reason",
        "fix it",
        "--duration",
        "30m",
        json_output=False,
    )
    assert created.returncode == 0
    line = created.stdout.decode().strip().split("\t")
    assert line[1:5] == ["prod-write", "agent-7", "pending", "30m"]
    shown = await agent.run("request", "show", line[0], json_output=False)
    assert f"id: {line[0]}\n" in shown.stdout.decode()


async def test_api_refusals_are_statuses_and_every_call_is_audited(stack: Stack) -> None:
    status, headers, body = await curl(stack, "/l7proxy/v1/access-requests")
    assert (status, json.loads(body)["kind"], json.loads(body)["reason"]) == (
        401,
        "Status",
        "Unauthorized",
    )
    assert (await event_for(stack, headers["audit-id"]))["decision"] == "unauthenticated"
    bearer = f"authorization: Bearer {stack.token('root', ('platform-admins',))}"
    for path, args, code in [
        ("/l7proxy/v1/nothing", (), 404),
        ("/l7proxy/v1/locks", ("-X", "PUT"), 405),
        ("/l7proxy/v1/locks", ("-X", "POST", "-d", "[1]"), 400),
        ("/l7proxy/v1/access-requests?state=bogus", (), 400),
    ]:
        status, headers, body = await curl(stack, path, "-H", bearer, *args)
        assert (status, json.loads(body)["code"]) == (code, code), body
        event = await event_for(stack, headers["audit-id"])
        assert (event["user"], event["decision"]) == ("root", "deny")
        assert event["reason"] == json.loads(body)["message"]
    status, headers, _ = await curl(stack, "/l7proxy/v1/locks", "-H", bearer)
    event = await event_for(stack, headers["audit-id"])
    assert (status, event["status"], event["decision"]) == (200, 200, "allow")


async def test_a_gateway_on_postgresql_keeps_requests_across_a_restart(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, postgres: Postgres
) -> None:
    """The same calls with `state: {postgres: URL}`; a second gateway on the same database
    (as after a restart, or another replica) sees what the first stored."""
    state = StateStore(postgres=postgres.create_database())
    configure = functools.partial(with_access_requests, state=state)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = await start_stack(nursery, ca, tmp_path / "one", configure=configure)
    second = await start_stack(nursery, ca, tmp_path / "two", configure=configure)
    created = await Caller(first, "agent-7", "ai-agents-readonly").ok(
        "request", "create", "--grant", "prod-write", "--reason", "x", "--duration", "1h"
    )
    lead = Caller(second, "lead-1", "sre-leads")
    approved = await lead.ok("request", "approve", str(created["id"]), "--reason", "ok")
    assert approved["state"] == "approved"
    assert not (tmp_path / "one" / "l7proxy-state.db").exists()  # nothing went to SQLite


async def test_serve_with_a_state_store_it_cannot_open_says_so_and_exits_1(stack: Stack) -> None:
    (stack.tmp / "blocked").mkdir()
    (stack.tmp / "blocked" / "l7proxy-state.db").mkdir()  # a folder where the file would be
    config = stack.tmp / "blocked" / "gateway.yaml"
    config.write_text((stack.tmp / "gateway.yaml").read_text())
    for name in ("gateway.pem", "gateway-key.pem", "ca.pem", "cluster-token"):
        (stack.tmp / "blocked" / name).write_bytes((stack.tmp / name).read_bytes())
    with trio.fail_after(60):
        result = await trio.run_process(
            [*L7PROXY, "serve", "--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    message = result.stderr.decode()
    assert "error: state store: cannot open the state store" in message
    assert "Traceback" not in message


async def test_the_token_comes_from_the_environment_else_the_command_says_how(
    stack: Stack,
) -> None:
    argv = [*L7PROXY, "request", "list", "--gateway", stack.gateway_url]
    argv += ["--ca-file", str(stack.tmp / "ca.pem"), "--output", "json"]
    token = stack.token("agent-7", ("ai-agents-readonly",))
    env = {k: v for k, v in os.environ.items() if k != "L7PROXY_TOKEN"}
    with trio.fail_after(60):
        listed = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, env={**env, "L7PROXY_TOKEN": token}
        )
        missing = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, env=env, check=False
        )
    assert json.loads(listed.stdout) == {"kind": "AccessRequestList", "items": []}
    assert missing.returncode == 1
    assert "no token: give --token-file FILE, set $L7PROXY_TOKEN" in missing.stderr.decode()
