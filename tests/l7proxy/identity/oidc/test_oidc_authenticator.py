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

from l7proxy.config.settings import Provider
from l7proxy.identity.oidc import authenticator as authenticator_module
from l7proxy.identity.oidc import jwt
from l7proxy.identity.oidc.authenticator import (
    Authenticated,
    AuthenticationError,
    Authenticator,
    ProviderUnavailable,
)
from l7proxy.tools.devissuer import RSA_KID, DevIssuer
from policy.identity import Identity
from tests.l7proxy.identity.oidc.conftest import WallClock

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
            "token issuer 'https://other.test' is not trusted"
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
    assert issuer.requests == {DISCOVERY: 1, JWKS: 2}  # discovery is still fresh


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


async def test_expired_tokens_leave_the_cache_as_new_ones_arrive(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock
) -> None:
    """A client with a fresh short-lived token every few minutes: the cache holds the live
    tokens, not every token it ever saw, up to `cache_size` (the soak mints one per call)."""
    auth = Authenticator([provider], wall_clock=wall_clock)
    for _ in range(50):
        await auth.authenticate(issuer.mint("agent", now=wall_clock.now, expires_in=60))
        wall_clock.now += 20
    assert auth.cached_tokens == 3  # minted 0, 20 and 40 s ago; the older ones expired


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


# --- kube-apiserver parity, end to end ----------------------------------------------------------


async def test_jwt_access_token_authenticates(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock)
    token = issuer.mint(
        "ci-agent", typ="at+jwt", now=wall_clock.now, extra_claims={"client_id": "ci-agent"}
    )
    assert (await auth.authenticate(token)).identity.username == "ci-agent"


async def test_several_providers_chosen_by_issuer(
    nursery: trio.Nursery,
    issuer: DevIssuer,
    provider: Provider,
    server_context: SSLContext,
    ca_file: Path,
    wall_clock: WallClock,
) -> None:
    other = DevIssuer()
    await nursery.start(partial(other.serve, ssl_context=server_context))
    second = Provider(
        name="partner",
        issuer=other.issuer,
        audiences=("gateway",),
        username_prefix="partner:",
        groups_prefix="partner:",
        ca_file=ca_file,
    )
    auth = Authenticator([provider, second], wall_clock=wall_clock)
    mine = await auth.authenticate(issuer.mint("alice", groups=["dev"], now=wall_clock.now))
    theirs = await auth.authenticate(
        other.mint("bob", groups=["dev"], audience="gateway", now=wall_clock.now)
    )
    assert (mine.identity.username, mine.identity.groups, mine.identity.provider) == (
        "alice",
        ("dev",),
        "dev",
    )
    assert (theirs.identity.username, theirs.identity.groups, theirs.identity.provider) == (
        "partner:bob",
        ("partner:dev",),
        "partner",
    )
    # Each provider's audience is its own: a token for one is not good at the other.
    with pytest.raises(AuthenticationError, match="audience does not include any of: gateway"):
        await auth.authenticate(other.mint("bob", now=wall_clock.now))


async def test_token_claiming_another_issuer_is_checked_with_that_issuers_keys(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock
) -> None:
    impostor = DevIssuer(issuer.issuer)  # mints `iss` of the trusted issuer with its own keys
    auth = Authenticator([provider], wall_clock=wall_clock)
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        await auth.authenticate(impostor.mint("admin", now=wall_clock.now))


async def test_identity_carries_uid_and_extra(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock
) -> None:
    mapped = replace(
        provider,
        uid_claim="oid",
        extra_claims=(("example.com/tenant", "tenant"), ("example.com/scopes", "scp")),
    )
    auth = Authenticator([mapped], wall_clock=wall_clock)
    token = issuer.mint(
        "alice",
        now=wall_clock.now,
        extra_claims={"oid": "0f1e", "tenant": "acme", "scp": ["read", "write"]},
    )
    identity = (await auth.authenticate(token)).identity
    assert identity.uid == "0f1e"
    assert identity.extra == (
        ("example.com/tenant", ("acme",)),
        ("example.com/scopes", ("read", "write")),
    )


async def test_new_refusals_are_authentication_errors_saying_why(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock
) -> None:
    strict = replace(provider, authorized_party="kubectl", max_token_age=600)
    auth = Authenticator([strict], wall_clock=wall_clock)
    now = wall_clock.now
    azp = {"azp": "kubectl"}
    cases = {
        issuer.mint("a", now=now, typ="dpop+jwt", extra_claims=azp): "token type 'dpop+jwt'",
        issuer.mint("a", now=now): "token has no authorized party (azp)",
        issuer.mint("a", now=now - 700, extra_claims=azp): "issued more than 600s ago",
        issuer.mint("system:admin", now=now, extra_claims=azp): "reserved 'system:' prefix",
        issuer.mint(
            "a",
            now=now,
            extra_claims={
                **azp,
                "groups": None,
                "_claim_names": {"groups": "src1"},
                "_claim_sources": {"src1": {"endpoint": "https://graph.example/groups"}},
            },
        ): "distributed claims",
    }
    for token, reason in cases.items():
        with pytest.raises(AuthenticationError) as info:
            await auth.authenticate(token)
        assert reason in info.value.reason
        assert not isinstance(info.value, ProviderUnavailable)
        assert token not in info.value.reason


async def test_max_token_age_ends_a_cached_token_early(
    issuer: DevIssuer, provider: Provider, wall_clock: WallClock, verifications: list[str]
) -> None:
    auth = Authenticator([replace(provider, max_token_age=300)], wall_clock=wall_clock, leeway=0)
    token = issuer.mint("alice", now=wall_clock.now, expires_in=3600)
    result = await auth.authenticate(token)
    assert result.expires_at == wall_clock.now + 300  # long streams are cut there too
    wall_clock.now += 299
    await auth.authenticate(token)
    assert len(verifications) == 1
    wall_clock.now += 2
    with pytest.raises(AuthenticationError, match="max_token_age"):
        await auth.authenticate(token)


async def test_removed_key_stops_verifying_after_a_forced_refresh(
    issuer: DevIssuer,
    provider: Provider,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
    verifications: list[str],
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock)
    old = issuer.mint("alice", now=wall_clock.now)
    await auth.authenticate(old)
    await auth.authenticate(old)
    assert len(verifications) == 1  # cached
    new_kid = issuer.rotate(drop_old=True)
    mock_clock.jump(11)
    # A token signed with the new key forces the refresh (unknown kid)...
    bob = await auth.authenticate(issuer.mint("bob", now=wall_clock.now))
    assert bob.identity.username == "bob"
    # ...after which the cached token signed with the dropped key is verified again: refused.
    with pytest.raises(AuthenticationError, match=f"unknown key '{RSA_KID}'"):
        await auth.authenticate(old)
    assert issuer.requests == {DISCOVERY: 1, JWKS: 2}
    assert (await auth.authenticate(issuer.mint("carol", now=wall_clock.now))).identity.uid
    assert new_kid in str(issuer.jwks())


async def test_removed_key_stops_verifying_once_the_keys_expire(
    issuer: DevIssuer,
    provider: Provider,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
) -> None:
    issuer.cache_control = "max-age=600"
    auth = Authenticator([provider], wall_clock=wall_clock)
    old = issuer.mint("alice", now=wall_clock.now)
    await auth.authenticate(old)
    issuer.rotate(drop_old=True)
    mock_clock.jump(599)
    assert (await auth.authenticate(old)).identity.username == "alice"
    mock_clock.jump(2)  # the keys expire; even a cached token makes them refresh
    with pytest.raises(AuthenticationError, match=f"unknown key '{RSA_KID}'"):
        await auth.authenticate(old)


async def test_cached_tokens_survive_a_refresh_that_changes_nothing(
    issuer: DevIssuer,
    provider: Provider,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
    verifications: list[str],
) -> None:
    auth = Authenticator([provider], wall_clock=wall_clock, max_key_age=600)
    token = issuer.mint("alice", now=wall_clock.now)
    await auth.authenticate(token)
    mock_clock.jump(601)
    await auth.authenticate(token)
    assert issuer.requests[JWKS] == 2
    assert len(verifications) == 1


async def test_outage_keeps_cached_and_new_tokens_working(
    server_context: SSLContext,
    ca_file: Path,
    wall_clock: WallClock,
    mock_clock: trio.testing.MockClock,
    verifications: list[str],
) -> None:
    dev = DevIssuer()
    async with trio.open_nursery() as server:
        await server.start(partial(dev.serve, ssl_context=server_context))
        provider = Provider(name="dev", issuer=dev.issuer, audiences=("l7proxy",), ca_file=ca_file)
        auth = Authenticator([provider], wall_clock=wall_clock)
        token = dev.mint("before", now=wall_clock.now)
        await auth.authenticate(token)
        server.cancel_scope.cancel()
    mock_clock.jump(86400 * 2)  # far past any cache lifetime
    assert (await auth.authenticate(token)).identity.username == "before"
    assert len(verifications) == 1
    new = await auth.authenticate(dev.mint("new", now=wall_clock.now))
    assert new.identity.username == "new"
