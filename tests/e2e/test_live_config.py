"""SIGHUP reload and SIGTERM drain of a real `l7proxy serve` process, driven by kubectl."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import trio
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from l7proxy.wire.exchange import Exchange
from l7proxy.wire.listener import Handle
from tests.e2e.gateway_process import GatewayProcess, close_process, gateway_process
from tests.e2e.stack import (
    Stack,
    _closed_port,
    kubectl,
    kubectl_argv,
    kubectl_env,
    read_until,
    start_kubectl,
    start_stack,
)
from tests.e2e.test_http import curl
from tests.e2e.test_metrics import scrape, value

READER = ("ai-agents-readonly",)
ADMIN = ("platform-admins",)


async def metric(stack: Stack, name: str) -> float:
    _, _, body = await curl(stack, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    return families[name].samples[0].value


async def wait_in_flight(stack: Stack, count: int) -> None:
    """Until `count` requests are being answered (the streams the test opened are open)."""
    with trio.fail_after(30):
        while await metric(stack, "l7proxy_requests_in_flight") != count:  # noqa: ASYNC110
            await trio.sleep(0.1)


async def start_exec(kc: Path) -> trio.Process:
    """`kubectl exec -i web-1 -- cat`, its stdin and stdout piped."""
    return await trio.lowlevel.open_process(
        kubectl_argv(kc, "exec", "-i", "web-1", "--", "cat"),
        env=kubectl_env(kc),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def echoes(process: trio.Process, line: bytes) -> bool:
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.send_all(line)
    seen = b""
    with trio.fail_after(20):
        while line not in seen:
            chunk = await process.stdout.receive_some()
            if not chunk:
                return False
            seen += chunk
    return True


def tighten(stack: Stack) -> None:
    """Agents may no longer read ConfigMaps; admins may only create them (no exec)."""
    path = stack.tmp / "gateway.yaml"
    config = yaml.safe_load(path.read_text())
    for policy in config["policies"]:
        if policy["name"] == "agents-readonly":
            policy["deny"].append(
                {
                    "verbs": ["*"],
                    "api_groups": [""],
                    "resources": ["configmaps"],
                    "namespaces": ["*"],
                }
            )
        if policy["name"] == "platform-admins":
            policy["allow"] = [
                {
                    "verbs": ["create"],
                    "api_groups": [""],
                    "resources": ["configmaps"],
                    "namespaces": ["*"],
                },
                {"verbs": ["get"], "non_resource_urls": ["*"]},
            ]
    path.write_text(yaml.safe_dump(config))


def reload_errors(gateway: GatewayProcess, after: int) -> list[str]:
    return [
        str(line["error"])
        for line in gateway.log[after:]
        if line.get("event") == "configuration reload failed; the running configuration stays"
    ]


async def test_sighup_tightens_policies_for_new_requests_while_earlier_streams_go_on(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, in_process=False)
    async with gateway_process(nursery, stack) as gateway:
        agent = stack.kubeconfig(stack.token("agent-7", READER), name="agent")
        admin = stack.kubeconfig(stack.token("admin-1", ADMIN), name="admin")
        assert (await kubectl(agent, "get", "configmaps")).returncode == 0
        watch = await start_kubectl(nursery, agent, "get", "configmaps", "-w")
        shell = await start_exec(admin)
        assert await echoes(shell, b"before reload\n")
        await wait_in_flight(stack, 2)
        loaded_at = await metric(stack, "l7proxy_config_last_reload_success_timestamp_seconds")

        tighten(stack)
        mark = len(gateway.log)
        gateway.signal(signal.SIGHUP)
        await gateway.wait_for_log("configuration reloaded", after=mark)

        refused = await kubectl(agent, "get", "configmaps")
        assert refused.returncode == 1
        assert b"Forbidden" in refused.stderr, refused.stderr
        assert b'cannot list resource "configmaps"' in refused.stderr
        created = await kubectl(admin, "create", "configmap", "made-after-reload")
        assert created.returncode == 0, created.stderr
        await read_until(watch, b"made-after-reload")  # the earlier watch still streams
        assert await echoes(shell, b"after reload\n")  # the exec still answers
        assert b"Forbidden" in (await kubectl(admin, "get", "pods")).stderr
        assert await metric(stack, "l7proxy_config_last_reload_successful") == 1
        reloaded_at = await metric(stack, "l7proxy_config_last_reload_success_timestamp_seconds")
        assert reloaded_at > loaded_at

        good = (stack.tmp / "gateway.yaml").read_text()
        for broken, why in (
            (good + "policies: [\n", "invalid YAML"),
            (good.replace("connection: dev", "connection: nowhere", 1), "unknown connection"),
            (good.replace("gateway.pem", "missing.pem"), "file not found"),
        ):
            (stack.tmp / "gateway.yaml").write_text(broken)
            mark = len(gateway.log)
            gateway.signal(signal.SIGHUP)
            await gateway.wait_for_log(
                "configuration reload failed; the running configuration stays", after=mark
            )
            [error] = reload_errors(gateway, mark)
            assert error.startswith(f"{stack.tmp / 'gateway.yaml'}:"), error
            assert error.split(":")[1].isdigit(), error  # located at its line
            assert why in error, error
            assert await metric(stack, "l7proxy_config_last_reload_successful") == 0
            assert (
                await metric(stack, "l7proxy_config_last_reload_success_timestamp_seconds")
                == reloaded_at
            )
            # the tightened configuration still serves
            assert b"Forbidden" in (await kubectl(agent, "get", "configmaps")).stderr
            assert (await kubectl(agent, "get", "pods")).returncode == 0
        assert await echoes(shell, b"after broken reloads\n")
        await close_process(shell)  # its stdin closed, cat ends
        watch.kill()


async def test_sighup_changes_the_authorization_servers_the_mcp_endpoint_names(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, in_process=False)
    metadata_path = "/.well-known/oauth-protected-resource/mcp/dev"
    async with gateway_process(nursery, stack) as gateway:
        _, _, before = await curl(stack, metadata_path)
        path = stack.tmp / "gateway.yaml"
        config = yaml.safe_load(path.read_text())
        second = "https://sso.example.com/realms/agents"
        config["identity"]["providers"].append(
            {"name": "agents-sso", "issuer": second, "audiences": ["l7proxy"]}
        )
        path.write_text(yaml.safe_dump(config))
        mark = len(gateway.log)
        gateway.signal(signal.SIGHUP)
        await gateway.wait_for_log("configuration reloaded", after=mark)
        _, _, after = await curl(stack, metadata_path)
    assert json.loads(before)["authorization_servers"] == [stack.issuer.issuer]
    assert json.loads(after)["authorization_servers"] == [stack.issuer.issuer, second]


class HeldResponses:
    """The sandbox cluster, except that `GET …/configmaps/held` waits for `release`: a
    request still in flight when the gateway is told to stop."""

    def __init__(self) -> None:
        self.cluster: Handle | None = None
        self.arrived = trio.Event()
        self.release = trio.Event()

    async def handle(self, exchange: Exchange) -> None:
        if exchange.head.method == "GET" and exchange.head.path.endswith("/configmaps/held"):
            self.arrived.set()
            await self.release.wait()
        assert self.cluster is not None
        await self.cluster(exchange)


async def test_sigterm_answers_the_request_in_flight_ends_streams_after_the_grace_and_exits_0(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    held = HeldResponses()
    stack = await start_stack(
        nursery, ca, tmp_path, upstream=held.handle, limits={"shutdown_grace": 2}, in_process=False
    )
    held.cluster = stack.cluster.handle
    async with gateway_process(nursery, stack) as gateway:
        agent = stack.kubeconfig(stack.token("agent-7", READER), name="agent")
        admin = stack.kubeconfig(stack.token("admin-1", ADMIN), name="admin")
        assert (await kubectl(admin, "create", "configmap", "held")).returncode == 0
        watch = await start_kubectl(nursery, agent, "get", "configmaps", "-w")
        shell = await start_exec(admin)
        assert await echoes(shell, b"before draining\n")
        slow: list[subprocess.CompletedProcess[bytes]] = []
        answered = trio.Event()

        async def get_held() -> None:
            slow.append(await kubectl(agent, "get", "configmap", "held", "-o", "name"))
            answered.set()

        nursery.start_soon(get_held)
        await held.arrived.wait()
        await wait_in_flight(stack, 3)

        gateway.signal(signal.SIGTERM)
        await gateway.wait_for_log("draining")
        assert await echoes(shell, b"while draining\n")  # streams go on within the grace
        held.release.set()
        with trio.fail_after(120):
            code = await gateway.process.wait()
            await answered.wait()
        assert code == 0
        assert (slow[0].returncode, slow[0].stdout) == (0, b"configmap/held\n"), slow[0].stderr
        watch.kill()
        shell.kill()
        await close_process(shell)

    events = stack.audit_events()
    [held_event] = [e for e in events if str(e["path"]).endswith("/configmaps/held")]
    assert (held_event["status"], held_event["ended_by"]) == (200, "complete")
    [watched] = [e for e in events if e["verb"] == "watch"]
    assert watched["ended_by"] == "gateway shutdown"
    [execed] = [e for e in events if e["subresource"] == "exec"]
    assert execed["ended_by"] == "gateway shutdown"
    [session] = [e for e in stack.session_events() if e["type"] == "session.end"]
    assert session["ended_by"] == "gateway shutdown"


async def test_with_two_workers_sighup_reloads_both_and_metrics_add_up_across_them(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, ca, tmp_path, in_process=False)
    path = stack.tmp / "gateway.yaml"
    config = yaml.safe_load(path.read_text())
    config["workers"] = 2
    config["listen"]["address"] = f"127.0.0.1:{_closed_port()}"
    path.write_text(yaml.safe_dump(config))
    async with gateway_process(nursery, stack, workers=2) as gateway:
        agent = stack.kubeconfig(stack.token("agent-7", READER), name="agent")
        for _ in range(6):  # each kubectl a new connection: the kernel spreads them
            assert (await kubectl(agent, "get", "configmaps")).returncode == 0
        counts = set()
        for _ in range(6):  # each scrape a new connection, answered by either worker
            samples = await scrape(stack)
            counts.add(
                value(
                    samples,
                    "l7proxy_requests_total",
                    connection="dev",
                    verb="list",
                    decision="allow",
                    code="200",
                )
            )
        assert len(counts) == 1, counts  # the same sum whichever worker answers
        assert counts.pop() >= 6

        tighten(stack)
        mark = len(gateway.log)
        gateway.signal(signal.SIGHUP)  # the parent only
        await gateway.wait_for_log("configuration reloaded", after=mark, count=2)
        for _ in range(6):
            assert b"Forbidden" in (await kubectl(agent, "get", "configmaps")).stderr

        good = path.read_text()
        path.write_text(good.replace("connection: dev", "connection: nowhere", 1))
        mark = len(gateway.log)
        gateway.signal(signal.SIGHUP)
        failed = "configuration reload failed; the running configuration stays"
        await gateway.wait_for_log(failed, after=mark, count=2)
        assert len(reload_errors(gateway, mark)) == 2  # one located error per worker
        for _ in range(3):
            assert value(await scrape(stack), "l7proxy_config_last_reload_successful") == 0

        mark = len(gateway.log)
        gateway.signal(signal.SIGTERM)
        with trio.fail_after(60):
            assert await gateway.process.wait() == 0
        draining = [line for line in gateway.log[mark:] if line.get("event") == "draining"]
        assert len(draining) == 2
