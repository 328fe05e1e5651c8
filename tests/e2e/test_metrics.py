"""`/metrics` after real kubectl traffic, parsed by prometheus-client's own parser."""

from __future__ import annotations

import subprocess

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.gateway_process import close_process
from tests.e2e.stack import Stack, kubectl, kubectl_argv, kubectl_env, start_kubectl
from tests.e2e.test_http import curl

READER = ("ai-agents-readonly",)
ADMIN = ("platform-admins",)


async def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, by name and sorted labels."""
    status, headers, body = await curl(stack, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=1.0.0")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def streams(stack: Stack, kind: str) -> float:
    return value(await scrape(stack), "l7proxy_open_streams", kind=kind)


async def wait_streams(stack: Stack, kind: str, count: float) -> None:
    with trio.fail_after(30):
        while await streams(stack, kind) != count:  # noqa: ASYNC110 (a scrape is the probe)
            await trio.sleep(0.1)


async def test_metrics_count_requests_by_connection_verb_decision_and_code_and_open_streams(
    stack: Stack, nursery: trio.Nursery
) -> None:
    agent = stack.kubeconfig(stack.token("agent-7", READER), name="agent")
    admin = stack.kubeconfig(stack.token("admin-1", ADMIN), name="admin")
    for _ in range(3):
        assert (await kubectl(agent, "get", "pods")).returncode == 0
    assert b"Forbidden" in (await kubectl(agent, "get", "secrets")).stderr
    before = await scrape(stack)

    watch = await start_kubectl(nursery, agent, "get", "pods", "-w")
    await wait_streams(stack, "watch", 1)
    shell = await trio.lowlevel.open_process(
        kubectl_argv(admin, "exec", "-i", "web-1", "--", "cat"),
        env=kubectl_env(admin),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await wait_streams(stack, "exec", 1)
    during = await scrape(stack)
    await close_process(shell)
    watch.kill()
    await wait_streams(stack, "exec", 0)
    await wait_streams(stack, "watch", 0)

    lists = value(
        before,
        "l7proxy_requests_total",
        connection="dev",
        verb="list",
        decision="allow",
        code="200",
    )
    assert lists >= 3  # kubectl's own list calls included
    assert (
        value(
            before,
            "l7proxy_requests_total",
            connection="dev",
            verb="list",
            decision="deny",
            code="403",
        )
        == 1
    )
    histogram = {"connection": "dev", "verb": "list", "decision": "allow"}
    assert value(before, "l7proxy_request_duration_seconds_count", **histogram) == lists
    assert value(before, "l7proxy_request_duration_seconds_bucket", le="+Inf", **histogram) == lists
    assert value(before, "l7proxy_request_duration_seconds_sum", **histogram) > 0
    assert value(during, "l7proxy_open_streams", kind="watch") == 1
    assert value(during, "l7proxy_open_streams", kind="exec") == 1
    assert value(during, "l7proxy_requests_in_flight") == 2
    assert value(before, "l7proxy_jwks_refreshes_total", provider="dev-sso") == 1
    assert value(before, "l7proxy_jwks_refresh_failures_total", provider="dev-sso") == 0
    assert value(before, "l7proxy_config_last_reload_successful") == 1
    assert value(before, "l7proxy_config_last_reload_success_timestamp_seconds") > 0
