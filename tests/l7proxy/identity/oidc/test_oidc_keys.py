"""`ProviderKeys` against a DevIssuer over real TLS: discovery, trust, single flight, outages."""

from __future__ import annotations

import ssl
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from l7proxy.config.settings import Provider
from l7proxy.identity.oidc import keys as keys_module
from l7proxy.identity.oidc.fetch import FetchError
from l7proxy.identity.oidc.jwt import KeySet
from l7proxy.identity.oidc.keys import ProviderKeys, cache_lifetime
from l7proxy.tools.devissuer import EC_KID, RSA_KID, DevIssuer

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/jwks"


def kids(keys: KeySet) -> set[str | None]:
    return {key.kid for key in keys.keys}


async def test_discovers_fetches_and_caches(issuer: DevIssuer, provider: Provider) -> None:
    provider_keys = ProviderKeys(provider)
    assert kids(await provider_keys.keys()) == {RSA_KID, EC_KID}
    await provider_keys.keys()
    assert issuer.requests == {DISCOVERY: 1, JWKS: 1}


async def test_ca_file_is_honoured(issuer: DevIssuer, provider: Provider, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong))
    for ca_file in (wrong, None):  # None: the system store, which does not know the test CA
        with pytest.raises(FetchError, match="certificate verify failed"):
            await ProviderKeys(replace(provider, ca_file=ca_file)).keys()
    assert issuer.requests == {}


async def test_discovery_must_name_the_configured_issuer(
    nursery: trio.Nursery, server_context: ssl.SSLContext, ca_file: Path
) -> None:
    impostor = DevIssuer("https://elsewhere.test")
    port = await nursery.start(partial(impostor.serve, ssl_context=server_context))
    provider = Provider(
        name="dev", issuer=f"https://127.0.0.1:{port}", audiences=("l7proxy",), ca_file=ca_file
    )
    with pytest.raises(FetchError, match="names another issuer"):
        await ProviderKeys(provider).keys()
    assert impostor.requests == {DISCOVERY: 1}


async def test_unknown_kid_refresh_is_single_flight(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    provider_keys = ProviderKeys(provider)
    await provider_keys.keys()
    new_kid = issuer.rotate()
    mock_clock.jump(11)
    seen: list[KeySet] = []

    async def refresh() -> None:
        seen.append(await provider_keys.refresh_for_unknown_kid())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(refresh)
    assert len(seen) == 20
    assert all(new_kid in kids(keys) for keys in seen)
    assert issuer.requests == {DISCOVERY: 1, JWKS: 2}  # discovery is still fresh


async def test_refresh_is_rate_limited(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    provider_keys = ProviderKeys(provider, min_refresh_interval=10)
    await provider_keys.keys()
    new_kid = issuer.rotate()
    assert new_kid not in kids(await provider_keys.refresh_for_unknown_kid())
    mock_clock.jump(9.9)
    assert new_kid not in kids(await provider_keys.refresh_for_unknown_kid())
    assert issuer.requests[JWKS] == 1
    mock_clock.jump(0.2)
    assert new_kid in kids(await provider_keys.refresh_for_unknown_kid())
    assert issuer.requests[JWKS] == 2


async def test_keys_are_refetched_after_max_age(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    provider_keys = ProviderKeys(provider, max_age=60)
    await provider_keys.keys()
    issuer.rotate(drop_old=True)
    mock_clock.jump(59)
    assert RSA_KID in kids(await provider_keys.keys())
    mock_clock.jump(2)
    assert RSA_KID not in kids(await provider_keys.keys())
    assert issuer.requests[JWKS] == 2


async def test_aged_keys_answer_while_one_task_refetches(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    provider_keys = ProviderKeys(provider, max_age=60)
    await provider_keys.keys()
    new_kid = issuer.rotate()
    mock_clock.jump(61)
    seen: list[KeySet] = []

    async def get() -> None:
        seen.append(await provider_keys.keys())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(get)
    assert sum(new_kid in kids(keys) for keys in seen) == 1
    assert issuer.requests[JWKS] == 2


async def test_provider_down_keeps_last_good_keys(
    server_context: ssl.SSLContext, ca_file: Path, mock_clock: trio.testing.MockClock
) -> None:
    dev = DevIssuer()
    async with trio.open_nursery() as server:
        await server.start(partial(dev.serve, ssl_context=server_context))
        provider = Provider(name="dev", issuer=dev.issuer, audiences=("l7proxy",), ca_file=ca_file)
        provider_keys = ProviderKeys(provider, max_age=60)
        good = await provider_keys.keys()
        server.cancel_scope.cancel()
    mock_clock.jump(61)
    assert await provider_keys.keys() is good
    mock_clock.jump(11)
    assert await provider_keys.refresh_for_unknown_kid() is good


async def test_failure_without_keys_is_remembered_until_the_interval_passes(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    broken = replace(provider, issuer=issuer.issuer + "/missing")
    provider_keys = ProviderKeys(broken)
    for _ in range(3):
        with pytest.raises(FetchError, match="answered HTTP 404"):
            await provider_keys.keys()
    assert issuer.requests == {"/missing" + DISCOVERY: 1}
    mock_clock.jump(11)
    with pytest.raises(FetchError, match="answered HTTP 404"):
        await provider_keys.keys()
    assert issuer.requests == {"/missing" + DISCOVERY: 2}


async def test_cancelled_fetch_lets_the_next_caller_fetch(
    nursery: trio.Nursery, ca_file: Path
) -> None:
    connections = 0

    async def hang(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, hang, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    provider = Provider(
        name="dev", issuer=f"https://127.0.0.1:{port}", audiences=("l7proxy",), ca_file=ca_file
    )
    provider_keys = ProviderKeys(provider, min_refresh_interval=3600)
    for attempt in (1, 2):
        with trio.move_on_after(0.2):  # the caller goes away mid-fetch
            await provider_keys.keys()
        assert connections == attempt  # a cancelled attempt neither counts nor rate-limits


# --- cache lifetimes from the provider's headers ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({}, 3600),
        ({"cache-control": "public, max-age=600"}, 600),
        ({"cache-control": 'max-age="900"'}, 900),
        ({"cache-control": "Max-Age=1200, must-revalidate"}, 1200),
        ({"cache-control": "max-age=600", "age": "100"}, 500),
        ({"cache-control": "max-age=5"}, 300),  # bounded below
        ({"cache-control": "max-age=31536000"}, 86400),  # bounded above
        ({"cache-control": "no-store"}, 300),
        ({"cache-control": "no-cache, max-age=600"}, 300),
        ({"cache-control": "max-age=soon"}, 3600),
        ({"cache-control": "max-age=-1"}, 3600),
    ],
)
def test_cache_lifetime(headers: dict[str, str], lifetime: float) -> None:
    assert cache_lifetime(headers, default=3600, minimum=300, maximum=86400) == lifetime


async def test_keys_follow_the_jwks_cache_headers(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    issuer.cache_control = "public, max-age=600"
    provider_keys = ProviderKeys(provider, max_age=3600)
    await provider_keys.keys()
    issuer.rotate(drop_old=True)
    mock_clock.jump(599)
    assert RSA_KID in kids(await provider_keys.keys())
    mock_clock.jump(2)
    assert RSA_KID not in kids(await provider_keys.keys())
    assert issuer.requests == {DISCOVERY: 2, JWKS: 2}


@pytest.mark.parametrize(("cache_control", "bound"), [("max-age=1", 300), ("no-store", 300)])
async def test_cache_headers_cannot_force_a_fetch_per_token(
    issuer: DevIssuer,
    provider: Provider,
    mock_clock: trio.testing.MockClock,
    cache_control: str,
    bound: float,
) -> None:
    issuer.cache_control = cache_control
    provider_keys = ProviderKeys(provider)
    for _ in range(5):
        await provider_keys.keys()
        mock_clock.jump(bound / 10)
    assert issuer.requests[JWKS] == 1
    mock_clock.jump(bound)
    await provider_keys.keys()
    assert issuer.requests[JWKS] == 2


async def test_cache_headers_cannot_keep_keys_beyond_a_day(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    issuer.cache_control = "max-age=31536000, immutable"
    provider_keys = ProviderKeys(provider)
    await provider_keys.keys()
    issuer.rotate(drop_old=True)
    mock_clock.jump(86399)
    assert RSA_KID in kids(await provider_keys.keys())
    mock_clock.jump(2)
    assert RSA_KID not in kids(await provider_keys.keys())


async def test_unchanged_keys_keep_their_identity(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    provider_keys = ProviderKeys(provider, max_age=60)
    first = await provider_keys.keys()
    mock_clock.jump(61)
    assert await provider_keys.keys() is first  # refetched, equal: the same object
    assert issuer.requests[JWKS] == 2
    issuer.rotate()
    mock_clock.jump(61)
    assert await provider_keys.keys() is not first


async def test_removed_key_is_gone_after_a_forced_refresh(
    issuer: DevIssuer, provider: Provider, mock_clock: trio.testing.MockClock
) -> None:
    provider_keys = ProviderKeys(provider)
    assert provider_keys.cached is None
    await provider_keys.keys()
    new_kid = issuer.rotate(drop_old=True)
    mock_clock.jump(11)
    keys = await provider_keys.refresh_for_unknown_kid()
    assert kids(keys) == {new_kid, EC_KID}
    assert provider_keys.cached is keys


async def test_failed_jwks_fetch_rediscovers_next_time(
    monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock
) -> None:
    """A provider that moved its JWKS: the stale jwks_uri fails once, then discovery is redone."""
    dev = DevIssuer("https://idp.test")
    jwks_uri = "https://idp.test/jwks"
    fetched: list[str] = []

    async def fetch(url: str, **_: object) -> tuple[dict[str, object], dict[str, str]]:
        fetched.append(url)
        if url.endswith("/openid-configuration"):
            return {"issuer": dev.issuer, "jwks_uri": jwks_uri}, {}
        if url != jwks_uri:
            raise FetchError(f"{url} answered HTTP 404")
        return dev.jwks(), {}

    monkeypatch.setattr(keys_module, "fetch_json", fetch)
    provider_keys = ProviderKeys(Provider(name="d", issuer=dev.issuer, audiences=("a",)))
    good = await provider_keys.keys()
    jwks_uri = "https://idp.test/v2/jwks"
    mock_clock.jump(11)
    assert await provider_keys.refresh_for_unknown_kid() is good  # failed: old keys serve
    mock_clock.jump(11)
    await provider_keys.refresh_for_unknown_kid()
    discovery = "https://idp.test/.well-known/openid-configuration"
    assert fetched == [
        discovery,
        "https://idp.test/jwks",
        "https://idp.test/jwks",
        discovery,
        "https://idp.test/v2/jwks",
    ]
