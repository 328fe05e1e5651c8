"""One provider's signing keys: discovered, cached, refreshed on rotation, kept through outages."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog
import trio

from l7proxy.config.settings import Provider
from l7proxy.identity.oidc.fetch import FetchError, fetch_json
from l7proxy.identity.oidc.jwt import InvalidKeySet, KeySet

log = structlog.get_logger("l7proxy.identity.oidc")

# Bounds on what a provider's Cache-Control may ask for: a few minutes at least, so that a
# `no-cache` JWKS does not turn every token into a fetch, and a day at most, so that a key the
# provider withdrew stops verifying within a day even if it said "cache for a year".
MIN_CACHE_TTL = 300.0
MAX_CACHE_TTL = 86400.0


def cache_lifetime(
    headers: Mapping[str, str], *, default: float, minimum: float, maximum: float
) -> float:
    """How long a fetched document stays fresh: Cache-Control max-age (less Age), bounded.

    `no-store` / `no-cache` mean the shortest allowed; no usable max-age means `default`.
    """
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        directives.setdefault(name.strip().lower(), value.strip().strip('"'))
    if "no-store" in directives or "no-cache" in directives:
        return minimum
    max_age = directives.get("max-age", "")
    if not max_age.isdigit():
        return default
    age = headers.get("age", "").strip()
    lifetime = int(max_age) - (int(age) if age.isdigit() else 0)
    return min(max(float(lifetime), minimum), maximum)


class KeyFetchMetrics(Protocol):
    """Where each fetch of a provider's keys is counted (the gateway's `Metrics`)."""

    def jwks_fetch(self, provider: str, *, failed: bool) -> None: ...


class ProviderKeys:
    """The JWKS of one provider, fetched through OIDC discovery.

    Both documents are cached for as long as their Cache-Control says, within
    [`min_ttl`, `max_ttl`] (`max_age` when they say nothing). Every fetch is single-flight
    (one request in flight however many tasks wait) and at most one per
    `min_refresh_interval`, so tokens naming random key ids cannot hammer the issuer.
    A failed fetch keeps the last good keys: an issuer outage must not log everyone out.
    Expired keys are refetched, so that keys the issuer withdrew stop verifying.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        timeout: float = 10.0,
        min_refresh_interval: float = 10.0,
        max_age: float = 3600.0,
        min_ttl: float = MIN_CACHE_TTL,
        max_ttl: float = MAX_CACHE_TTL,
        clock: Callable[[], float] = trio.current_time,
        metrics: KeyFetchMetrics | None = None,
    ) -> None:
        self.provider = provider
        self._metrics = metrics
        cafile = None if provider.ca_file is None else str(provider.ca_file)
        self._ssl_context = ssl.create_default_context(cafile=cafile)
        self._discovery_url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        self._timeout = timeout
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._clock = clock
        self._lock = trio.Lock()
        self._keys: KeySet | None = None
        self._keys_expire = -math.inf
        self._jwks_uri: str | None = None
        self._jwks_uri_expires = -math.inf
        # A reason, not the exception: re-raising one instance would grow its traceback forever.
        self._error = "signing keys have not been fetched yet"
        self._attempted_at = -math.inf  # last completed attempt, successful or not
        self._attempts = 0

    @property
    def cached(self) -> KeySet | None:
        """The keys held now, fresh or not, without fetching anything."""
        return self._keys

    async def keys(self) -> KeySet:
        """The cached keys, fetched first if missing or expired.

        While a fetch is in flight, expired keys answer everyone but the fetching task, so a
        slow issuer delays one request rather than all of them.
        """
        if self._keys is not None and (self._clock() < self._keys_expire or self._lock.locked()):
            return self._keys
        return await self._refresh()

    async def refresh_for_unknown_kid(self) -> KeySet:
        """Refetch because a token names a key we lack, unless a fetch happened just now."""
        return await self._refresh()

    async def _refresh(self) -> KeySet:
        seen = self._attempts
        async with self._lock:
            # A fetch that completed while we queued answers us too.
            fresh = self._attempts != seen
            if not fresh and self._clock() - self._attempted_at >= self._min_refresh_interval:
                try:
                    self._store(*await self._fetch())
                    self._count(failed=False)
                except FetchError as exc:
                    self._count(failed=True)
                    self._error = exc.reason
                    if self._keys is not None:
                        log.warning(
                            "signing keys refresh failed; the last good keys keep serving",
                            issuer=self.provider.issuer,
                            error=exc.reason,
                        )
                # Counted only once the attempt completes: a cancelled one lets the next try.
                self._attempted_at = self._clock()
                self._attempts += 1
        if self._keys is None:
            raise FetchError(self._error)
        return self._keys

    def _count(self, *, failed: bool) -> None:
        if self._metrics is not None:
            self._metrics.jwks_fetch(self.provider.name, failed=failed)

    def _store(self, keys: KeySet, lifetime: float) -> None:
        """Keep the old object when nothing changed: verified-token caches compare by identity."""
        old = self._keys
        if old != keys:
            if old is not None:
                before, after = {k.kid for k in old.keys}, {k.kid for k in keys.keys}
                log.info(
                    "signing keys changed",
                    issuer=self.provider.issuer,
                    added=sorted(str(kid) for kid in after - before),
                    removed=sorted(str(kid) for kid in before - after),
                )
            self._keys = keys
        self._keys_expire = self._clock() + lifetime

    def _lifetime(self, headers: Mapping[str, str]) -> float:
        return cache_lifetime(
            headers, default=self._max_age, minimum=self._min_ttl, maximum=self._max_ttl
        )

    async def _discover(self) -> str:
        """The `jwks_uri`, from the cached discovery document while it is fresh."""
        if self._jwks_uri is not None and self._clock() < self._jwks_uri_expires:
            return self._jwks_uri
        discovery, headers = await fetch_json(
            self._discovery_url, ssl_context=self._ssl_context, timeout=self._timeout
        )
        if discovery.get("issuer") != self.provider.issuer:
            raise FetchError(
                f"{self._discovery_url} names another issuer than {self.provider.issuer}"
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError(f"{self._discovery_url} has no jwks_uri")
        self._jwks_uri = jwks_uri
        self._jwks_uri_expires = self._clock() + self._lifetime(headers)
        return jwks_uri

    async def _fetch(self) -> tuple[KeySet, float]:
        jwks_uri = await self._discover()
        try:
            jwks, headers = await fetch_json(
                jwks_uri, ssl_context=self._ssl_context, timeout=self._timeout
            )
            keys = KeySet.from_jwks(jwks)
        except InvalidKeySet as exc:
            self._jwks_uri_expires = -math.inf
            raise FetchError(f"{jwks_uri}: {exc}") from exc
        except FetchError:
            # The provider may have moved its JWKS: rediscover on the next attempt.
            self._jwks_uri_expires = -math.inf
            raise
        if not keys:
            raise FetchError(f"{jwks_uri} publishes no usable signing keys")
        return keys, self._lifetime(headers)
