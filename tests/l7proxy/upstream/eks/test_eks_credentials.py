"""Assumed-role credentials: cached per caller, one STS call per burst, backoff, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from l7proxy.upstream.credential import UpstreamCredentialError
from l7proxy.upstream.eks.aws_bridge import AwsBridge
from l7proxy.upstream.eks.credentials import (
    REFRESH_BEFORE,
    USABLE_UNTIL_BEFORE,
    AssumedRoles,
    AwsCaller,
    RoleSession,
)
from tests.l7proxy.upstream.eks.conftest import free_port
from tests.l7proxy.upstream.eks.fakes import FakeClock, FakeSts

ROLE_ARN = "arn:aws:iam::123456789012:role/eks-readonly"
ALICE = RoleSession("readonly", ROLE_ARN, "alice-0123456789ab")
BOB = RoleSession("readonly", ROLE_ARN, "bob-0123456789ab")


@pytest.fixture
async def bridge() -> AsyncIterator[AwsBridge]:
    bridge = AwsBridge()
    try:
        yield bridge
    finally:
        await bridge.aclose()


def roles(
    bridge: AwsBridge, endpoint: str, clock: FakeClock, *, deadline: float = 5.0, **kw: object
) -> AssumedRoles:
    return AssumedRoles(
        AwsCaller(bridge, deadline=deadline),
        connection="prod-eks",
        region="us-east-1",
        sts_endpoint=endpoint,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


async def test_assumes_the_role_through_moto(bridge: AwsBridge, moto_url: str) -> None:
    cache = roles(bridge, moto_url, FakeClock())
    credentials = await cache.credentials(ALICE)
    assert credentials.access_key_id.startswith("ASIA")
    assert await cache.credentials(ALICE) is credentials  # cached
    assert await cache.credentials(BOB) != credentials  # one session per caller


async def test_a_burst_makes_one_sts_call(bridge: AwsBridge, fake_sts: FakeSts) -> None:
    fake_sts.delay = 0.2
    cache = roles(bridge, fake_sts.url, FakeClock())
    results = []

    async def ask() -> None:
        results.append(await cache.credentials(ALICE))

    async with trio.open_nursery() as nursery:
        for _ in range(25):
            nursery.start_soon(ask)
    assert len(fake_sts.requests) == 1
    assert len({id(r) for r in results}) == 1


async def test_parameters_sent_to_sts(bridge: AwsBridge, fake_sts: FakeSts) -> None:
    cache = roles(
        bridge, fake_sts.url, FakeClock(), duration=900, external_id="ext-1", source_identity=True
    )
    await cache.credentials(ALICE)
    (sent,) = fake_sts.requests
    assert sent["Action"] == "AssumeRole"
    assert sent["RoleArn"] == ROLE_ARN
    assert sent["RoleSessionName"] == ALICE.session_name
    assert sent["SourceIdentity"] == ALICE.session_name
    assert sent["ExternalId"] == "ext-1"
    assert sent["DurationSeconds"] == "900"


async def test_refreshed_before_expiry(bridge: AwsBridge, fake_sts: FakeSts) -> None:
    clock = FakeClock()
    cache = roles(bridge, fake_sts.url, clock)
    first = await cache.credentials(ALICE)
    clock.now = first.expiration - REFRESH_BEFORE - 1
    assert await cache.credentials(ALICE) is first
    clock.advance(2)
    assert await cache.credentials(ALICE) != first
    assert len(fake_sts.requests) == 2


async def test_refusal_names_role_and_code_and_backs_off(
    bridge: AwsBridge, fake_sts: FakeSts
) -> None:
    fake_sts.error = (403, "AccessDenied", "not authorized to perform: sts:AssumeRole")
    clock = FakeClock()
    cache = roles(bridge, fake_sts.url, clock)
    with pytest.raises(UpstreamCredentialError) as caught:
        await cache.credentials(ALICE)
    error = caught.value
    assert error.code == "AccessDenied"
    assert '"readonly"' in error.message and ROLE_ARN in error.message
    assert "trust policy" in error.message
    # Within the backoff window: the same answer, without asking STS again, for every caller.
    for session in (ALICE, BOB):
        with pytest.raises(UpstreamCredentialError, match="next attempt in 1s"):
            await cache.credentials(session)
    assert len(fake_sts.requests) == 1
    clock.advance(1.5)
    with pytest.raises(UpstreamCredentialError):
        await cache.credentials(ALICE)
    assert len(fake_sts.requests) == 2
    with pytest.raises(UpstreamCredentialError, match="next attempt in 2s"):
        await cache.credentials(ALICE)  # the window doubles
    fake_sts.error = None
    clock.advance(2.5)
    await cache.credentials(ALICE)
    assert len(fake_sts.requests) == 3


async def test_a_burst_against_a_throttling_sts_makes_one_call(
    bridge: AwsBridge, fake_sts: FakeSts
) -> None:
    fake_sts.error = (400, "Throttling", "Rate exceeded")
    fake_sts.delay = 0.1
    cache = roles(bridge, fake_sts.url, FakeClock())
    codes = []

    async def ask() -> None:
        try:
            await cache.credentials(ALICE)
        except UpstreamCredentialError as exc:
            codes.append(exc.code)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(ask)
    assert codes == ["Throttling"] * 20
    assert len(fake_sts.requests) == 1


async def test_held_credentials_serve_through_an_outage_until_they_expire(
    bridge: AwsBridge, fake_sts: FakeSts
) -> None:
    clock = FakeClock()
    cache = roles(bridge, fake_sts.url, clock)
    held = await cache.credentials(ALICE)
    fake_sts.error = (503, "ServiceUnavailable", "try later")
    clock.now = held.expiration - REFRESH_BEFORE + 1  # time to refresh, and STS fails
    assert await cache.credentials(ALICE) is held
    clock.now = held.expiration - USABLE_UNTIL_BEFORE + 1
    with pytest.raises(UpstreamCredentialError, match="ServiceUnavailable"):
        await cache.credentials(ALICE)


async def test_unreachable_sts(bridge: AwsBridge) -> None:
    cache = roles(bridge, f"http://127.0.0.1:{free_port()}", FakeClock())
    with pytest.raises(UpstreamCredentialError) as caught:
        await cache.credentials(ALICE)
    assert "AWS is unreachable" in caught.value.message
    assert ROLE_ARN in caught.value.message
    assert caught.value.code == "EndpointConnectionError"


async def test_slow_sts_hits_the_deadline(bridge: AwsBridge, fake_sts: FakeSts) -> None:
    fake_sts.delay = 2.0
    cache = roles(bridge, fake_sts.url, FakeClock(), deadline=0.3)
    with pytest.raises(UpstreamCredentialError, match=r"did not answer within 0\.3s") as caught:
        await cache.credentials(ALICE)
    assert caught.value.code == "Timeout"


async def test_no_gateway_credentials(
    bridge: AwsBridge, fake_sts: FakeSts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    cache = roles(bridge, fake_sts.url, FakeClock())
    with pytest.raises(UpstreamCredentialError, match="has no AWS credentials") as caught:
        await cache.credentials(ALICE)
    assert caught.value.code == "NoCredentialsError"
    assert fake_sts.requests == []


async def test_messages_carry_no_secrets(bridge: AwsBridge, fake_sts: FakeSts) -> None:
    clock = FakeClock()
    cache = roles(bridge, fake_sts.url, clock)
    held = await cache.credentials(ALICE)
    fake_sts.error = (400, "ValidationError", "bad request")
    with pytest.raises(UpstreamCredentialError) as caught:
        await cache.credentials(BOB)
    for secret in (held.secret_access_key, held.session_token, "gateway-secret"):
        assert secret not in str(caught.value)
