"""Exchange tasks: take ids, call one service, retry only what may pass (STYLE.md)."""

import random

from celery import shared_task

from .. import services
from ..database import DATABASE_LOST, database_connection_drop
from ..trackstar import TrackstarRateLimited, TrackstarUnavailable
from .retry import backoff, database_backoff

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
    except DATABASE_LOST as e:
        # Not the exchange's fault: the row keeps its auth code and its attempt count (an
        # attempt that reached Trackstar is recovered as after a crash). Retry in seconds
        # on a fresh connection; after the last retry, or with the database still down,
        # the sweep takes it once the claim lapses.
        database_connection_drop()
        if self.request.retries >= self.max_retries:
            return
        countdown = database_backoff(self.request.retries)
        try:
            services.exchange_retry_scheduled(
                exchange_id=exchange_id, countdown=countdown, release_claim=True
            )
        except DATABASE_LOST:
            database_connection_drop()
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
            # Still owed: the sweep tries again after a pause, until the service gives up
            # (by time, however many attempts an outage takes).
            services.refused_delete_retry_scheduled(exchange_id=exchange_id)
            return
        countdown = backoff(self.request.retries)
        if isinstance(e, TrackstarRateLimited):
            countdown = max(countdown, e.retry_after + random.uniform(0, 1))  # noqa: S311
        # The sweep leaves the row alone until this retry is overdue: one chain, not two.
        services.refused_delete_retry_scheduled(exchange_id=exchange_id, countdown=countdown)
        raise self.retry(exc=e, countdown=countdown) from e
