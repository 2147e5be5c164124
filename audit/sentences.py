"""Reading the audit log: one sentence per entry. Used by the audit log's admin only.

Unlike audit's models and services, this reads connections (how a connection is named,
Trackstar's list of WMS names): the admin imports it, connections does not."""

from typing import Any

from audit.models import AuditEntry
from connections.integrations import connection_label, fallback_display_name
from connections.models import Connection

ActorKind = AuditEntry.ActorKind


def _who(entry: AuditEntry) -> str:
    kind = entry.actor_kind
    if kind == ActorKind.TRACKSTAR:
        return "Trackstar"
    if kind == ActorKind.SYSTEM:
        return "Dockside"
    word = "staff" if kind == ActorKind.STAFF else "customer"
    if entry.actor is not None:
        actor: Any = entry.actor
        name = actor.get_full_name() or actor.get_username()
    elif kind == ActorKind.CUSTOMER:
        name = "A visitor with a magic link"
    else:
        name = "A former user"
    return f"{name} ({word})"


def _of(entry: AuditEntry, label: str) -> str:
    return f"{label} of {entry.customer.name}" if entry.customer_id and entry.customer else label


def _what(entry: AuditEntry) -> str:
    """The connection as lists name it ("ShipBob 2 of Acme Outdoor")."""
    if entry.connection_id and entry.connection is not None:
        return _of(entry, connection_label(entry.connection))
    name = entry.detail.get("integration_name")
    if isinstance(name, str) and name:
        return _of(entry, fallback_display_name(name))
    return _of(entry, "a connection")


def _words(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v).replace("_", " ") for v in value)
    return str(value or "").replace("_", " ")


def _member(detail: dict) -> str:
    """The member as the entry named them then: the account may have changed or gone since."""
    return str(detail.get("email") or detail.get("username") or "a former user")


def _reason(detail: dict) -> str:
    cause = detail.get("cause")
    if cause and cause in Connection.ReconnectCause.values:
        text = str(Connection.ReconnectCause(cause).label)
        return text[0].lower() + text[1:]
    return str(detail.get("reason") or "").rstrip(".")


def audit_sentence(entry: AuditEntry) -> str:
    """One line people read: "Jane Doe (staff) paused ShipBob 2 of Acme Outdoor"."""
    d = entry.detail if isinstance(entry.detail, dict) else {}
    who, what = _who(entry), _what(entry)
    by_trackstar = entry.actor_kind == ActorKind.TRACKSTAR
    customer = entry.customer.name if entry.customer_id and entry.customer else "no customer"
    match entry.action:
        case "connection.connected":
            return f"{who} connected {what}"
        case "connection.reconnected":
            return f"{who} reconnected {what}"
        case "connection.imported":
            return f"{who} imported {what} from an access token"
        case "connection.adopted":
            return f"Trackstar reported {what}, made in Trackstar's dashboard: added"
        case "connection.token_received":
            return f"Trackstar delivered the access token of {what}: connected"
        case "connection.disconnected" if by_trackstar:
            return f"Trackstar reported {what} deleted: {_reason(d)}"
        case "connection.disconnected":
            return f"{who} disconnected {what}"
        case "connection.needs_reconnect" if by_trackstar:
            return f"Trackstar reported {what} broken: {_reason(d)}"
        case "connection.needs_reconnect":
            return f"{who} marked {what} as needing a reconnect: {_reason(d)}"
        case "connection.permission_missing":
            resource = _words(d.get("resource")).lower()
            return f"Trackstar reported no access to {resource} of {what}: {_reason(d)}"
        case "connection.permission_granted":
            resource = _words(d.get("resource")).lower()
            return f"Trackstar reported access to {resource} of {what} granted again"
        case "connection.repaired":
            return f"Trackstar reported {what} working again"
        case "connection.sync_paused":
            return f"{who} paused {what}"
        case "connection.sync_resumed":
            return f"{who} resumed {what}"
        case "connection.renamed":
            old = d.get("old") or (
                fallback_display_name(entry.connection.integration_name)
                if entry.connection_id and entry.connection
                else "a connection"
            )
            return f"{who} renamed {_of(entry, str(old))} to {d.get('new')}"
        case "connection.force_sync_requested":
            return f"{who} resynced {what} ({_words(d.get('resources'))})"
        case "connection.reread_requested":
            return f"{who} asked to re-read {what} ({_words(d.get('resources'))})"
        case "connection.backfill_requested":
            return f"{who} asked for older {_words(d.get('resource'))} of {what}"
        case "connection.backfill_cancelled":
            return f"{who} cancelled a backfill of {what}"
        case "connection.credentials_entered":
            return f"{who} entered the credentials of {what}"
        case "unassigned.assigned":
            label = connection_label(entry.connection) if entry.connection else "a connection"
            return (
                f"{who} assigned Trackstar connection {d.get('trackstar_connection_id') or ''} "
                f"to {customer} as {label}"
            )
        case "unassigned.deleted":
            return (
                f"{who} deleted the unassigned Trackstar connection "
                f"{d.get('trackstar_connection_id') or ''}".rstrip()
            )
        case "magic_link.issued" if entry.connection_id:
            to = f" to {d['emailed_to']}" if d.get("emailed_to") else ""
            return f"{who} sent a reconnect link for {what}{to}"
        case "magic_link.issued":
            to = f" to {d['emailed_to']}" if d.get("emailed_to") else ""
            return f"{who} issued a magic link for {customer}{to}"
        case "magic_link.revoked":
            return f"{who} revoked a magic link of {customer}"
        case "trackstar.schedule_stuck":
            return f"Trackstar reported the sync schedule of {what} stuck"
        case "webhook.retried":
            return f"{who} retried a {d.get('event_type') or ''} webhook of {what}"
        case "customer.user_invited":
            return f"{who} invited {d.get('email')} to {customer}"
        case "customer.user_invite_refused":
            return f"{who} was refused inviting {d.get('email')} to {customer}"
        case "customer.membership_added":
            return f"{who} gave {_member(d)} access to {customer} as {_words(d.get('role'))}"
        case "customer.membership_role_changed":
            return (
                f"{who} changed the role of {_member(d)} at {customer} from "
                f"{_words(d.get('old_role'))} to {_words(d.get('role'))}"
            )
        case "customer.membership_removed":
            return f"{who} removed the access of {_member(d)} to {customer}"
        case "login.unlocked":
            return f"{who} unlocked the login of {d.get('username')}"
        case "login.slowdown_cleared":
            return f"{who} lifted the login slowdown of {d.get('username')}"
    subject = what if entry.connection_id else customer
    return f"{who}: {entry.action.replace('_', ' ')} ({subject})"
