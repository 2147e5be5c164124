"""Limits an attacker could otherwise use against other people: guessing /connect/ tokens,
and spending the organisation's Trackstar budget through the Link endpoints.

Every count lives in Django's cache or in Redis (production and tests), so all web
processes share it; the demo without Redis counts per process. While Redis is down the
/connect/ misses are not counted and the Link endpoints count per process (degrade.py):
limits step aside rather than turn every request into a 500.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from connections.degrade import cache_or, warn_rarely
from connections.token_buckets import token_bucket

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 15 * 60


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address: the entry TRUSTED_PROXY_COUNT hops from the right of
    X-Forwarded-For (each trusted proxy appends the address it saw; entries further left
    are whatever the client sent), else REMOTE_ADDR. Also django-axes' notion of it."""
    if request is None:
        return None
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops and forwarded:
        addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
        if len(addresses) < hops:
            warn_rarely(
                logger,
                "xff-short",
                "X-Forwarded-For has %d entries, TRUSTED_PROXY_COUNT is %d: using REMOTE_ADDR",
                len(addresses),
                hops,
            )
        elif (address := _address(addresses[-hops])) is not None:
            return address
        else:
            warn_rarely(
                logger,
                "xff-unusable",
                "X-Forwarded-For entry %r is not an address: using REMOTE_ADDR",
                addresses[-hops][:64],
            )
    remote = request.META.get("REMOTE_ADDR") or ""
    return _address(remote)


# An address with a port, as some balancers forward it: 203.0.113.5:41234, [2001:db8::1]:443
# (or [2001:db8::1]). A bare IPv6 address has two colons at least, so it never matches.
_WITH_PORT = re.compile(r"\[(?P<v6>[^\]]+)\](?::\d{1,5})?|(?P<v4>[^:\[\]]+):\d{1,5}", re.ASCII)


def _address(value: str) -> str | None:
    """The address in an X-Forwarded-For entry or REMOTE_ADDR, in its canonical form, or
    None. axes stores it in an inet column: anything else would be a 500 (so would an IPv6
    zone, fe80::1%eth0, which PostgreSQL's inet has no room for)."""
    if match := _WITH_PORT.fullmatch(value):
        value = match["v6"] or match["v4"]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if match and match["v6"] and address.version != 6:
        return None  # [203.0.113.5]: brackets are for IPv6 only
    return str(address)


# --- /connect/<token>/ guesses ------------------------------------------------------------
# Only misses count, and only a miss is refused: the token is looked up first, so guesses
# from an address (a whole office behind one NAT, say) never block a real link. A miss
# cannot be tied to any link, so the address is the only key.


def _miss_key(request: HttpRequest) -> str:
    return f"connect-miss:{client_ip(request) or 'unknown'}"


def connect_record_miss(request: HttpRequest) -> bool:
    """Count an unknown token from this address; True once the address is over
    CONNECT_TOKEN_MISS_LIMIT in the window (fixed from its first miss, so refused guesses
    do not extend it)."""
    key = _miss_key(request)

    def count() -> int:
        if cache.add(key, 1, WINDOW_SECONDS):
            return 1
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, WINDOW_SECONDS)
            return 1

    # Without the cache the miss is not counted: a 404, as for a first guess.
    return cache_or(0, count) > settings.CONNECT_TOKEN_MISS_LIMIT


# --- get-link-token / store-token ---------------------------------------------------------
# Each call costs a Trackstar write (a link token, an exchange), and Trackstar's write budget
# is the organisation's, shared by every customer. One caller (a portal or staff user, or a
# magic link's visitors) and one customer each get a budget per minute, far below
# Trackstar's, so nobody can make other customers' connects fail.

LINK_ENDPOINT_LIMITS = {
    # endpoint: (per-caller setting, per-customer setting), each a count per minute
    "get_link_token": ("LINK_TOKEN_LIMIT_PER_USER", "LINK_TOKEN_LIMIT_PER_CUSTOMER"),
    "store_token": ("STORE_TOKEN_LIMIT_PER_USER", "STORE_TOKEN_LIMIT_PER_CUSTOMER"),
}


def link_endpoint_wait(*, endpoint: str, caller: str, customer_pk: int) -> int:
    """Take one call from the caller's and then the customer's bucket: 0 when both had one,
    else the whole seconds to wait (for Retry-After). The caller's bucket goes first, so a
    caller who is refused spends nothing of their customer's."""
    per_caller, per_customer = (getattr(settings, name) for name in LINK_ENDPOINT_LIMITS[endpoint])
    for scope, per_minute in (
        (f"caller:{caller}", per_caller),
        (f"customer:{customer_pk}", per_customer),
    ):
        bucket = token_bucket(
            rate=per_minute / 60, burst=per_minute, prefix=f"dockside:limit:{endpoint}:"
        )
        wait = bucket.take(scope)
        if wait > 0:
            return max(1, math.ceil(wait))
    return 0
