"""Celery tasks of the connections app. Celery's autodiscovery imports this package, so
every task module is imported here."""

from connections.tasks.exchanges import exchange_process, exchange_refused_delete, exchanges_sweep
from connections.tasks.health import connection_health_refresh, connections_reconcile, health_poll
from connections.tasks.magic_links import magic_links_expire
from connections.tasks.sync import sync_dispatch_due, sync_resource, sync_resume_orphaned
from connections.tasks.webhooks import webhook_apply, webhooks_sweep

__all__ = [
    "connection_health_refresh",
    "connections_reconcile",
    "health_poll",
    "exchange_process",
    "exchange_refused_delete",
    "exchanges_sweep",
    "magic_links_expire",
    "sync_dispatch_due",
    "sync_resource",
    "sync_resume_orphaned",
    "webhook_apply",
    "webhooks_sweep",
]
