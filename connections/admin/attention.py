"""Needs attention: what a person has to do something about, across every customer."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from connections.models import Connection, MagicLink, ResourceSync, SyncRun, UnassignedConnection

ATTENTION_ROWS = 100  # per section; the section links to the full list past that
LINK_EXPIRY_WARNING = timedelta(hours=24)


@dataclass
class AttentionSection:
    key: str
    title: str
    help: str
    rows: list
    more_url: str = ""

    @property
    def shown(self) -> list:
        return self.rows[:ATTENTION_ROWS]

    @property
    def more(self) -> bool:
        return len(self.rows) > ATTENTION_ROWS


def _retrying_q(prefix: str = "") -> Q:
    return Q(**{f"{prefix}current_run__status": SyncRun.Status.RUNNING}) & ~Q(
        **{f"{prefix}current_run__error": ""}
    )


def needs_attention(*, with_links: bool) -> list[AttentionSection]:
    """Across every customer, for staff: one query a section (and one for the schedules in
    use), whatever the number of rows."""
    now = timezone.now()
    limit = ATTENTION_ROWS + 1
    live_syncs = ResourceSync.objects.filter(
        connection__status=Connection.Status.ACTIVE,
        connection__sync_paused=False,
        paused=False,
        enabled=True,
        unsupported=False,
    ).select_related("connection__customer", "current_run")

    reconnect = list(
        Connection.objects.filter(
            status__in=[Connection.Status.NEEDS_RECONNECT, Connection.Status.ERROR]
        )
        .select_related("customer")
        .order_by("updated_at", "pk")[:limit]
    )
    no_access = list(
        ResourceSync.objects.exclude(permission_error="")
        .exclude(connection__status=Connection.Status.DISCONNECTED)
        .select_related("connection__customer")
        .order_by("permission_error_at", "pk")[:limit]
    )
    failing = list(
        live_syncs.filter(permission_error="")
        .filter(_retrying_q() | ~Q(last_error=""))
        .order_by("updated_at", "pk")[:limit]
    )
    # "Stale" is older than twice the resource's own schedule. The schedules in use are a
    # handful of values: one range per value keeps the query portable and indexable.
    intervals = sorted(
        set(ResourceSync.objects.values_list("interval_seconds", flat=True).distinct())
    )
    stale_q = Q(pk__in=[])
    for interval in intervals:
        cutoff = now - timedelta(seconds=2 * interval)
        stale_q |= Q(interval_seconds=interval) & (
            Q(last_success_at__lt=cutoff)
            # Trackstar has the history and it was never read, for as long.
            | Q(last_success_at__isnull=True, history_ready=True, created_at__lt=cutoff)
        )
    stale = list(
        live_syncs.filter(stale_q, permission_error="", last_error="")
        .exclude(_retrying_q())
        .order_by("last_success_at", "pk")[:limit]
    )
    unassigned = list(
        UnassignedConnection.objects.filter(resolution="").order_by("first_seen_at")[:limit]
    )

    sections = [
        AttentionSection(
            "reconnect",
            "Connections that need reconnecting",
            "The WMS or Trackstar refuses the saved credentials: nothing syncs until the "
            "customer reconnects. Send them a reconnect link.",
            reconnect,
            reverse("admin:connections_connection_changelist") + "?status__exact=needs_reconnect",
        ),
        AttentionSection(
            "no_access",
            "Missing permissions",
            "The WMS user Trackstar signs in with may not read this resource; everything "
            "else keeps syncing. The customer's WMS administrator grants the access "
            "(reconnecting with the same credentials will not help); then read it again.",
            no_access,
        ),
        AttentionSection(
            "failing",
            "Failing syncs",
            "Runs that stopped on an error. Those retrying keep trying by themselves.",
            failing,
            reverse("admin:connections_syncrun_changelist") + "?status__exact=failed",
        ),
        AttentionSection(
            "stale",
            "Stale data",
            "Last read longer ago than twice its schedule, with no error to say why: the "
            "queue may be long, or a worker stuck.",
            stale,
        ),
        AttentionSection(
            "unassigned",
            "Unassigned connections from Trackstar",
            "Made in Trackstar's dashboard or by Trackstar's own magic links, for no "
            "customer of ours: assign each to a customer, or delete it at Trackstar.",
            unassigned,
            reverse("admin:connections_unassignedconnection_changelist"),
        ),
    ]
    if with_links:
        expiring = list(
            MagicLink.objects.filter(
                revoked_at__isnull=True,
                use_count=0,
                expires_at__gt=now,
                expires_at__lte=now + LINK_EXPIRY_WARNING,
            )
            .select_related("customer", "reinstall_connection")
            .order_by("expires_at", "pk")[:limit]
        )
        sections.append(
            AttentionSection(
                "links",
                "Magic links about to expire unused",
                "They run out within 24 hours and nobody has connected with them yet. "
                "Remind the customer, or issue a new link.",
                expiring,
                reverse("admin:connections_magiclink_changelist") + "?funnel=issued",
            )
        )
    return sections
