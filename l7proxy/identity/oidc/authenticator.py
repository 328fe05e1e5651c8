"""Bearer token → `Authenticated`: choose the provider, get its keys, verify, cache the result."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from l7proxy.config.settings import Provider
from l7proxy.identity.oidc.fetch import FetchError
from l7proxy.identity.oidc.jwt import (
    KeySet,
    TokenRejected,
    UnknownKey,
    claims_to_identity,
    peek_issuer,
    valid_until,
    verify,
)
from l7proxy.identity.oidc.keys import (
    MAX_CACHE_TTL,
    MIN_CACHE_TTL,
    KeyFetchMetrics,
    ProviderKeys,
)
from policy.identity import Identity


class AuthenticationError(Exception):
    """The caller is not authenticated; `reason` goes into the 401 and never holds the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderUnavailable(AuthenticationError):
    """The token may be fine, but its issuer's keys could not be fetched (and none are cached)."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A verified caller and the moment its token expires: long streams are cut there."""

    identity: Identity
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Verified:
    """A cached verification and the key set it was checked against."""

    result: Authenticated
    provider_keys: ProviderKeys
    key_set: KeySet


class Authenticator:
    """Verifies bearer tokens against the configured providers, chosen by the token's `iss`.

    Verified results are cached by the token's SHA-256 until the token stops being valid, in
    a bounded LRU, so a busy client pays for one signature check per token, not per request.
    A cached result holds only while its provider's key set is the one it was verified with:
    once a refresh drops a key, tokens it signed are verified again, and refused.
    """

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        wall_clock: Callable[[], float] = time.time,
        cache_size: int = 10000,
        leeway: float = 30.0,
        fetch_timeout: float = 10.0,
        min_refresh_interval: float = 10.0,
        max_key_age: float = 3600.0,
        min_key_ttl: float = MIN_CACHE_TTL,
        max_key_ttl: float = MAX_CACHE_TTL,
        metrics: KeyFetchMetrics | None = None,
    ) -> None:
        self._providers: dict[str, ProviderKeys] = {}
        for provider in providers:
            if provider.issuer in self._providers:
                raise ValueError(f"two providers share the issuer {provider.issuer}")
            self._providers[provider.issuer] = ProviderKeys(
                provider,
                timeout=fetch_timeout,
                min_refresh_interval=min_refresh_interval,
                max_age=max_key_age,
                min_ttl=min_key_ttl,
                max_ttl=max_key_ttl,
                metrics=metrics,
            )
        self._wall_clock = wall_clock
        self._cache_size = cache_size
        self._leeway = leeway
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()

    @property
    def issuers(self) -> tuple[str, ...]:
        """The configured providers' issuers, in the configuration's order."""
        return tuple(self._providers)

    @property
    def keys_fetched(self) -> bool:
        """Every provider's signing keys have been fetched at least once (readiness)."""
        return all(keys.cached is not None for keys in self._providers.values())

    async def fetch_keys(self) -> None:
        """Fetch each provider's keys that are still missing; a failure is left for the
        next call (the reason stays with the provider and answers its requests)."""
        for provider_keys in self._providers.values():
            if provider_keys.cached is None:
                with contextlib.suppress(ProviderUnavailable):
                    await self._key_set(provider_keys, refresh=False)

    async def authenticate(self, token: str) -> Authenticated:
        """The verified caller behind `token`, or `AuthenticationError` saying why not."""
        if not token.isascii():
            raise AuthenticationError("malformed token")
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._cache.pop(digest, None)
        if cached is not None and cached.result.expires_at > self._wall_clock():
            # Also lets expired keys be refetched while every token in use is cached.
            keys = await self._key_set(cached.provider_keys, refresh=False)
            if keys is cached.key_set:
                self._cache[digest] = cached
                return cached.result
        try:
            verified = await self._verify(token)
        except TokenRejected as exc:
            raise AuthenticationError(exc.reason) from exc
        if verified.result.expires_at > self._wall_clock():  # not cached inside the leeway
            self._cache[digest] = verified
            self._drop_expired()
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verified.result

    @property
    def cached_tokens(self) -> int:
        """Verified tokens held in the cache."""
        return len(self._cache)

    def _drop_expired(self) -> None:
        """Drop expired results from the least recently used end, as long as it has them:
        clients that bring a new token every few minutes (short-lived agent tokens) keep
        the live ones cached, not `cache_size` dead ones."""
        now = self._wall_clock()
        while self._cache:
            oldest = next(iter(self._cache.values()))
            if oldest.result.expires_at > now:
                return
            self._cache.popitem(last=False)

    async def _verify(self, token: str) -> _Verified:
        issuer = peek_issuer(token)
        provider_keys = self._providers.get(issuer)
        if provider_keys is None:
            raise AuthenticationError(f"token issuer {_show(issuer)} is not trusted")
        provider = provider_keys.provider
        keys = await self._key_set(provider_keys, refresh=False)
        try:
            claims = verify(
                token, provider=provider, keys=keys, now=self._wall_clock(), leeway=self._leeway
            )
        except UnknownKey:
            # The issuer may have rotated: one (rate-limited) refresh, then one more try.
            keys = await self._key_set(provider_keys, refresh=True)
            claims = verify(
                token, provider=provider, keys=keys, now=self._wall_clock(), leeway=self._leeway
            )
        result = Authenticated(claims_to_identity(claims, provider), valid_until(claims, provider))
        return _Verified(result, provider_keys, keys)

    @staticmethod
    async def _key_set(provider_keys: ProviderKeys, *, refresh: bool) -> KeySet:
        try:
            if refresh:
                return await provider_keys.refresh_for_unknown_kid()
            return await provider_keys.keys()
        except FetchError as exc:
            issuer = provider_keys.provider.issuer
            raise ProviderUnavailable(
                f"cannot fetch signing keys from issuer {issuer}: {exc.reason}"
            ) from exc


def _show(value: str) -> str:
    """A value from an unverified token, quoted and cut short."""
    return repr(value if len(value) <= 80 else value[:80] + "…")
