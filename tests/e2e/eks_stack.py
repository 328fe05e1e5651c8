"""The end-to-end stack with EKS connections: moto's STS, IAM and EKS in this process, the
sandbox cluster verifying EKS tokens through that STS, and the gateway assuming roles there.

moto runs in-process (`ThreadedMotoServer`) so a test can see and slow down what its STS
does: `MotoSts.assume_role_calls` records every AssumeRole moto served, and `delay` holds
each one back (so a burst of requests certainly overlaps the first STS call).
"""

from __future__ import annotations

import base64
import logging
import os
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
import trio
import trustme
import yaml
from moto.server import ThreadedMotoServer
from moto.sts.models import STSBackend

from l7proxy.config.loader import load_config
from l7proxy.runtime.server import run_gateway
from l7proxy.tools.devissuer import DevIssuer
from l7proxy.tools.sandbox import SandboxCluster
from tests.e2e.stack import CLUSTER_TOKEN, ClusterListener, Stack, _closed_port, _tls_context
from tests.l7proxy.upstream.eks.fakes import FakeSts

ACCOUNT = "123456789012"
READONLY_ARN = f"arn:aws:iam::{ACCOUNT}:role/eks-readonly"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:role/eks-admin"
CLUSTER_NAME = "prod"
REGION = "us-east-1"
READERS = ("eks-readers",)
ADMINS = ("eks-admins",)

# The gateway's own AWS credentials: the environment and nothing else in botocore's chain.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAGATEWAYE2E",
    "AWS_SECRET_ACCESS_KEY": "gateway-e2e-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "1",
}
_AWS_UNSET = (
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)

_READ_ALL = [
    {"verbs": ["get", "list", "watch"], "api_groups": ["*"], "resources": ["*"]},
    {"verbs": ["get"], "non_resource_urls": ["/version", "/api", "/api/*", "/apis", "/apis/*"]},
]
_DO_ALL = [
    {"verbs": ["*"], "api_groups": ["*"], "resources": ["*"], "namespaces": ["*"]},
    {"verbs": ["*"], "non_resource_urls": ["*"]},
]


@dataclass
class MotoSts:
    """moto's server and a window on its STS."""

    url: str
    assume_role_calls: list[str] = field(default_factory=list)  # role ARN/session name
    delay: float = 0.0
    cluster_endpoint: str = ""  # what moto's DescribeCluster answers for the cluster

    def sessions(self, session_name: str) -> list[str]:
        return [call for call in self.assume_role_calls if call.endswith("/" + session_name)]


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in a thread of this process (its backends are this process's)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # it logs presigned URLs
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def prepare_moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> MotoSts:
    """moto reset to empty, then the two roles and the cluster; AssumeRole counted; the
    gateway's AWS credentials in the environment."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in _AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    reset = urllib.request.Request(moto_server + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    sts = MotoSts(moto_server)
    original = STSBackend.assume_role

    def assume_role(self: STSBackend, **kwargs: Any) -> Any:
        sts.assume_role_calls.append(f"{kwargs['role_arn']}/{kwargs['role_session_name']}")
        time.sleep(sts.delay)  # moto's request thread, not the test's
        return original(self, **kwargs)

    monkeypatch.setattr(STSBackend, "assume_role", assume_role)
    session = boto3.Session(
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    iam = session.client("iam", endpoint_url=moto_server)
    trust = '{"Version": "2012-10-17", "Statement": []}'
    for arn in (READONLY_ARN, ADMIN_ARN):
        iam.create_role(RoleName=arn.rsplit("/", 1)[1], AssumeRolePolicyDocument=trust)
    eks = session.client("eks", endpoint_url=moto_server)
    eks.create_cluster(
        name=CLUSTER_NAME, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={}
    )
    sts.cluster_endpoint = eks.describe_cluster(name=CLUSTER_NAME)["cluster"]["endpoint"]
    iam.close()
    eks.close()
    return sts


@dataclass
class EksStack(Stack):
    moto: MotoSts | None = None
    denying_sts: FakeSts | None = None
    config_path: Path | None = None


def _connection(name: str, sts: str, server: str, ca_data: str, **extra: str) -> dict[str, Any]:
    connection: dict[str, Any] = {
        "name": name,
        "type": "eks",
        "cluster_name": CLUSTER_NAME,
        "region": REGION,
        "server": server,
        "certificate_authority_data": ca_data,
        "sts_endpoint": sts,
        "roles": {"readonly": READONLY_ARN, "admin": ADMIN_ARN},
    }
    connection.update(extra)
    return connection


def _policy(name: str, groups: tuple[str, ...], connection: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "groups": list(groups),
        "connection": connection,
        "binding_user_role": role,
        "allow": _DO_ALL if role == "admin" else _READ_ALL,
    }


def eks_gateway_config(
    *,
    issuer: str,
    moto_url: str,
    sandbox_url: str,
    ca_data: str,
    denying_sts: str,
    limits: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Connections: `prod` (moto's STS, the sandbox), `nosts` (STS unreachable), `denied`
    (an STS that refuses AssumeRole), `discovered` (no server: moto's DescribeCluster), and
    the static `dev` (the sandbox with its service token)."""
    return {
        "listen": {
            "address": "127.0.0.1:0",
            "tls": {"cert_file": "gateway.pem", "key_file": "gateway-key.pem"},
        },
        "workers": 1,
        "identity": {
            "providers": [
                {
                    "name": "dev-sso",
                    "issuer": issuer,
                    "audiences": ["l7proxy"],
                    "groups_claim": "groups",
                    "ca_file": "ca.pem",
                }
            ]
        },
        "connections": [
            _connection("prod", moto_url, sandbox_url, ca_data),
            _connection("nosts", f"http://127.0.0.1:{_closed_port()}", sandbox_url, ca_data),
            _connection("denied", denying_sts, sandbox_url, ca_data),
            {
                **_connection("discovered", moto_url, sandbox_url, ca_data, eks_endpoint=moto_url),
                "server": None,
            },
            {
                "name": "dev",
                "type": "static",
                "server": sandbox_url,
                "certificate_authority_file": "ca.pem",
                "token_file": "cluster-token",
            },
        ],
        "policies": [
            _policy("eks-readers", READERS, "prod", "readonly"),
            _policy("eks-admins", ADMINS, "prod", "admin"),
            _policy("admins-nosts", ADMINS, "nosts", "admin"),
            _policy("readers-denied", READERS, "denied", "readonly"),
            _policy("admins-discovered", ADMINS, "discovered", "admin"),
        ],
        "audit": {"sink": "audit.jsonl"},
        "limits": limits or {},
    }


async def start_eks_stack(
    nursery: trio.Nursery, ca: trustme.CA, tmp: Path, moto: MotoSts
) -> EksStack:
    """The sandbox (EKS tokens verified through moto's STS), the issuer and the gateway."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "gateway.pem"))
    leaf.private_key_pem.write_to_path(str(tmp / "gateway-key.pem"))
    (tmp / "cluster-token").write_text(CLUSTER_TOKEN + "\n")

    issuer = DevIssuer()
    await nursery.start(partial(issuer.serve, ssl_context=_tls_context(leaf)))
    cluster = SandboxCluster(
        tokens={CLUSTER_TOKEN: "system:serviceaccount:l7proxy:gateway"},
        eks_sts_endpoint=moto.url,
        eks_cluster_name=CLUSTER_NAME,
    )
    listener = ClusterListener(cluster.handle, _tls_context(leaf), nursery)
    await listener.start()
    denying = FakeSts()
    denying.error = (
        403,
        "AccessDenied",
        f"User: arn:aws:iam::{ACCOUNT}:user/gateway is not authorized to perform: "
        f"sts:AssumeRole on resource: {READONLY_ARN}",
    )
    nursery.start_soon(_close_at_end, denying)
    config = eks_gateway_config(
        issuer=issuer.issuer,
        moto_url=moto.url,
        sandbox_url=f"https://127.0.0.1:{listener.port}",
        ca_data=base64.b64encode(ca.cert_pem.bytes()).decode(),
        denying_sts=denying.url,
        limits={"upstream_connect_timeout": 5},
    )
    config_path = tmp / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    bound = await nursery.start(partial(run_gateway, load_config(config_path)))
    return EksStack(
        tmp=tmp,
        ca=ca,
        issuer=issuer,
        cluster=cluster,
        cluster_listener=listener,
        gateway_url=f"https://127.0.0.1:{bound[0][1]}",
        audit_path=tmp / "audit.jsonl",
        moto=moto,
        denying_sts=denying,
        config_path=config_path,
    )


async def _close_at_end(sts: FakeSts) -> None:
    try:
        await trio.sleep_forever()
    finally:
        sts.close()
