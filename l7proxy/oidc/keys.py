"""One provider's signing keys: discovered, cached, refreshed on rotation, kept through outages."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable

import trio

from l7proxy.oidc.fetch import FetchError, fetch_json
from l7proxy.oidc.jwt import InvalidKeySet, KeySet
from l7proxy.settings import Provider


class ProviderKeys:
    """The JWKS of one provider, fetched through OIDC discovery.

    Every fetch is single-flight (one request in flight however many tasks wait) and at most
    one per `min_refresh_interval`, so tokens naming random key ids cannot hammer the issuer.
    A failed fetch keeps the last good keys: an issuer outage must not log everyone out.
    Keys older than `max_age` are refetched so that keys the issuer withdrew stop verifying.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        timeout: float = 10.0,
        min_refresh_interval: float = 10.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.provider = provider
        cafile = None if provider.ca_file is None else str(provider.ca_file)
        self._ssl_context = ssl.create_default_context(cafile=cafile)
        self._discovery_url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        self._timeout = timeout
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._clock = clock
        self._lock = trio.Lock()
        self._keys: KeySet | None = None
        # A reason, not the exception: re-raising one instance would grow its traceback forever.
        self._error = "signing keys have not been fetched yet"
        self._fetched_at = -math.inf  # last success
        self._attempted_at = -math.inf  # last completed attempt, successful or not
        self._attempts = 0

    async def keys(self) -> KeySet:
        """The cached keys, fetched first if missing or older than `max_age`.

        While a fetch is in flight, aged keys answer everyone but the fetching task, so a slow
        issuer delays one request rather than all of them.
        """
        if self._keys is not None and (
            self._clock() - self._fetched_at < self._max_age or self._lock.locked()
        ):
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
                    self._keys = await self._fetch()
                    self._fetched_at = self._clock()
                except FetchError as exc:
                    self._error = exc.reason
                # Counted only once the attempt completes: a cancelled one lets the next try.
                self._attempted_at = self._clock()
                self._attempts += 1
        if self._keys is None:
            raise FetchError(self._error)
        return self._keys

    async def _fetch(self) -> KeySet:
        discovery, _ = await fetch_json(
            self._discovery_url, ssl_context=self._ssl_context, timeout=self._timeout
        )
        if discovery.get("issuer") != self.provider.issuer:
            raise FetchError(
                f"{self._discovery_url} names another issuer than {self.provider.issuer}"
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError(f"{self._discovery_url} has no jwks_uri")
        jwks, _ = await fetch_json(jwks_uri, ssl_context=self._ssl_context, timeout=self._timeout)
        try:
            keys = KeySet.from_jwks(jwks)
        except InvalidKeySet as exc:
            raise FetchError(f"{jwks_uri}: {exc}") from exc
        if not keys:
            raise FetchError(f"{jwks_uri} publishes no usable signing keys")
        return keys
