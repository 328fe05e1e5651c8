"""The token's format, rule by rule as EKS checks it, and its signature as STS checks it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l7proxy.upstream.eks.credentials import session_name_for
from l7proxy.upstream.eks.token import AwsCredentials, mint_token, regional_sts_endpoint
from tests.l7proxy.upstream.eks import verifier
from tests.l7proxy.upstream.eks.verifier import TokenRejected

CREDENTIALS = AwsCredentials("ASIAEXAMPLE123", "s3cr3t/key+x", "session/token+=", 0.0)
STS_HOST = "sts.us-east-1.amazonaws.com"


def mint(cluster: str = "prod", region: str = "us-east-1") -> str:
    return mint_token(
        CREDENTIALS,
        cluster_name=cluster,
        region=region,
        sts_endpoint=regional_sts_endpoint(region),
    ).value


def test_token_passes_every_eks_rule() -> None:
    params = verifier.check(mint(), sts_hosts={STS_HOST})
    assert params["version"] == "2011-06-15"
    assert params["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert params["x-amz-security-token"] == CREDENTIALS.session_token


def test_prefix_and_base64url_without_padding() -> None:
    token = mint()
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body)  # no '=', '+' or '/'
    assert len(token) <= verifier.MAX_TOKEN_BYTES


def test_url_is_a_get_on_the_regional_sts_root() -> None:
    url = urlsplit(verifier.decode(mint()))
    assert (url.scheme, url.netloc, url.path) == ("https", STS_HOST, "/")
    assert url.query.startswith("Action=GetCallerIdentity&Version=2011-06-15&")


def test_expires_is_60_and_date_is_now() -> None:
    before = time.time()
    token = mint_token(
        CREDENTIALS, cluster_name="prod", region="us-east-1", sts_endpoint=f"https://{STS_HOST}"
    )
    params = verifier.check(token.value, sts_hosts={STS_HOST})
    assert params["x-amz-expires"] == "60"
    assert verifier.signed_at(params) == token.signed_at
    assert before - 1 <= token.signed_at <= time.time()


def test_signed_headers_include_the_cluster_id() -> None:
    params = verifier.check(mint(), sts_hosts={STS_HOST})
    assert params["x-amz-signedheaders"].split(";") == ["host", "x-k8s-aws-id"]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2", "cn-north-1", "us-gov-west-1"])
def test_credential_scope_names_region_and_sts(region: str) -> None:
    host = urlsplit(regional_sts_endpoint(region)).netloc
    params = verifier.check(mint(region=region), sts_hosts={host})
    key, date, scope_region, service, terminator = params["x-amz-credential"].split("/")
    assert (key, scope_region, service, terminator) == (
        CREDENTIALS.access_key_id,
        region,
        "sts",
        "aws4_request",
    )
    assert date == params["x-amz-date"][:8]


def test_partition_hosts() -> None:
    assert regional_sts_endpoint("eu-west-1") == "https://sts.eu-west-1.amazonaws.com"
    assert regional_sts_endpoint("cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn"


def test_signature_verifies_for_its_cluster_only() -> None:
    token = mint(cluster="prod")
    secret = CREDENTIALS.secret_access_key
    assert verifier.signature_valid(token, cluster="prod", secret_key=secret)
    assert not verifier.signature_valid(token, cluster="staging", secret_key=secret)
    assert not verifier.signature_valid(token, cluster="prod", secret_key="other")


def test_sts_endpoint_override_is_used() -> None:
    token = mint_token(
        CREDENTIALS, cluster_name="prod", region="us-east-1", sts_endpoint="http://127.0.0.1:5/"
    )
    url = urlsplit(verifier.decode(token.value))
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:5", "/")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda t: t.replace("k8s-aws-v1.", "k8s-aws-v2."), "prefix"),
        (lambda t: t + "==", "base64url"),
        (lambda t: "k8s-aws-v1." + "A" * 5000, "too large"),
    ],
)
def test_verifier_rejects_what_eks_rejects(tamper: object, reason: str) -> None:
    assert callable(tamper)
    with pytest.raises(TokenRejected, match=reason):
        verifier.check(tamper(mint()), sts_hosts={STS_HOST})


def test_verifier_rejects_a_foreign_host() -> None:
    with pytest.raises(TokenRejected, match="unexpected hostname"):
        verifier.check(mint(), sts_hosts={"sts.amazonaws.com"})


def test_secrets_stay_out_of_reprs() -> None:
    token = mint_token(
        CREDENTIALS, cluster_name="prod", region="us-east-1", sts_endpoint=f"https://{STS_HOST}"
    )
    text = repr(CREDENTIALS) + repr(token)
    assert CREDENTIALS.secret_access_key not in text
    assert CREDENTIALS.session_token not in text
    assert "k8s-aws-v1" not in text


_STS_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")


@given(st.text())
def test_session_names_are_valid_for_any_username(username: str) -> None:
    name = session_name_for(username)
    assert _STS_NAME.fullmatch(name)
    assert name == session_name_for(username)


def test_session_names_are_readable_and_distinct() -> None:
    assert session_name_for("alice@example.com").startswith("alice@example.com-")
    assert session_name_for("system:serviceaccount:ci:deployer").startswith(
        "system-serviceaccount-ci-deployer-"
    )
    # Sanitising and truncating lose information; the hash keeps callers apart.
    assert session_name_for("a:b") != session_name_for("a-b")
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    assert len(session_name_for(long_a)) == 64
    assert session_name_for(long_a) != session_name_for(long_b)
