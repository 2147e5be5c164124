"""The one place that hands work to Celery workers.

Services call these, after their commit (`on_commit`), and write the row a sweep reads again
first; tasks are addressed by name (`CELERY_TASK_ROUTES` picks the queue), so neither this
module nor any service imports the task modules, which import services alone: no circle.

Every send goes through the broker breaker (degrade.py): False, with nothing sent, while the
broker (Redis) is down or hung. The request that wrote the row answers at once; a hung Redis
costs one publish its socket timeout (5 s, and twice more with the publish retry), and the
breaker then keeps this process from paying it on every request.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from config.celery_app import app as celery_app
from connections.degrade import redis_failed, redis_is_down

EXCHANGE = "connections.exchange"
REFUSED_DELETE = "connections.exchange_refused_delete"
WEBHOOK = "connections.webhook"
SYNC = "connections.sync"
HEALTH_CHECK = "connections.health_refresh"
RECONCILE = "connections.reconcile"


def send(name: str, *args: object, **kwargs: object) -> bool:
    """Publish task `name` with these arguments; False, with nothing sent, while the
    broker is down or hung."""
    from kombu.exceptions import OperationalError as BrokerError

    conf = celery_app.conf
    # Keyed by where the broker is, so a test pointing Celery elsewhere has its own breaker.
    breaker = f"broker:{conf.broker_write_url or conf.broker_url}"
    if redis_is_down(breaker):
        return False
    try:
        celery_app.send_task(name, args=args, kwargs=kwargs)
    except BrokerError as e:
        redis_failed(breaker, "the task queue (rows wait for their sweep)", e)
        return False
    return True


def on_commit(send_it: Callable[[], object]) -> None:
    """Send once the caller's transaction commits (at once outside one): a worker must find
    the row, and a rolled-back row must not be worked on. A failing send does not undo it."""
    transaction.on_commit(send_it, robust=True)


def exchange(exchange_id: int) -> bool:
    return send(EXCHANGE, exchange_id)


def refused_delete(exchange_id: int) -> bool:
    return send(REFUSED_DELETE, exchange_id)


def webhook_event(event_id: int) -> bool:
    return send(WEBHOOK, event_id)


def resource_sync(connection_id: int, resource: str, kind: str, full: bool = False) -> bool:
    """A requested or resumed sync (the worker runs it only if the request still waits or a
    run is there to resume, so a second copy does nothing)."""
    return send(SYNC, connection_id, resource, kind, full, requested=True)


def health_check(connection_id: int) -> bool:
    return send(HEALTH_CHECK, connection_id)


def reconcile() -> bool:
    return send(RECONCILE)
