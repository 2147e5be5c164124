"""Webhook tasks: apply one stored event; sweep events stored while the broker was down."""

import logging

from celery import shared_task

from .. import services
from ..database import DATABASE_LOST, database_connection_drop
from ..trackstar import TrackstarRateLimited, TrackstarUnavailable
from .retry import backoff, database_backoff

logger = logging.getLogger(__name__)


@shared_task(name="connections.webhook", bind=True, max_retries=5)
def webhook_apply(self, event_id: int) -> None:
    try:
        services.webhook_apply(event_id=event_id)
    except DATABASE_LOST as e:
        # A lock timeout or a dropped connection (OperationalError, or InterfaceError for a
        # connection already closed) may pass: try again in seconds on a fresh connection.
        # After the last retry the event is still received, and the sweep resends it.
        database_connection_drop()
        if self.request.retries >= self.max_retries:
            logger.warning("Webhook event %s left for the sweep: %s", event_id, e)
            return
        raise self.retry(exc=e, countdown=database_backoff(self.request.retries)) from e
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        # A truncated event's record could not be fetched yet: the event stays received.
        if self.request.retries < self.max_retries:
            countdown = backoff(self.request.retries, base=5.0)
            services.webhook_retry_scheduled(event_id=event_id, countdown=countdown)
            raise self.retry(exc=e, countdown=countdown) from e
        services.webhook_fail(event_id=event_id, error=f"Trackstar unreachable: {e}")
    except Exception as e:  # noqa: BLE001 - a poison event must end, visibly, not loop
        logger.exception("Webhook event %s could not be applied", event_id)
        services.webhook_fail(event_id=event_id, error=f"{type(e).__name__}: {e}")


@shared_task(name="connections.webhooks_sweep")
def webhooks_sweep() -> int:
    return services.webhooks_sweep()
