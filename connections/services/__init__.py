"""Writes. Views, admin and tasks call these; nothing else changes connection state."""

from .account import account_key_accepted, account_key_rejected, trackstar_account
from .audit import audit_record
from .backfills import backfill_cancel, backfill_request, backfill_resources
from .connections import (
    connection_disconnect,
    connection_import,
    connection_mark_disconnected,
    connection_mark_needs_reconnect,
    connection_mark_repaired,
    connection_reread,
    connection_resync,
    connection_set_paused,
)
from .exchanges import (
    LinkUnavailable,
    SubmittedExchange,
    exchange_enqueue,
    exchange_fail,
    exchange_process,
    exchange_retry_scheduled,
    exchange_submit,
    exchanges_sweep,
    link_token_create,
)
from .health import connection_health_refresh, health_poll
from .magic_links import (
    IssuedLink,
    magic_link_find,
    magic_link_issue,
    magic_link_open,
    magic_link_revoke,
    magic_links_expire,
)
from .sync import (
    SyncOutcome,
    records_upsert,
    sync_dispatch_due,
    sync_fail,
    sync_request_now,
    sync_resource,
    sync_schedule_initial,
)
from .webhooks import (
    webhook_apply,
    webhook_fail,
    webhook_receive,
    webhook_retry,
    webhooks_sweep,
)

__all__ = [
    "account_key_accepted",
    "account_key_rejected",
    "backfill_cancel",
    "backfill_request",
    "backfill_resources",
    "connection_health_refresh",
    "connection_reread",
    "health_poll",
    "trackstar_account",
    "IssuedLink",
    "LinkUnavailable",
    "SubmittedExchange",
    "audit_record",
    "connection_disconnect",
    "connection_import",
    "connection_mark_disconnected",
    "connection_mark_needs_reconnect",
    "connection_mark_repaired",
    "connection_resync",
    "connection_set_paused",
    "exchange_enqueue",
    "exchange_fail",
    "exchange_process",
    "exchange_retry_scheduled",
    "exchange_submit",
    "exchanges_sweep",
    "link_token_create",
    "magic_link_find",
    "magic_link_issue",
    "magic_link_open",
    "magic_link_revoke",
    "magic_links_expire",
    "SyncOutcome",
    "records_upsert",
    "sync_dispatch_due",
    "sync_fail",
    "sync_request_now",
    "sync_resource",
    "sync_schedule_initial",
    "webhook_apply",
    "webhook_fail",
    "webhook_receive",
    "webhook_retry",
    "webhooks_sweep",
]
