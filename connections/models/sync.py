from django.db import models

from .connection import Connection


def resource_label(resource: str) -> str:
    """"inbound_shipments" → "Inbound shipments", wherever a resource is shown to people."""
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
    # The newest updated_date synced; incremental runs ask from a little before it.
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "resource"], name="resourcesync_connection_resource"
            )
        ]
        # The dispatcher's query: what is due, oldest first.
        indexes = [models.Index(fields=["next_sync_at"], name="resourcesync_next_sync")]

    def __str__(self) -> str:
        return resource_label(self.resource)


class SyncRun(models.Model):
    """One pass over one resource of one connection. Updated after every page, so staff see
    progress while it runs; it also keeps the page cursor a redelivered task resumes from."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial"
        INCREMENTAL = "incremental", "Incremental"
        WEBHOOK = "webhook", "Webhook"
        MANUAL = "manual", "Manual"

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
    # The updated_date[gte] filter of this run; None for a full sync.
    since = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    records = models.PositiveIntegerField(default=0)
    # Newest updated_date seen so far; becomes the resource's mark when the run succeeds.
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
