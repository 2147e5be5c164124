"""Celery tasks of the connections app. Celery's autodiscovery imports this package, so
every task module is imported here."""

from .exchanges import exchange_process, exchanges_sweep

__all__ = ["exchange_process", "exchanges_sweep"]
