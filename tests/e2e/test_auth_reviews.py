"""`kubectl auth can-i` and `kubectl auth whoami` answered by the gateway from the caller's
own policies — not from the gateway's service credential."""

from __future__ import annotations

from pathlib import Path

import trio
import trustme

from policy.model import Rule
from tests.e2e.stack import GATEWAY_USER, Stack, kubectl, start_stack

READER = ("ai-agents-readonly",)
ADMIN = ("platform-admins",)


async def test_can_i_reflects_the_policy_of_the_callers_group(stack: Stack) -> None:
    reader = stack.kubeconfig(stack.token("agent-7", READER), name="reader")
    admin = stack.kubeconfig(stack.token("admin-1", ADMIN), name="admin")
    assert (await kubectl(reader, "auth", "can-i", "list", "pods")).stdout.strip() == b"yes"
    denied = await kubectl(reader, "auth", "can-i", "delete", "pods")
    assert denied.returncode == 1
    assert denied.stdout.startswith(b"no")
    assert b'policy "agents-readonly"' in denied.stdout
    secret = await kubectl(reader, "auth", "can-i", "get", "secrets")
    assert secret.returncode == 1
    assert b"deny rule" in secret.stdout
    assert (await kubectl(admin, "auth", "can-i", "delete", "pods")).stdout.strip() == b"yes"


async def test_can_i_says_no_when_the_cluster_refuses_the_service_credential(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    read_only = [Rule(verbs=("get", "list", "watch"), api_groups=("*",), resources=("*",))]
    stack = await start_stack(nursery, ca, tmp_path, cluster_rbac={GATEWAY_USER: read_only})
    admin = stack.kubeconfig(stack.token("admin-1", ADMIN))
    assert (await kubectl(admin, "auth", "can-i", "list", "pods")).stdout.strip() == b"yes"
    refused = await kubectl(admin, "auth", "can-i", "delete", "pods")
    assert refused.returncode == 1
    assert b"the cluster refused" in refused.stdout


async def test_can_i_list_shows_the_callers_rules(stack: Stack) -> None:
    reader = stack.kubeconfig(stack.token("agent-7", READER))
    result = await kubectl(reader, "auth", "can-i", "--list", "-n", "default")
    table = result.stdout.decode()
    assert "*.*" in table and "[get list watch]" in table
    assert "/version" in table


async def test_whoami_names_the_verified_caller_connection_and_policies(stack: Stack) -> None:
    reader = stack.kubeconfig(stack.token("agent-7", READER))
    result = await kubectl(reader, "auth", "whoami", "-o", "json", check=True)
    text = result.stdout.decode()
    assert '"username": "agent-7"' in text
    assert '"ai-agents-readonly"' in text
    assert '"dev"' in text and '"agents-readonly"' in text
