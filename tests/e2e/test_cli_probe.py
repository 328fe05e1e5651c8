"""`l7proxy check-config --probe`: every connection reached with its own credential."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trustme
import yaml

from l7proxy.upstream.eks.credentials import session_name_for
from tests.e2e.eks_stack import (
    ACCOUNT,
    ADMIN_ARN,
    READONLY_ARN,
    EksStack,
    MotoSts,
    moto_server,
    prepare_moto,
    start_eks_stack,
)

L7PROXY = [sys.executable, "-m", "l7proxy"]
VERSION = r"Kubernetes v1\.\d+\.\d+"


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


async def check_config(config: Path) -> subprocess.CompletedProcess[bytes]:
    """The command as a user runs it; AWS credentials from the (test's) environment."""
    with trio.fail_after(60):
        return await trio.run_process(
            [*L7PROXY, "check-config", "--config", str(config), "--probe"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=dict(os.environ),
        )


def only(stack: EksStack, names: set[str], name: str, edit: str = "") -> Path:
    """The stack's configuration with only the connections in `names`."""
    assert stack.config_path is not None
    config = yaml.safe_load(stack.config_path.read_text())
    config["connections"] = [c for c in config["connections"] if c["name"] in names]
    config["policies"] = [p for p in config["policies"] if p["connection"] in names]
    path = stack.tmp / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def probe_lines(stdout: bytes) -> list[str]:
    lines = stdout.decode().splitlines()
    return [line.strip() for line in lines[lines.index("probe:") + 1 :]]


async def test_probe_reaches_each_connection_and_role(eks: EksStack) -> None:
    result = await check_config(only(eks, {"prod", "dev"}, "good.yaml"))
    assert result.returncode == 0, result.stderr.decode()
    lines = probe_lines(result.stdout)
    assert len(lines) == 3
    assert re.fullmatch(rf"prod as readonly \({READONLY_ARN}\): {VERSION}", lines[0])
    assert re.fullmatch(rf"prod as admin \({ADMIN_ARN}\): {VERSION}", lines[1])
    assert re.fullmatch(rf"dev: {VERSION} \(static credential\)", lines[2])
    session = session_name_for("l7proxy-check-config")
    users = {r.user for r in eks.cluster.seen if r.target == "/version"}
    assert users == {
        f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-readonly/{session}",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-admin/{session}",
        "system:serviceaccount:l7proxy:gateway",
    }
    assert b"gateway-e2e-secret" not in result.stdout + result.stderr


async def test_probe_says_what_failed_per_connection_and_exits_1(eks: EksStack) -> None:
    assert eks.config_path is not None
    (eks.tmp / "cluster-token").write_text("not-the-token\n")
    result = await check_config(eks.config_path)
    assert result.returncode == 1
    assert "error: 4 of 5 connections could not be reached" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    lines = probe_lines(result.stdout)
    assert re.fullmatch(rf"prod as readonly \({READONLY_ARN}\): {VERSION}", lines[0])
    assert re.fullmatch(rf"prod as admin \({ADMIN_ARN}\): {VERSION}", lines[1])
    nosts, denied, discovered, dev = lines[2:]
    assert nosts.startswith('nosts: FAILED [EndpointConnectionError]: assuming role "readonly"')
    assert "AWS is unreachable" in nosts
    assert denied.startswith('denied: FAILED [AccessDenied]: assuming role "readonly"')
    assert discovered.startswith("discovered: FAILED: cannot connect to the cluster: ")
    assert dev.startswith("dev: FAILED [HTTP401]: GET /version answered HTTP 401")
