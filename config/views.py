import logging

from django.core.cache import cache
from django.db import connection
from django.db.utils import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery_app import app as celery_app
from connections.degrade import REDIS_ERRORS

logger = logging.getLogger(__name__)

# Seconds each check may take. A hung Redis otherwise holds the check for the broker's own
# socket timeout and retries; a monitor wants "down" well within its own timeout.
CHECK_TIMEOUT = 2


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        logger.warning("healthz: database unreachable", exc_info=True)
        return False


def _broker_ok() -> bool:
    timeouts = {"socket_connect_timeout": CHECK_TIMEOUT, "socket_timeout": CHECK_TIMEOUT}
    try:
        with celery_app.connection_for_write(transport_options=timeouts) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT)
        return True
    except Exception:  # kombu raises transport-specific errors; any of them means "down".
        logger.warning("healthz: broker unreachable", exc_info=True)
        return False


def _cache_ok() -> bool:
    # Asked directly, not through connections.degrade's breaker: the pages carry on without
    # the cache (limits give way), and this is where someone learns that they do.
    try:
        cache.get("dockside:healthz")
        return True
    except REDIS_ERRORS:
        logger.warning("healthz: cache (Redis) unreachable", exc_info=True)
        return False


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Unauthenticated and cheap (one query, one broker connection, one cache read): each
    dependency is "ok" or "down", and never why (no URL, host or error reaches the body).
    503 when any is down, although the site still serves pages and takes auth codes
    without Redis: for monitoring, not for taking instances out of a load balancer."""
    checks = {"database": _database_ok(), "broker": _broker_ok(), "cache": _cache_ok()}
    healthy = all(checks.values())
    return JsonResponse(
        {
            "status": "ok" if healthy else "unavailable",
            **{name: "ok" if ok else "down" for name, ok in checks.items()},
        },
        status=200 if healthy else 503,
    )


@never_cache
@require_GET
def livez(request: HttpRequest) -> JsonResponse:
    """For a load balancer's check: this process serves requests. It touches no dependency,
    so an outage of Redis (which the site rides out) or of the database (which every
    instance shares) never takes all instances out of rotation at once."""
    return JsonResponse({"status": "ok"})
