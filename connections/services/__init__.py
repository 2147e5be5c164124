"""Writes. Views, admin and tasks call these; nothing else changes connection state."""

from .connections import connection_disconnect
from .exchanges import (
    SubmittedExchange,
    exchange_enqueue,
    exchange_fail,
    exchange_process,
    exchange_submit,
    exchanges_sweep,
    link_token_create,
)

__all__ = [
    "SubmittedExchange",
    "connection_disconnect",
    "exchange_enqueue",
    "exchange_fail",
    "exchange_process",
    "exchange_submit",
    "exchanges_sweep",
    "link_token_create",
]
