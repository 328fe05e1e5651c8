"""The EKS connector: the caller's token as the cluster would see it, discovery, and probe."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import boto3
import pytest
import trio
import trustme

from l7proxy.config.settings import EksConnection, Limits
from l7proxy.upstream.connectors import build_connector
from l7proxy.upstream.credential import UpstreamCredentialError
from l7proxy.upstream.eks.connector import EksConnector, probe
from l7proxy.upstream.eks.credentials import session_name_for
from l7proxy.upstream.eks.token import TOKEN_REFRESH_AFTER
from l7proxy.upstream.pool import UpstreamError
from policy.decision import Decision
from policy.identity import Identity
from tests.l7proxy.upstream.eks import verifier
from tests.l7proxy.upstream.eks.conftest import AWS_ENV
from tests.l7proxy.upstream.eks.fakes import FakeClock, FakeCluster, FakeSts

ACCOUNT = "123456789012"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/eks-readonly"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/eks-admin"
ALICE = Identity(username="alice@example.com", groups=("dev",))
BOB = Identity(username="bob@example.com")
CA = trustme.CA()
CA_DATA = base64.b64encode(CA.cert_pem.bytes()).decode()
SERVER = "https://127.0.0.1:1"


def allow(role: str | None = "readonly") -> Decision:
    return Decision(True, "agents-readonly", role, "allowed", ("agents-readonly",))


def connection(sts: str, **overrides: object) -> EksConnection:
    fields: dict[str, object] = {
        "name": "prod-eks",
        "cluster_name": "prod",
        "region": "us-east-1",
        "roles": (("readonly", READONLY), ("admin", ADMIN)),
        "server": SERVER,
        "certificate_authority_data": CA_DATA,
        "sts_endpoint": sts,
    }
    fields.update(overrides)
    return EksConnection(**fields)  # type: ignore[arg-type]


@asynccontextmanager
async def connector(conn: EksConnection, **kw: object) -> AsyncIterator[EksConnector]:
    async with trio.open_nursery() as nursery:
        built = EksConnector(conn, Limits(), nursery, **kw)  # type: ignore[arg-type]
        yield built
        nursery.cancel_scope.cancel()
    thread = built._bridge._thread
    assert thread is None or not thread.is_alive()  # the bridge ended with the nursery


def bearer(headers: list[tuple[bytes, bytes]]) -> str:
    ((name, value),) = headers
    assert name == b"authorization"
    return value.decode().removeprefix("Bearer ")


@pytest.fixture(scope="session")
def moto_cluster(moto_url: str) -> Iterator[str]:
    """A cluster named "prod" in moto's EKS; yields the endpoint moto made up for it."""
    eks = boto3.client(
        "eks",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    eks.create_cluster(
        name="prod", roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={}
    )
    yield eks.describe_cluster(name="prod")["cluster"]["endpoint"]
    eks.close()


async def test_build_connector_makes_an_eks_connector(moto_url: str) -> None:
    async with trio.open_nursery() as nursery:
        built = build_connector(connection(moto_url), Limits(), nursery)
        assert isinstance(built, EksConnector)
        nursery.cancel_scope.cancel()


async def test_the_token_resolves_to_the_callers_role_session(moto_url: str) -> None:
    async with connector(connection(moto_url)) as eks:
        token = bearer(await eks.credential_headers(ALICE, allow()))
        admin_token = bearer(await eks.credential_headers(ALICE, allow("admin")))
    params = verifier.check(token, sts_hosts={urlsplit(moto_url).netloc}, scheme="http")
    assert params["x-amz-credential"].split("/")[2:4] == ["us-east-1", "sts"]
    arn = await trio.to_thread.run_sync(
        lambda: verifier.who_is(token, cluster="prod", moto_url=moto_url)
    )
    session = session_name_for(ALICE.username)
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-readonly/{session}"
    assert verifier.canonical_role_arn(arn) == READONLY
    admin_arn = await trio.to_thread.run_sync(
        lambda: verifier.who_is(admin_token, cluster="prod", moto_url=moto_url)
    )
    assert admin_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-admin/{session}"


async def test_callers_get_their_own_sessions(moto_url: str) -> None:
    async with connector(connection(moto_url)) as eks:
        alice = bearer(await eks.credential_headers(ALICE, allow()))
        bob = bearer(await eks.credential_headers(BOB, allow()))
    arn = await trio.to_thread.run_sync(
        lambda: verifier.who_is(bob, cluster="prod", moto_url=moto_url)
    )
    assert arn.endswith("/" + session_name_for(BOB.username))
    assert alice != bob


async def test_a_burst_of_requests_shares_one_sts_call_and_token(fake_sts: FakeSts) -> None:
    fake_sts.delay = 0.2
    tokens: set[str] = set()
    async with connector(connection(fake_sts.url)) as eks:

        async def request() -> None:
            tokens.add(bearer(await eks.credential_headers(ALICE, allow())))

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(request)
    assert len(fake_sts.requests) == 1
    assert len(tokens) == 1


async def test_tokens_are_reminted_after_ten_minutes(fake_sts: FakeSts) -> None:
    clock = FakeClock()
    async with connector(connection(fake_sts.url), clock=clock) as eks:
        first = bearer(await eks.credential_headers(ALICE, allow()))
        clock.advance(TOKEN_REFRESH_AFTER - 5)
        assert bearer(await eks.credential_headers(ALICE, allow())) == first
        clock.advance(10)
        await trio.sleep(1)  # X-Amz-Date has one-second resolution
        second = bearer(await eks.credential_headers(ALICE, allow()))
    assert second != first
    assert len(fake_sts.requests) == 1  # the credentials were still fresh
    params = verifier.check(second, sts_hosts={urlsplit(fake_sts.url).netloc}, scheme="http")
    assert params["x-amz-credential"].startswith("ASIAFAKE00000001/")


async def test_role_selection(fake_sts: FakeSts) -> None:
    async with connector(connection(fake_sts.url)) as eks:
        with pytest.raises(UpstreamCredentialError, match='no role "ops"') as caught:
            await eks.credential_headers(ALICE, allow("ops"))
        assert "readonly, admin" in caught.value.message
        with pytest.raises(UpstreamCredentialError, match='no role "None"'):
            await eks.credential_headers(ALICE, allow(None))
    single = connection(fake_sts.url, roles=(("readonly", READONLY),))
    async with connector(single) as eks:
        await eks.credential_headers(ALICE, allow(None))  # the only role needs no binding
    assert fake_sts.requests[0]["RoleArn"] == READONLY


async def test_discovery_fills_in_the_server(moto_url: str, moto_cluster: str) -> None:
    conn = connection(moto_url, server=None, eks_endpoint=moto_url)
    async with connector(conn) as eks:
        pool = await eks.upstream()
        assert await eks.upstream() is pool  # discovered once
    assert pool.origin.host == urlsplit(moto_cluster).hostname
    assert pool.origin.port == 443


async def test_discovered_ca_must_be_a_certificate(moto_url: str, moto_cluster: str) -> None:
    conn = connection(moto_url, certificate_authority_data=None, eks_endpoint=moto_url)
    async with connector(conn) as eks:
        with pytest.raises(UpstreamCredentialError, match="base64 PEM CA"):
            await eks.upstream()


async def test_discovery_of_an_unknown_cluster_backs_off(moto_url: str) -> None:
    conn = connection(moto_url, cluster_name="nope", server=None, eks_endpoint=moto_url)
    async with connector(conn) as eks:
        with pytest.raises(UpstreamCredentialError) as caught:
            await eks.upstream()
        assert caught.value.code == "ResourceNotFoundException"
        assert 'DescribeCluster "nope" in us-east-1' in caught.value.message
        with pytest.raises(UpstreamCredentialError, match="next attempt in"):
            await eks.upstream()


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> FakeCluster:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert("127.0.0.1").configure_cert(context)
    fake = FakeCluster(context)
    await nursery.start(fake.serve)
    return fake


async def test_probe_assumes_each_role_and_asks_version(
    moto_url: str, cluster: FakeCluster
) -> None:
    conn = connection(moto_url, server=f"https://127.0.0.1:{cluster.port}")
    report = await probe(conn)
    assert report.splitlines() == [
        f"prod-eks as readonly ({READONLY}): Kubernetes v1.31.0",
        f"prod-eks as admin ({ADMIN}): Kubernetes v1.31.0",
    ]
    token = cluster.seen[0][b"authorization"].decode().removeprefix("Bearer ")
    arn = await trio.to_thread.run_sync(
        lambda: verifier.who_is(token, cluster="prod", moto_url=moto_url)
    )
    assert arn.endswith("/eks-readonly/" + session_name_for("l7proxy-check-config"))


async def test_probe_reports_a_refusing_cluster(moto_url: str, cluster: FakeCluster) -> None:
    cluster.status = 401
    conn = connection(moto_url, server=f"https://127.0.0.1:{cluster.port}")
    with pytest.raises(UpstreamCredentialError, match="HTTP 401") as caught:
        await probe(conn)
    assert caught.value.code == "HTTP401"


async def test_probe_verifies_the_cluster_ca(moto_url: str, cluster: FakeCluster) -> None:
    other_ca = base64.b64encode(trustme.CA().cert_pem.bytes()).decode()
    conn = connection(
        moto_url,
        server=f"https://127.0.0.1:{cluster.port}",
        certificate_authority_data=other_ca,
    )
    with pytest.raises(UpstreamError, match="TLS handshake failed"):
        await probe(conn)
