"""Exchange tasks: take ids, call one service, retry only what may pass (STYLE.md)."""

import random

from celery import shared_task

from .. import services
from ..trackstar import TrackstarRateLimited, TrackstarUnavailable
from .retry import backoff

EXCHANGE_MAX_RETRIES = 8


@shared_task(name="connections.exchange", bind=True, max_retries=EXCHANGE_MAX_RETRIES)
def exchange_process(self, exchange_id: int) -> None:
    try:
        services.exchange_process(exchange_id=exchange_id)
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        if self.request.retries >= self.max_retries:
            services.exchange_fail(
                exchange_id=exchange_id,
                reason="Trackstar could not be reached to finish connecting. Please try again.",
            )
            return
        countdown = backoff(self.request.retries)
        if isinstance(e, TrackstarRateLimited):
            countdown = max(countdown, e.retry_after + random.uniform(0, 1))  # noqa: S311
        services.exchange_retry_scheduled(exchange_id=exchange_id, countdown=countdown)
        raise self.retry(exc=e, countdown=countdown) from e


@shared_task(name="connections.exchange_sweep")
def exchanges_sweep() -> int:
    return services.exchanges_sweep()


@shared_task(
    name="connections.exchange_refused_delete", bind=True, max_retries=EXCHANGE_MAX_RETRIES
)
def exchange_refused_delete(self, exchange_id: int) -> None:
    try:
        services.exchange_refused_delete(exchange_id=exchange_id)
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        if self.request.retries >= self.max_retries:
            return  # still owed: the sweep tries again later
        countdown = backoff(self.request.retries)
        if isinstance(e, TrackstarRateLimited):
            countdown = max(countdown, e.retry_after + random.uniform(0, 1))  # noqa: S311
        raise self.retry(exc=e, countdown=countdown) from e
