"""Health tasks: re-read one connection at Trackstar; the poll that keeps them current."""

from celery import shared_task

from connections.health import services as health_service
from connections.link import adoption as adoption_service
from connections.task_retry import run_retrying


@shared_task(name="connections.health_refresh", bind=True, max_retries=5)
def connection_health_refresh(self, connection_id: int) -> str:
    return run_retrying(
        self,
        lambda: health_service.connection_health_refresh(connection_id=connection_id),
        trackstar_base=5.0,
        # The poll looks again in a few minutes.
        trackstar_exhausted=lambda: health_service.HealthRefresh.UNREACHABLE,
    )


@shared_task(name="connections.health_poll")
def health_poll() -> int:
    return health_service.health_poll()


@shared_task(name="connections.reconcile", bind=True, max_retries=3)
def connections_reconcile(self) -> dict:
    return run_retrying(
        self,
        adoption_service.connections_reconcile,
        trackstar_base=30.0,
        # The next hourly run tries again; the error is on the account row.
        trackstar_exhausted=dict,
    )
