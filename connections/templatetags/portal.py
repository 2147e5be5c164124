from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from ..integrations import fallback_display_name

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
