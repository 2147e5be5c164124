"""Reading one action's audit entry the way staff read the log."""

from audit.models import AuditEntry
from audit.sentences import audit_sentence
from connections.link import exchanges as exchange_service
from connections.models import Connection


def only_entry(action: str) -> AuditEntry:
    entries = list(
        AuditEntry.objects.filter(action=action).select_related("actor", "customer", "connection")
    )
    assert len(entries) == 1, [e.action for e in entries]
    return entries[0]


def assert_entry(entry: AuditEntry, *, actor, kind: str, connection: Connection, text: str) -> None:
    assert entry.actor == actor
    assert entry.actor_kind == kind
    assert entry.customer_id == connection.customer_id
    assert entry.connection_id == connection.pk
    assert audit_sentence(entry) == text


def connect(trackstar, customer, *, user=None, source=Connection.Source.PORTAL, **kwargs):
    """Link as the page runs it, then the worker's exchange: the real services."""
    link_token = exchange_service.link_token_create(
        customer=customer, source=source, user=user, **kwargs
    )
    auth_code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    exchange = exchange_service.exchange_submit(
        customer=customer,
        auth_code=auth_code,
        link_token=link_token,
        integration_name="shipbob",
        source=source,
        user=user,
        reinstall_connection=kwargs.get("reinstall"),
        magic_link=kwargs.get("magic_link"),
    ).exchange
    exchange_service.exchange_process(exchange_id=exchange.pk)
    exchange.refresh_from_db()
    return exchange.connection
