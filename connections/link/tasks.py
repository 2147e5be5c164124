"""Exchange tasks: take ids, call one service, retry by the one policy (connections/task_retry.py)."""

from celery import shared_task

from connections.link import exchanges as exchange_service
from connections.link import magic_links as magic_link_service
from connections.task_retry import run_retrying

EXCHANGE_MAX_RETRIES = 8


@shared_task(name="connections.exchange", bind=True, max_retries=EXCHANGE_MAX_RETRIES)
def exchange_process(self, exchange_id: int) -> None:
    run_retrying(
        self,
        lambda: exchange_service.exchange_process(exchange_id=exchange_id),
        trackstar_scheduled=lambda countdown: exchange_service.exchange_retry_scheduled(
            exchange_id=exchange_id, countdown=countdown
        ),
        trackstar_exhausted=lambda: exchange_service.exchange_fail(
            exchange_id=exchange_id,
            reason="Trackstar could not be reached to finish connecting. Please try again.",
        ),
        # Not the exchange's fault: the row keeps its auth code and its attempt count (an
        # attempt that reached Trackstar is recovered as after a crash), and the claim is
        # given up for the retry. After the last retry, or with the database still down,
        # the sweep takes it once the claim lapses.
        database_scheduled=lambda countdown: exchange_service.exchange_retry_scheduled(
            exchange_id=exchange_id, countdown=countdown, release_claim=True
        ),
    )


@shared_task(name="connections.exchange_sweep")
def exchanges_sweep() -> int:
    return exchange_service.exchanges_sweep()


@shared_task(
    name="connections.exchange_refused_delete", bind=True, max_retries=EXCHANGE_MAX_RETRIES
)
def exchange_refused_delete(self, exchange_id: int) -> None:
    run_retrying(
        self,
        lambda: exchange_service.exchange_refused_delete(exchange_id=exchange_id),
        # The sweep leaves the row alone until this retry is overdue: one chain, not two.
        trackstar_scheduled=lambda countdown: exchange_service.refused_delete_retry_scheduled(
            exchange_id=exchange_id, countdown=countdown
        ),
        # Still owed: the sweep tries again after a pause, until the service gives up (by
        # time, however many attempts an outage takes).
        trackstar_exhausted=lambda: exchange_service.refused_delete_retry_scheduled(
            exchange_id=exchange_id
        ),
    )


@shared_task(name="connections.magic_links_expire")
def magic_links_expire() -> int:
    return magic_link_service.magic_links_expire()
