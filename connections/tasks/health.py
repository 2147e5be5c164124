"""Health tasks: re-read one connection at Trackstar; the poll that keeps them current."""

from celery import shared_task

from .. import services
from ..trackstar import TrackstarRateLimited, TrackstarUnavailable
from .retry import backoff


@shared_task(name="connections.health_refresh", bind=True, max_retries=5)
def connection_health_refresh(self, connection_id: int) -> str:
    try:
        return services.connection_health_refresh(connection_id=connection_id)
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        if self.request.retries >= self.max_retries:
            return "unreachable"  # the poll looks again in a few minutes
        countdown = backoff(self.request.retries, base=5.0)
        if isinstance(e, TrackstarRateLimited):
            countdown = max(countdown, e.retry_after)
        raise self.retry(exc=e, countdown=countdown) from e


@shared_task(name="connections.health_poll")
def health_poll() -> int:
    return services.health_poll()


@shared_task(name="connections.reconcile", bind=True, max_retries=3)
def connections_reconcile(self) -> dict:
    try:
        return services.connections_reconcile()
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        if self.request.retries >= self.max_retries:
            return {}  # the next hourly run tries again; the error is on the account row
        raise self.retry(exc=e, countdown=backoff(self.request.retries, base=30.0)) from e
