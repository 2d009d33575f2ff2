"""Per-client rate limiting with slowapi (limits storage), counting a batch per image.

The client is the peer address; `X-Forwarded-For` is believed only when the peer is one of the
configured trusted proxies, and then the right-most untrusted hop is the client.
"""

from __future__ import annotations

import ipaddress
import math
import time

from limits import parse
from slowapi import Limiter
from starlette.requests import Request

from whales_be_service.errors import ServiceError
from whales_be_service.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CHARGED = "rate_charged"  # request.state flag: the middleware charged this request already


def _parse_networks(values: list[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _is_trusted(host: str, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.strip())
    except ValueError:
        return False
    return any(address in net for net in networks)


def client_address(request: Request, trusted: list[Network]) -> str:
    """The address a limit applies to (see module docstring)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class RateLimiter:
    """`hit(request, cost)` charges the client; over the limit it raises a 429 `ServiceError`."""

    namespace = "whales"

    def __init__(self, settings: Settings):
        self.enabled = settings.rate_limit_enabled
        self.item = parse(settings.rate_limit)
        self.read_item = parse(settings.read_rate_limit)
        self.trusted = _parse_networks(settings.trusted_proxies)
        self.slowapi = Limiter(key_func=lambda request: client_address(request, self.trusted),
                               storage_uri=settings.rate_limit_storage, headers_enabled=True,
                               enabled=settings.rate_limit_enabled)

    def hit(self, request: Request, cost: int = 1, read_only: bool = False, whole: int | None = None) -> None:
        """Charge `cost` hits; read-only GETs draw on their own, larger budget (a catalog page is
        dozens of thumbnail requests and must not starve predictions).

        A request the budget cannot cover is refused *without* being charged: a batch too large
        for what is left answers 429 and leaves the client its remaining hits; one larger than the
        whole budget is a 413 (split it); `whole` is the request's full cost when part of it was
        charged already.
        """
        if not self.enabled or cost <= 0:
            return
        key = client_address(request, self.trusted)
        strategy = self.slowapi.limiter
        if read_only:
            item, namespace = self.read_item, f"{self.namespace}-read"
        else:
            item, namespace = self.item, self.namespace
        whole = max(cost, whole or 0)
        if whole > item.amount:
            raise ServiceError(413, "payload_too_large",
                               f"this request costs {whole} hits (one per image) but the rate limit is "
                               f"{item}; send at most {item.amount} images per request",
                               {"cost": whole, "limit": str(item)})
        allowed = strategy.test(item, namespace, key, cost=cost) and strategy.hit(item, namespace, key,
                                                                                  cost=cost)
        stats = strategy.get_window_stats(item, namespace, key)
        reset_in = max(1, math.ceil(stats.reset_time - time.time()))
        headers = {"X-RateLimit-Limit": str(item.amount),
                   "X-RateLimit-Remaining": str(max(0, stats.remaining)),
                   "X-RateLimit-Reset": str(int(stats.reset_time))}
        request.state.rate_limit_headers = headers
        if not allowed:
            raise ServiceError(429, "rate_limited",
                               f"rate limit of {item} exceeded (this request costs {cost}); "
                               f"retry in {reset_in} s",
                               {"limit": str(item), "cost": cost, "retry_after_s": reset_in},
                               {**headers, "Retry-After": str(reset_in)})
