from datetime import datetime

from django import template

register = template.Library()


@register.filter
def lookup(mapping: dict, key: str):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def status_label(value: str) -> str:
    return (value or "").replace("_", " ").capitalize()


@register.filter
def first_sync_pending(connection) -> bool:
    """A live connection with a resource that has not been read yet (waiting for Trackstar's
    first import, or being read now): the page keeps refreshing it. Uses the prefetched
    resource_syncs of selectors.connection_status_list."""
    if connection.status != "active":
        return False
    return any(
        rs.last_success_at is None and not rs.permission_error and not rs.unsupported
        for rs in connection.resource_syncs.all()
    )


@register.filter
def last_success(items) -> datetime | None:
    """The newest last success among a freshness line's items."""
    moments = [item.last_success_at for item in items if item.last_success_at]
    return max(moments) if moments else None


# Where Reconnect helps (the credentials or the token broke): a button in plain sight.
# Elsewhere it waits in the row's menu with Rename and Disconnect.
RECONNECT_SHOWN = ("needs_reconnect", "error")


@register.simple_tag
def row_actions(
    status, *, can_reconnect: bool, can_rename: bool, can_disconnect: bool
) -> dict[str, bool]:
    """Which of a dashboard row's actions the user sees, and where."""
    connection = status.connection
    live = connection.status != "disconnected"
    reconnect = bool(can_reconnect and live)
    shown = reconnect and connection.status in RECONNECT_SHOWN
    actions = {
        "reconnect_button": shown,
        "reconnect_in_menu": reconnect and not shown,
        "rename": bool(can_rename),
        "disconnect": bool(can_disconnect and live),
    }
    actions["menu"] = actions["reconnect_in_menu"] or actions["rename"] or actions["disconnect"]
    return actions
