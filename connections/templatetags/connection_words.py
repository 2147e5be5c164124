"""How a connection is named and how long ago something was, in the staff admin's and the
portal's templates alike."""

from datetime import datetime

from django import template

from connections.integrations import connection_label, fallback_display_name
from connections.selectors.status import ago as status_ago

register = template.Library()


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
def ago(moment: datetime | None) -> str:
    return status_ago(moment)  # as the status lines and admin say it
