"""`Authenticator` end to end against a DevIssuer over real TLS."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from ssl import SSLContext
from typing import Any

import pytest
import trio
import trio.testing

from l7proxy.devissuer import DevIssuer
from l7proxy.oidc import authenticator as authenticator_module
from l7proxy.oidc import jwt
from l7proxy.oidc.authenticator import (
    Authenticated,
    AuthenticationError,
    Authenticator,
    ProviderUnavailable,
)
from l7proxy.settings import Provider
from policy.identity import Identity
from tests.l7proxy.oidc.conftest import WallClock

JWKS = "/jwks"
DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts signature verifications by wrapping the authenticator's `verify`."""
    calls: list[str] = []
    original = jwt.verify

    def counting(token: str, **kwargs: Any) -> Mapping[str, object]:
        calls.append(token)
        return original(token, **kwargs)

    monkeypatch.setattr(authenticator_module, "verify", counting)
    return calls


async def test_authenticates(issuer: DevIssuer, provider: Provider, wall_clock: WallClock) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock)
    token = issuer.mint("alice", groups=["dev"], now=wall_clock.now, expires_in=600)
    assert await auth.authenticate(token) == Authenticated(
        identity=Identity(username="alice", groups=("dev",), uid="alice", provider="dev"),
        expires_at=wall_clock.now + 600,
    )


async def test_rejections_say_why_without_the_token(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock)
    cases = {
        DevIssuer("https://other.test").mint("a", now=wall_clock.now): (
            "token issuer is not trusted"
        ),
        issuer.mint("a", now=wall_clock.now - 7200): "token has expired",
        issuer.mint("a", now=wall_clock.now, audience="other"): (
            "token audience does not include any of: l7proxy"
        ),
        "not.a.token": "malformed token",
        "tökén": "malformed token",
    }
    for token, reason in cases.items():
        with pytest.raises(AuthenticationError) as info:
            await auth.authenticate(token)
        assert info.value.reason == reason
        assert not isinstance(info.value, ProviderUnavailable)


async def test_unknown_kid_refreshes_once_for_twenty_callers(
    issuer: DevIssuer,
    provider: Provider,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock)
    await auth.authenticate(issuer.mint("warm-up", now=wall_clock.now))
    issuer.rotate()
    mock_clock.jump(11)
    tokens = [issuer.mint(f"user{i}", now=wall_clock.now) for i in range(20)]
    users: list[str] = []

    async def call(token: str) -> None:
        users.append((await auth.authenticate(token)).identity.username)

    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(call, token)
    assert sorted(users) == sorted(f"user{i}" for i in range(20))
    assert issuer.requests == {DISCOVERY: 2, JWKS: 2}


async def test_unknown_kid_refresh_is_rate_limited(
    issuer: DevIssuer,
    provider: Provider,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock, min_refresh_interval=10)
    await auth.authenticate(issuer.mint("warm-up", now=wall_clock.now))
    new_kid = issuer.rotate()
    token = issuer.mint("alice", now=wall_clock.now)
    for _ in range(5):
        with pytest.raises(AuthenticationError, match=f"unknown key '{new_kid}'"):
            await auth.authenticate(token)
    assert issuer.requests[JWKS] == 1
    mock_clock.jump(11)
    assert (await auth.authenticate(token)).identity.username == "alice"
    assert issuer.requests[JWKS] == 2


async def test_cache_hit_skips_verification(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock, verifications: list[str]
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock)
    token = issuer.mint("alice", now=wall_clock.now)
    first = await auth.authenticate(token)
    assert await auth.authenticate(token) == first
    assert len(verifications) == 1


async def test_expired_cache_entry_is_verified_again(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock, verifications: list[str]
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock, leeway=30)
    token = issuer.mint("alice", now=wall_clock.now, expires_in=60)
    await auth.authenticate(token)
    wall_clock.now += 61  # past exp, inside the leeway: verified again, accepted, not cached
    await auth.authenticate(token)
    await auth.authenticate(token)
    assert len(verifications) == 3
    wall_clock.now += 30
    with pytest.raises(AuthenticationError, match="token has expired"):
        await auth.authenticate(token)


async def test_cache_is_a_bounded_lru(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock, verifications: list[str]
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock, cache_size=2)
    one, two, three = (issuer.mint(name, now=wall_clock.now) for name in ("1", "2", "3"))
    for token in (one, two, one, three):  # `one` was used last, so `three` evicts `two`
        await auth.authenticate(token)
    assert verifications == [one, two, three]
    await auth.authenticate(one)
    await auth.authenticate(two)
    assert verifications == [one, two, three, two]


async def test_provider_down_keeps_last_good_keys(
    server_context: SSLContext,
    ca_file: Path,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
) -> None:
    dev = DevIssuer()
    async with trio.open_nursery() as server:
        await server.start(partial(dev.serve, ssl_context=server_context))
        provider = Provider(name="dev", issuer=dev.issuer, audiences=("l7proxy",), ca_file=ca_file)
        auth = Authenticator([provider], wall_clock=wall_clock, max_key_age=60)
        await auth.authenticate(dev.mint("before", now=wall_clock.now))
        server.cancel_scope.cancel()
    mock_clock.jump(120)
    after = await auth.authenticate(dev.mint("after", now=wall_clock.now))
    assert after.identity.username == "after"


async def test_provider_unreachable_without_keys(ca_file: Path, wall_clock: WallClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        issuer = f"https://127.0.0.1:{sock.getsockname()[1]}"
    provider = Provider(name="dev", issuer=issuer, audiences=("l7proxy",), ca_file=ca_file)
    auth = Authenticator([provider], wall_clock=wall_clock)
    token = DevIssuer(issuer).mint("alice", now=wall_clock.now)
    with pytest.raises(ProviderUnavailable) as info:
        await auth.authenticate(token)
    assert info.value.reason.startswith(f"cannot fetch signing keys from issuer {issuer}: ")


def test_duplicate_issuers_are_refused(wall_clock: WallClock) -> None:
    provider = Provider(name="a", issuer="https://idp.test", audiences=("l7proxy",))
    with pytest.raises(ValueError, match="share the issuer"):
        Authenticator([provider, replace(provider, name="b")], wall_clock=wall_clock)
