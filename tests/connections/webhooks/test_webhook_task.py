"""The webhook task's decisions when the database connection breaks under it: the event is
retried in seconds, never ended as failed for our own infrastructure's fault."""

import pytest
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError

from connections.models import WebhookEvent
from connections.webhooks import services as webhook_service
from connections.webhooks import tasks as webhook_tasks
from tests.celery_tasks import catch_retries, run_as_worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def retried(monkeypatch):
    return catch_retries(monkeypatch, webhook_tasks.webhook_apply)


def run_task(event_id: int, retries: int = 0) -> None:
    run_as_worker(webhook_tasks.webhook_apply, event_id, retries=retries)


@pytest.mark.parametrize(
    "lost",
    [
        OperationalError("terminating connection due to administrator command"),
        InterfaceError("connection already closed"),
    ],
)
def test_a_lost_database_connection_retries_the_event_in_seconds(lost, retried, monkeypatch):
    event = WebhookEvent.objects.create(svix_id="m1", event_type="order.updated", payload={})

    def apply(*, event_id):
        raise lost

    monkeypatch.setattr(webhook_service, "webhook_apply", apply)
    with pytest.raises(Retry):
        run_task(event.pk)

    assert retried[0] <= 2
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED  # not failed: it will be applied
    assert event.error == ""


def test_after_the_last_retry_the_event_waits_for_the_sweep_not_failed(retried, monkeypatch):
    event = WebhookEvent.objects.create(svix_id="m1", event_type="order.updated", payload={})

    def apply(*, event_id):
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(webhook_service, "webhook_apply", apply)
    run_task(event.pk, retries=webhook_tasks.webhook_apply.max_retries)

    assert retried == []
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED
