"""The real kubectl through the gateway to an EKS-style cluster: roles assumed in moto's STS,
tokens the sandbox verifies through that STS as EKS does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
import trustme

from l7proxy.upstream.eks.credentials import session_name_for
from tests.e2e.eks_stack import (
    ACCOUNT,
    ADMIN_ARN,
    ADMINS,
    READERS,
    READONLY_ARN,
    EksStack,
    MotoSts,
    moto_server,
    prepare_moto,
    start_eks_stack,
)
from tests.e2e.stack import kubectl, wait_for_event
from tests.e2e.test_metrics import scrape, value


def assumed(role: str, user: str) -> str:
    """The username the cluster sees: the STS ARN of the caller's session, as EKS maps it."""
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session_name_for(user)}"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def moto(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> MotoSts:
    return prepare_moto(moto_url, monkeypatch)


@pytest.fixture
async def eks(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, moto: MotoSts
) -> AsyncIterator[EksStack]:
    yield await start_eks_stack(nursery, ca, tmp_path, moto)


async def test_two_groups_reach_the_cluster_as_their_own_role_sessions(eks: EksStack) -> None:
    reader_token = eks.token("agent-7", READERS)
    reader = eks.kubeconfig(reader_token, connection="prod", name="reader")
    admin = eks.kubeconfig(eks.token("admin-1", ADMINS), connection="prod", name="admin")

    result = await kubectl(reader, "get", "pods", check=True)
    assert {line.split()[0] for line in result.stdout.decode().splitlines()[1:]} == {
        "web-1",
        "web-2",
    }
    seen = eks.cluster.seen[-1]
    assert (seen.method, seen.user) == ("GET", assumed("eks-readonly", "agent-7"))
    authorization = dict(seen.headers)[b"authorization"]
    assert authorization.startswith(b"Bearer k8s-aws-v1.")
    assert reader_token.encode() not in b"".join(value for _, value in seen.headers)

    result = await kubectl(admin, "delete", "pod", "web-2", "--wait=false", check=True)
    assert b'pod "web-2" deleted' in result.stdout
    delete = next(r for r in reversed(eks.cluster.seen) if r.method == "DELETE")
    assert delete.user == assumed("eks-admin", "admin-1")

    event = await wait_for_event(eks, lambda e: e["verb"] == "delete")
    assert (event["user"], event["policy"], event["binding_user_role"], event["status"]) == (
        "admin-1",
        "eks-admins",
        "admin",
        200,
    )
    # The reader's policy does not allow a delete: refused before any role is assumed for it.
    refused = await kubectl(reader, "delete", "pod", "web-1")
    assert "Forbidden" in refused.stderr.decode()
    assert eks.moto is not None
    assert eks.moto.assume_role_calls == [
        f"{READONLY_ARN}/{session_name_for('agent-7')}",
        f"{ADMIN_ARN}/{session_name_for('admin-1')}",
    ]


async def test_a_burst_of_requests_makes_one_assume_role_call(eks: EksStack) -> None:
    assert eks.moto is not None
    eks.moto.delay = 1.0  # every request below arrives while the first AssumeRole is in flight
    kc = eks.kubeconfig(eks.token("burst-1", READERS), connection="prod")
    results: list[bytes] = []

    async def one() -> None:
        result = await kubectl(kc, "get", "--raw", "/k8s/prod/version", check=True)
        results.append(result.stdout)

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(one)
    assert len(results) == 12
    assert all(json.loads(out)["gitVersion"].startswith("v1.") for out in results)
    assert eks.moto.sessions(session_name_for("burst-1")) == [
        f"{READONLY_ARN}/{session_name_for('burst-1')}"
    ]
    versions = [r for r in eks.cluster.seen if r.target == "/version"]
    assert len(versions) == 12
    assert {r.user for r in versions} == {assumed("eks-readonly", "burst-1")}
    # One token for the burst: the sandbox asked STS about it once (then cached it).
    assert len({dict(r.headers)[b"authorization"] for r in versions}) == 1
    assert eks.cluster.eks is not None
    assert eks.cluster.eks.sts_calls == 1
    samples = await scrape(eks)
    assert value(samples, "l7proxy_sts_calls_total", connection="prod") == 1
    assert value(samples, "l7proxy_sts_call_failures_total", connection="prod") == 0
    assert value(samples, "l7proxy_eks_token_cache_misses_total", connection="prod") == 1
    forwarded = sum(  # kubectl's discovery requests included
        count
        for (name, labels), count in samples.items()
        if name == "l7proxy_requests_total" and ("connection", "prod") in labels
    )
    assert forwarded >= 12
    assert value(samples, "l7proxy_eks_token_cache_hits_total", connection="prod") == forwarded - 1


async def test_unreachable_sts_is_service_unavailable_naming_the_role(eks: EksStack) -> None:
    kc = eks.kubeconfig(eks.token("admin-1", ADMINS), connection="nosts")
    result = await kubectl(kc, "get", "--raw", "/k8s/nosts/version")
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert stderr.startswith("Error from server (ServiceUnavailable): ")
    for part in ('connection "nosts"', 'assuming role "admin"', ADMIN_ARN, "AWS is unreachable"):
        assert part in stderr
    event = await wait_for_event(eks, lambda e: e["connection"] == "nosts")
    assert (event["decision"], event["status"], event["binding_user_role"]) == (
        "error",
        503,
        "admin",
    )
    assert not any(r.target == "/version" for r in eks.cluster.seen)


async def test_sts_refusing_the_role_is_service_unavailable_with_its_code(eks: EksStack) -> None:
    kc = eks.kubeconfig(eks.token("agent-7", READERS), connection="denied")
    result = await kubectl(kc, "get", "--raw", "/k8s/denied/version")
    stderr = result.stderr.decode()
    assert stderr.startswith("Error from server (ServiceUnavailable): ")
    for part in ('assuming role "readonly"', READONLY_ARN, "AccessDenied", "trust policy"):
        assert part in stderr
    event = await wait_for_event(eks, lambda e: e["connection"] == "denied")
    assert (event["decision"], event["status"]) == ("error", 503)
    # Backoff: a second request within the window is answered without asking STS again.
    again = await kubectl(kc, "get", "--raw", "/k8s/denied/version")
    assert "next attempt in" in again.stderr.decode()
    assert eks.denying_sts is not None
    assert len(eks.denying_sts.requests) == 1
    samples = await scrape(eks)
    assert value(samples, "l7proxy_sts_calls_total", connection="denied") == 1
    assert value(samples, "l7proxy_sts_call_failures_total", connection="denied") == 1


async def test_without_a_server_describe_cluster_supplies_it(eks: EksStack) -> None:
    """moto's DescribeCluster answers an endpoint of its own making, which nothing serves:
    what can be checked is that the gateway asked for it and then went there."""
    assert eks.moto is not None
    host = urlsplit(eks.moto.cluster_endpoint).hostname
    kc = eks.kubeconfig(eks.token("admin-1", ADMINS), connection="discovered")
    result = await kubectl(kc, "get", "--raw", "/k8s/discovered/version")
    stderr = result.stderr.decode()
    assert "cannot connect to the cluster" in stderr
    assert f"{host}:443" in stderr
    event = await wait_for_event(eks, lambda e: e["connection"] == "discovered")
    assert (event["decision"], event["status"]) == ("error", 502)
