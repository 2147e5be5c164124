from django.db import models

from connections.crypto import EncryptedTextField
from connections.models.connection import Connection


class WebhookEvent(models.Model):
    """One Trackstar webhook delivery, stored once per svix-id and applied by a task."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    svix_id = models.CharField(max_length=128, unique=True)
    event_type = models.CharField(max_length=100, db_index=True)
    trackstar_connection_id = models.CharField(max_length=128, blank=True, db_index=True)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhooks"
    )
    # The payload as received, minus any secret: connection.created carries the new access
    # token, which is kept encrypted beside it instead.
    payload = models.JSONField()
    access_token = EncryptedTextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Last handed to the broker (or when the task's own retry is due); the sweep re-sends
    # only what has waited too long since.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} ({self.svix_id})"
