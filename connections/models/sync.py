from django.conf import settings
from django.db import models

from connections.models.connection import Connection


def resource_label(resource: str) -> str:
    """ "inbound_shipments" → "Inbound shipments", wherever a resource is shown to people."""
    return resource.replace("_", " ").capitalize()


class ResourceSync(models.Model):
    """The sync state of one resource of one connection: schedule, high-water mark, lease.

    The lease (token + expiry) makes one sync at a time per (connection, resource) across
    all workers; the token is also a fencing token: a worker whose lease was taken over
    finds a different token and must not commit another page or move the mark."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="resource_syncs"
    )
    resource = models.CharField(max_length=32)
    enabled = models.BooleanField(default=True)
    # Trackstar answered 501 for it: the integration does not offer this resource.
    unsupported = models.BooleanField(default=False)
    # Staff paused this one resource (Connection.sync_paused pauses all of them).
    paused = models.BooleanField(default=False)
    # Trackstar finished its initial (historical) sync of this resource: until then its
    # reads return nothing (API.md §10), so we do not read it.
    history_ready = models.BooleanField(default=False)

    class PermissionSource(models.TextChoices):
        NONE = "", "—"
        TRACKSTAR = "trackstar", "Trackstar's errors[]"
        READ = "read", "A 403 on a read"

    # A non-blocking missing permission (Trackstar's errors[], or a 403 on a read): this
    # resource waits while every other one keeps syncing. Empty when there is none.
    permission_error = models.TextField(blank=True)
    permission_source = models.CharField(
        max_length=16, choices=PermissionSource.choices, blank=True, default=""
    )
    permission_error_at = models.DateTimeField(null=True, blank=True)
    # Staff asked Trackstar to refresh from the WMS (POST /connections/sync); we read when
    # connection.force-sync-completed arrives, or after a timeout.
    force_sync_requested_at = models.DateTimeField(null=True, blank=True)
    # The newest trackstar_updated_date synced; incremental runs ask from a little before.
    high_water_mark = models.DateTimeField(null=True, blank=True)
    interval_seconds = models.PositiveIntegerField(default=900)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The run this resource is in the middle of; a task that takes the lease resumes it.
    current_run = models.ForeignKey(
        "connections.SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A run asked for and not started yet (staff's resync or re-read, a webhook, a backfill,
    # a first sync, the dispatcher's schedule): the durable record of it, as the exchange
    # outbox is, so a message lost with the broker's data costs one sweep. A second request
    # joins this one; the run that starts takes it (kind and full: what it must do).
    requested_at = models.DateTimeField(null=True, blank=True)
    requested_kind = models.CharField(max_length=16, blank=True)
    requested_full = models.BooleanField(default=False)
    # Its message went out request_sends times; the dispatcher sends it again if no run has
    # taken it by request_resend_at (the wait doubles, so a long queue fills with few copies).
    request_sends = models.PositiveSmallIntegerField(default=0)
    request_resend_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "resource"], name="resourcesync_connection_resource"
            )
        ]
        indexes = [
            # The dispatcher's query: what is due, oldest first.
            models.Index(fields=["next_sync_at"], name="resourcesync_next_sync"),
            # Its sweep of requests whose message may be lost: the few pending ones.
            models.Index(
                fields=["request_resend_at"],
                condition=models.Q(requested_at__isnull=False),
                name="resourcesync_request_resend",
            ),
        ]

    def __str__(self) -> str:
        return resource_label(self.resource)

    def health_words(self, wms: str) -> str:
        """What is in the way of this resource syncing, in plain words ("" when nothing).
        `wms` is the integration's display name."""
        label = resource_label(self.resource).lower()
        if self.permission_error:
            return (
                f"No access to {label}: the {wms} user Trackstar signs in with lacks the "
                f"permission. Ask your {wms} administrator to grant access to {label}; "
                "reconnecting with the same credentials will not help. Everything else "
                "keeps syncing."
            )
        if self.unsupported:
            return f"{wms} does not offer {label}."
        if self.waiting_for_history:
            return f"Waiting for Trackstar to finish importing the history of {label}."
        return ""

    @property
    def waiting_for_history(self) -> bool:
        return not (self.history_ready or self.permission_error or self.unsupported)


class SyncRun(models.Model):
    """One pass over one resource of one connection. Updated after every page, so staff see
    progress while it runs; it also keeps the page cursor a redelivered task resumes from."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial"
        INCREMENTAL = "incremental", "Incremental"
        WEBHOOK = "webhook", "Webhook"
        MANUAL = "manual", "Re-read"
        FORCE = "force", "After a refresh from the WMS"
        BACKFILL = "backfill", "After a backfill"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        UNSUPPORTED = "unsupported", "Unsupported"
        CANCELLED = "cancelled", "Cancelled"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_runs")
    resource = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # The trackstar_updated_date[gte] filter of this run; None for a full sync.
    since = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    records = models.PositiveIntegerField(default=0)
    # Newest trackstar_updated_date seen so far (updated_date for a record without one);
    # becomes the resource's mark when the run succeeds.
    high_water_mark = models.DateTimeField(null=True, blank=True)
    # Where to continue: the next page's token (empty before the first page).
    next_page_token = models.TextField(blank=True)
    # How many times a worker (re)started this run: >1 means it was resumed.
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(
                fields=["connection", "resource", "-started_at"], name="syncrun_conn_res_started"
            ),
            models.Index(fields=["status", "started_at"], name="syncrun_status_started"),
        ]

    def __str__(self) -> str:
        return f"{self.resource} {self.kind} sync of {self.connection_id} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Backfill(models.Model):
    """An on-demand sync job at Trackstar (POST /connections/on-demand-syncs): history of
    one resource older than the initial window. Its records arrive when Trackstar sends
    connection.sync-job-completed; we then read the resource."""

    class Status(models.TextChoices):
        OPEN = "open", "Running at Trackstar"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        STUCK = "stuck", "Stuck at Trackstar"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="backfills")
    resource = models.CharField(max_length=32)
    trackstar_job_id = models.CharField(max_length=128, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "updated_at"], name="backfill_status_updated")]

    def __str__(self) -> str:
        return f"{resource_label(self.resource)} backfill {self.trackstar_job_id}"


class TrackstarAccount(models.Model):
    """Our organisation's standing with Trackstar: one row (pk=1). When Trackstar refuses
    the organisation API key (401 on a key-only call), every sync pauses and staff are
    alerted; no customer is told to reconnect, since their connections are fine."""

    key_rejected_at = models.DateTimeField(null=True, blank=True)
    key_error = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The reconcile job (GET /connections against ours): when it last completed, and why it
    # last failed.
    reconciled_at = models.DateTimeField(null=True, blank=True)
    reconcile_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Trackstar account"

    def __str__(self) -> str:
        return "Trackstar API key rejected" if self.key_rejected_at else "Trackstar API key OK"
