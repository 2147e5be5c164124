"""Staff screens. Every action calls a service, so admin cannot skip validation, enqueueing
or the audit log.

One module a model area; importing them here registers them (Django's autodiscovery
imports this package):

- customers: the customer's page (connect a WMS, import a token, invite a portal user)
- connections: a connection's page and the connection list
- attention: the Needs attention page's sections
- sync: the sync panel, history backfills, sync runs
- magic_links: magic links
- exchanges: auth-code exchanges
- webhooks: webhook events
- unassigned: connections Trackstar has for no customer

The audit log's admin is audit/admin.py, the failed logins' portal/admin.py. What admins
share (ReadOnlyAdmin, CalendarSafeChangeList) is config/admin.py, which registers nothing,
so importing it imports no app's admin; how long ago something was is
connections/selectors/status.py's `ago`.
"""

from connections.admin import (  # noqa: F401
    attention,
    connections,
    customers,
    exchanges,
    magic_links,
    sync,
    unassigned,
    webhooks,
)
