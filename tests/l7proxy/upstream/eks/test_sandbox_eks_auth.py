"""The sandbox's EKS token verifier: EKS's rules on the token's form, then moto's STS says who."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlsplit

import boto3
import pytest

from l7proxy.tools.sandbox import SandboxCluster
from l7proxy.tools.sandbox.eks_auth import (
    CACHE_TTL,
    EksTokenVerifier,
    TokenRejected,
    caller_arn,
    check_token,
)
from l7proxy.upstream.eks.token import AwsCredentials, mint_token
from tests.l7proxy.tools.sandbox.sandbox_fakes import FakeExchange
from tests.l7proxy.upstream.eks.conftest import AWS_ENV, free_port
from tests.l7proxy.upstream.eks.fakes import FakeClock

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/eks-readonly"
STS = "http://127.0.0.1:4566"
NOW = time.time()
DATE = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(NOW))
GOOD_QUERY = (
    "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential=ASIAX%2F20240101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date={DATE}"
    "&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=abc"
)


def token_for(url: str) -> str:
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def assumed(moto_url: str, session: str) -> AwsCredentials:
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    found = sts.assume_role(RoleArn=ROLE, RoleSessionName=session)["Credentials"]
    sts.close()
    return AwsCredentials(
        found["AccessKeyId"],
        found["SecretAccessKey"],
        found["SessionToken"],
        found["Expiration"].timestamp(),
    )


def mint(moto_url: str, session: str = "alice", cluster: str = "prod") -> str:
    credentials = assumed(moto_url, session)
    return mint_token(
        credentials, cluster_name=cluster, region="us-east-1", sts_endpoint=moto_url
    ).value


def test_a_well_formed_token_passes() -> None:
    presigned = check_token(token_for(f"{STS}/?{GOOD_QUERY}"), sts_endpoint=STS, now=NOW)
    assert presigned.params["action"] == "GetCallerIdentity"
    assert presigned.signed_at == pytest.approx(NOW, abs=1)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"https://127.0.0.1:4566/?{GOOD_QUERY}", "unexpected scheme 'https'"),
        (f"http://127.0.0.1:9999/?{GOOD_QUERY}", "unexpected hostname '127.0.0.1:9999'"),
        (f"{STS}/x?{GOOD_QUERY}", "unexpected path"),
        (f"{STS}/?{GOOD_QUERY}&Foo=1", "non-whitelisted query parameter 'Foo'"),
        (f"{STS}/?{GOOD_QUERY}&action=GetCallerIdentity", "duplicate query parameter"),
        (f"{STS}/?{GOOD_QUERY.replace('GetCallerIdentity', 'AssumeRole')}", "unexpected action"),
        (f"{STS}/?{GOOD_QUERY.replace('%3Bx-k8s-aws-id', '')}", "did not sign the x-k8s-aws-id"),
        (f"{STS}/?{GOOD_QUERY.replace('Expires=60', 'Expires=901')}", "X-Amz-Expires"),
        (f"{STS}/?{GOOD_QUERY.replace('Expires=60', 'Expires=-1')}", "X-Amz-Expires"),
        (f"{STS}/?{GOOD_QUERY.replace(DATE, '')}", "X-Amz-Date parameter must be present"),
        (f"{STS}/?{GOOD_QUERY.replace(DATE, 'yesterday')}", "error parsing X-Amz-Date"),
        (f"{STS}/?{GOOD_QUERY.replace(DATE, '20200101T000000Z')}", "15 minute expiration"),
    ],
)
def test_eks_rules_on_the_tokens_form(url: str, message: str) -> None:
    with pytest.raises(TokenRejected, match=message.replace("(", r"\(")):
        check_token(token_for(url), sts_endpoint=STS, now=NOW)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("k8s-aws-v2.abc", "missing expected 'k8s-aws-v1.' prefix"),
        ("k8s-aws-v1.abc=", "not base64url"),
        ("k8s-aws-v1." + "A" * 5000, "too large"),
    ],
)
def test_token_encoding(token: str, message: str) -> None:
    with pytest.raises(TokenRejected, match=message):
        check_token(token, sts_endpoint=STS, now=NOW)


def test_caller_arn_reads_json_and_xml_and_refuses_other_principals() -> None:
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-readonly/alice"
    body = json.dumps({"GetCallerIdentityResponse": {"GetCallerIdentityResult": {"Arn": arn}}})
    assert caller_arn(body.encode()) == arn
    xml = f'<R xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Arn>{arn}</Arn></R>'.encode()
    assert caller_arn(xml) == arn
    with pytest.raises(TokenRejected, match="unexpected principal"):
        caller_arn(b"<R><Arn>arn:aws:iam::123456789012:root</Arn></R>")
    with pytest.raises(TokenRejected, match="other than a caller identity"):
        caller_arn(b"<not xml")


async def test_moto_says_whose_token_it_is_and_the_answer_is_cached(moto_url: str) -> None:
    clock = FakeClock()
    verifier = EksTokenVerifier(sts_endpoint=moto_url, cluster_name="prod", clock=clock)
    token = mint(moto_url, "alice-1234")
    expected = f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-readonly/alice-1234"
    assert await verifier.username(token) == expected
    assert await verifier.username(token) == expected
    assert verifier.sts_calls == 1
    clock.advance(CACHE_TTL + 1)
    assert await verifier.username(token) == expected
    assert verifier.sts_calls == 2


async def test_a_token_for_another_sts_is_refused_without_asking(moto_url: str) -> None:
    verifier = EksTokenVerifier(sts_endpoint="http://127.0.0.1:1", cluster_name="prod")
    with pytest.raises(TokenRejected, match="unexpected hostname"):
        await verifier.username(mint(moto_url))
    assert verifier.sts_calls == 0
    assert "unexpected hostname" in verifier.rejections[-1]


async def test_an_unreachable_sts_refuses_the_token(moto_url: str) -> None:
    port = free_port()
    token = mint(moto_url).removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    moved = url.replace(urlsplit(moto_url).netloc, f"127.0.0.1:{port}")
    verifier = EksTokenVerifier(sts_endpoint=f"http://127.0.0.1:{port}", cluster_name="prod")
    with pytest.raises(TokenRejected, match="error during GET to STS"):
        await verifier.username(token_for(moved))


async def test_the_sandbox_authenticates_eks_tokens_as_their_sts_arn(moto_url: str) -> None:
    cluster = SandboxCluster(
        tokens={"static": "gateway"}, eks_sts_endpoint=moto_url, eks_cluster_name="prod"
    )
    token = mint(moto_url, "bob-42")
    for bearer in (token, "static", "k8s-aws-v1.bm9wZQ"):
        headers = [(b"authorization", f"Bearer {bearer}".encode())]
        await cluster.handle(FakeExchange("GET", "/api/v1/namespaces/default/pods", headers))
    eks, static, bad = (seen.user for seen in list(cluster.seen))
    assert eks == f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-readonly/bob-42"
    assert (static, bad) == ("gateway", None)
    assert cluster.eks is not None
    assert "unexpected scheme" in cluster.eks.rejections[-1]
