from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from ..integrations import connection_label, fallback_display_name

register = template.Library()

STATUS_WORDS = {
    "active": "Connected",
    "pending": "Connecting…",
    "needs_reconnect": "Needs reconnect",
    "error": "Error",
    "disconnected": "Disconnected",
}


@register.filter
def integration(integrations: dict, slug: str) -> dict:
    """IntegrationInfo for a slug, with a readable name even when Trackstar is unreachable."""
    info = dict(integrations.get(slug) or {})
    info.setdefault("display_name", fallback_display_name(slug))
    return info


@register.filter
def connection_name(connection, integrations: dict | None = None) -> str:
    """connection_label(), using the page's integration catalog when it has one (a row
    of a long list then costs no cache lookup)."""
    if connection.label or not isinstance(integrations, dict):
        return connection_label(connection)
    return integration(integrations, connection.integration_name)["display_name"]


@register.filter
def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


@register.filter
def lookup(mapping: dict, key: str):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def status_label(value: str) -> str:
    return (value or "").replace("_", " ").capitalize()


@register.filter
def ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment)} ago"


@register.simple_tag
def health_notes(connection, wms: str) -> list[str]:
    """Plain-words notes on what keeps a live connection's resources from syncing (uses
    the prefetched resource_syncs of selectors.connection_list). Resources still waiting
    for Trackstar's first import share one line."""
    if connection.status not in ("active", "needs_reconnect"):
        return []
    syncs = list(connection.resource_syncs.all())
    waiting = [rs for rs in syncs if rs.waiting_for_history]
    notes = [rs.health_words(wms) for rs in syncs if not rs.waiting_for_history]
    if len(waiting) == 1:
        notes.append(waiting[0].health_words(wms))
    elif waiting:
        notes.append("Waiting for Trackstar to finish importing your history.")
    return [note for note in notes if note]


@register.filter
def first_sync_pending(connection) -> bool:
    """A live connection with a resource that has not been read yet (waiting for Trackstar's
    first import, or being read now): the page keeps refreshing it. Uses the prefetched
    resource_syncs of selectors.connection_list."""
    if connection.status != "active":
        return False
    return any(
        rs.last_success_at is None and not rs.permission_error and not rs.unsupported
        for rs in connection.resource_syncs.all()
    )
