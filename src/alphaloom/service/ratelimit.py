"""Per-key rate limiting: one token bucket (:class:`alphaloom.core.resilience.RateLimiter`) per API key."""

from __future__ import annotations

import math
import threading

from fastapi import HTTPException, status

from alphaloom.core.resilience import RateLimiter
from alphaloom.service.auth import Principal
from alphaloom.service.settings import ServiceSettings

__all__ = ["KeyRateLimiter"]


class KeyRateLimiter:
    """Sustained ``rate_per_s(role)`` requests per second per key, with a burst of ``rate * rate_burst_s``.

    A request over the limit gets a 429 with ``Retry-After`` (seconds); nothing waits in the server.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._buckets: dict[tuple[str, str], RateLimiter] = {}
        self._lock = threading.Lock()
        self.rejected = 0

    def _bucket(self, principal: Principal) -> RateLimiter:
        key = (principal.key_id, principal.role.value)
        bucket = self._buckets.get(key)
        if bucket is None:
            with self._lock:
                bucket = self._buckets.get(key)
                if bucket is None:
                    rate = self._settings.rate_per_s(principal.role.value)
                    burst = max(1, math.ceil(rate * self._settings.rate_burst_s))
                    bucket = self._buckets[key] = RateLimiter(rate, burst)
        return bucket

    def check(self, principal: Principal) -> None:
        """Take one request from the key's bucket, or raise a 429."""
        bucket = self._bucket(principal)
        if bucket.try_acquire():
            return
        self.rejected += 1
        rate = bucket.rate_per_s or 1.0
        retry_s = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {rate:g} requests/s for {principal.role.value} keys exceeded by "
            f"{principal.name!r}; retry after {retry_s}s or ask an admin to raise the limit.",
            headers={"Retry-After": str(retry_s)},
        )
