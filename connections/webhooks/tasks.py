"""Webhook tasks: apply one stored event; sweep events stored while the broker was down."""

from celery import shared_task

from connections.task_retry import run_retrying
from connections.webhooks import services as webhook_service


@shared_task(name="connections.webhook", bind=True, max_retries=5)
def webhook_apply(self, event_id: int) -> None:
    run_retrying(
        self,
        lambda: webhook_service.webhook_apply(event_id=event_id),
        # A truncated event's record could not be fetched yet: the event stays received.
        trackstar_base=5.0,
        trackstar_scheduled=lambda countdown: webhook_service.webhook_retry_scheduled(
            event_id=event_id, countdown=countdown
        ),
        trackstar_exhausted=lambda: webhook_service.webhook_fail(
            event_id=event_id, error="Trackstar stayed unreachable."
        ),
        # No database hook: after the last retry the event is still received and the sweep
        # resends it. Any other error is a poison event: it ends, visibly, not loops.
        poisoned=lambda e: webhook_service.webhook_fail(
            event_id=event_id, error=f"{type(e).__name__}: {e}"
        ),
    )


@shared_task(name="connections.webhooks_sweep")
def webhooks_sweep() -> int:
    return webhook_service.webhooks_sweep()
