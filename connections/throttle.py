"""Slow down guessing of /connect/ tokens: count unknown tokens per client IP."""

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

WINDOW_SECONDS = 15 * 60


def client_ip(request: HttpRequest | None) -> str | None:
    # Behind a proxy, set TRUSTED_PROXY_COUNT so the address comes from X-Forwarded-For.
    if request is None:
        return None
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops and forwarded:
        addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
        if len(addresses) >= hops:
            return addresses[-hops]
    return request.META.get("REMOTE_ADDR") or None


def _key(request: HttpRequest) -> str:
    return f"connect-miss:{client_ip(request) or 'unknown'}"


def connect_is_throttled(request: HttpRequest) -> bool:
    return (cache.get(_key(request)) or 0) >= settings.CONNECT_TOKEN_MISS_LIMIT


def connect_record_miss(request: HttpRequest) -> None:
    key = _key(request)
    if not cache.add(key, 1, WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, WINDOW_SECONDS)
