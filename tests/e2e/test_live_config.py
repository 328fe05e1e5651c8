"""SIGHUP reload and SIGTERM drain of a real `l7proxy serve` process, driven by kubectl."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import trio
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.gateway_process import GatewayProcess, gateway_process
from tests.e2e.stack import Stack, kubectl, kubectl_argv, kubectl_env, start_kubectl, start_stack
from tests.e2e.test_http import curl

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


async def read_until(process: trio.Process, text: bytes) -> None:
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(20):
        while text not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, f"the stream ended before {text!r}: {seen!r}"
            seen += chunk


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
        assert shell.stdin is not None
        await shell.stdin.aclose()
        await shell.wait()
        watch.kill()
