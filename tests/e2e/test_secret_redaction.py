"""`redact_secrets: true`: Secrets its callers read come back with every value replaced,
for the real kubectl, the three Python clients and the MCP tools alike."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import kubernetes
import kubernetes_asyncio
import pytest
import trio
import trustme
import yaml
from lightkube.resources.core_v1 import Secret

from policy.model import Policy, Rule
from tests.e2e import python_clients
from tests.e2e.mcp_client import mcp
from tests.e2e.stack import Stack, kubectl, start_kubectl, start_stack, wait_for_event

REDACTED = base64.b64encode(b"REDACTED").decode()
PASSWORD = "hunter2"
PASSWORD_B64 = base64.b64encode(PASSWORD.encode()).decode()
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ADMIN = ("platform-admins",)
READERS = ("secret-readers",)
SECRET = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: default, labels: {{app: db}}}}
type: Opaque
stringData: {{password: {PASSWORD}, user: app}}
"""
# Reads Secrets, redacted; and what kubectl's discovery needs.
SECRET_READERS = Policy(
    name="secret-readers",
    connection="dev",
    groups=READERS,
    allow=(
        Rule(verbs=("get", "list", "watch"), api_groups=("",), resources=("secrets",)),
        Rule(verbs=("get",), non_resource_urls=("/api", "/api/*", "/apis", "/apis/*", "/version")),
        Rule(
            verbs=("create",),
            api_groups=("authentication.k8s.io",),
            resources=("selfsubjectreviews",),
        ),
    ),
    redact_secrets=True,
)


# Lets secret readers act as anyone: impersonation must not lift their redaction.
IMPERSONATORS = Policy(
    name="secret-readers-impersonate",
    connection="dev",
    groups=READERS,
    allow=(Rule(verbs=("impersonate",), api_groups=("",), resources=("users", "groups")),),
)


@pytest.fixture
async def stack(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await start_stack(nursery, ca, tmp_path, extra_policies=[SECRET_READERS, IMPERSONATORS])
    admin = stack.kubeconfig(stack.token("alice", ADMIN), name="admin")
    await kubectl(admin, "apply", "-f", "-", stdin=SECRET.encode(), check=True)
    yield stack


def _assert_redacted(secret: dict[str, Any]) -> None:
    assert secret["data"] == {"password": REDACTED, "user": REDACTED}
    assert LAST_APPLIED not in (secret["metadata"].get("annotations") or {})
    assert secret["metadata"]["labels"] == {"app": "db"}  # the rest is left as it was


async def test_kubectl_get_yaml_and_json_show_no_value(stack: Stack) -> None:
    reader = stack.kubeconfig(stack.token("rita", READERS), name="reader")
    as_yaml = await kubectl(reader, "get", "secret", "db", "-o", "yaml", check=True)
    as_json = await kubectl(reader, "get", "secrets", "-o", "json", check=True)
    table = await kubectl(reader, "get", "secrets", check=True)
    over_http1 = await kubectl(reader, "get", "secret", "db", "-o", "json", check=True, http1=True)
    for secret in (
        yaml.safe_load(as_yaml.stdout),
        json.loads(as_json.stdout)["items"][0],
        json.loads(over_http1.stdout),
    ):
        _assert_redacted(secret)
    for output in (as_yaml.stdout, as_json.stdout, table.stdout):
        assert PASSWORD.encode() not in output and PASSWORD_B64.encode() not in output
    assert table.stdout.splitlines()[1].startswith(b"db ")


async def test_a_caller_without_the_flag_still_sees_values(stack: Stack) -> None:
    admin = stack.kubeconfig(stack.token("alice", ADMIN), name="admin")
    both = stack.kubeconfig(stack.token("bob", (*ADMIN, *READERS)), name="both")
    plain = json.loads((await kubectl(admin, "get", "secret", "db", "-o", "json")).stdout)
    redacted = json.loads((await kubectl(both, "get", "secret", "db", "-o", "json")).stdout)
    assert plain["data"]["password"] == PASSWORD_B64
    assert PASSWORD in plain["metadata"]["annotations"][LAST_APPLIED]
    _assert_redacted(redacted)  # one policy of the caller's that redacts is enough


async def test_impersonating_someone_who_sees_values_does_not_lift_redaction(
    stack: Stack,
) -> None:
    reader = stack.kubeconfig(stack.token("rita", READERS), name="reader")
    as_admin = await kubectl(
        reader, "get", "secret", "db", "-o", "json", "--as", "alice", "--as-group", ADMIN[0]
    )
    assert as_admin.returncode == 0, as_admin.stderr
    _assert_redacted(json.loads(as_admin.stdout))
    event = await wait_for_event(stack, lambda e: e["impersonated_user"] == "alice")
    assert (event["user"], event["policy"]) == ("rita", "platform-admins")


def _objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects `kubectl get -w -o json` printed one after another."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        obj, end = decoder.raw_decode(text, at)
        objects.append(obj)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return objects


async def test_kubectl_watch_streams_redacted_events(stack: Stack) -> None:
    reader = stack.kubeconfig(stack.token("rita", READERS), name="reader")
    admin = stack.kubeconfig(stack.token("alice", ADMIN), name="admin")
    async with trio.open_nursery() as nursery:
        watch = await start_kubectl(nursery, reader, "get", "secrets", "-w", "-o", "json")
        out = b""
        with trio.fail_after(30):
            while not _complete(out, 1):
                out += await watch.stdout.receive_some()
            changed = SECRET.replace(PASSWORD, "swordfish")
            await kubectl(admin, "apply", "-f", "-", stdin=changed.encode(), check=True)
            while not _complete(out, 2):
                out += await watch.stdout.receive_some()
        watch.kill()
    first, modified = _objects(out.decode())[:2]
    _assert_redacted(first)
    _assert_redacted(modified)
    assert b"swordfish" not in out and base64.b64encode(b"swordfish") not in out
    assert PASSWORD_B64.encode() not in out


def _complete(out: bytes, count: int) -> bool:
    try:
        return len(_objects(out.decode())) >= count
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False  # an object still arriving


async def test_the_python_clients_read_redacted_secrets(stack: Stack) -> None:
    token = stack.token("rita", READERS)
    core = kubernetes.client.CoreV1Api(python_clients.official(stack, token))
    official = await trio.to_thread.run_sync(core.read_namespaced_secret, "db", "default")
    light = python_clients.lightkube_client(stack, token)

    def read_lightkube() -> Secret:
        try:
            return light.get(Secret, "db")
        finally:
            light.close()

    lightkube_secret = await trio.to_thread.run_sync(read_lightkube)

    async def read_asyncio() -> dict[str, str]:
        async with python_clients.asyncio_client(stack, token) as api:
            listed = await kubernetes_asyncio.client.CoreV1Api(api).list_namespaced_secret(
                "default"
            )
            return dict(listed.items[0].data)

    asyncio_data = await trio.to_thread.run_sync(asyncio.run, read_asyncio())
    expected = {"password": REDACTED, "user": REDACTED}
    assert official.data == expected and LAST_APPLIED not in (official.metadata.annotations or {})
    assert lightkube_secret.data == expected
    assert asyncio_data == expected


async def test_the_mcp_tools_read_redacted_secrets(stack: Stack) -> None:
    async with mcp(stack, stack.token("rita", READERS)) as session:
        got = await session.call_tool("get_resource", {"resource": "secrets", "name": "db"})
        listed = await session.call_tool("list_resources", {"resource": "secrets"})
    assert got.structured_content is not None and listed.structured_content is not None
    _assert_redacted(yaml.safe_load(got.structured_content["manifest"]))
    _assert_redacted(listed.structured_content["items"][0])
    assert PASSWORD_B64 not in got.content[0].text  # type: ignore[union-attr]


async def test_tables_with_objects_and_protobuf_are_handled(stack: Stack) -> None:
    url = f"{stack.gateway_url}/k8s/dev/api/v1/namespaces/default/secrets"
    headers = {"authorization": f"Bearer {stack.token('rita', READERS)}"}
    table_type = "application/json;as=Table;v=v1;g=meta.k8s.io"
    async with httpx2.AsyncClient(verify=stack.client_ssl_context(), headers=headers) as client:
        table = await client.get(
            url, params={"includeObject": "Object"}, headers={"accept": table_type}
        )
        metadata = await client.get(url, headers={"accept": f"{table_type}, application/json"})
        protobuf_only = await client.get(
            url, headers={"accept": "application/vnd.kubernetes.protobuf"}
        )
        protobuf_first = await client.get(
            url, headers={"accept": "application/vnd.kubernetes.protobuf, application/json"}
        )
    assert table.json()["kind"] == "Table"
    _assert_redacted(table.json()["rows"][0]["object"])
    assert LAST_APPLIED not in metadata.text and PASSWORD_B64 not in metadata.text
    assert protobuf_only.status_code == 406
    assert protobuf_only.json()["reason"] == "NotAcceptable"
    assert "application/json" in protobuf_only.json()["message"]
    assert protobuf_first.headers["content-type"].startswith("application/json")
    _assert_redacted(protobuf_first.json()["items"][0])
