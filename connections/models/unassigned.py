from django.db import models

from connections.crypto import EncryptedTextField, mask
from connections.models.connection import Connection


class UnassignedConnection(models.Model):
    """A connection Trackstar has and Dockside does not: made in Trackstar's dashboard or by
    one of Trackstar's magic links without (or with an unknown) customer_id. It waits here
    until staff assign it to a customer or delete it at Trackstar."""

    class SeenVia(models.TextChoices):
        WEBHOOK = "webhook", "connection.created webhook"
        RECONCILE = "reconcile", "Reconcile with Trackstar"

    class Resolution(models.TextChoices):
        OPEN = "", "Waiting"
        ASSIGNED = "assigned", "Assigned to a customer"
        DELETED = "deleted", "Deleted at Trackstar"
        GONE = "gone", "Gone from Trackstar"

    trackstar_connection_id = models.CharField(
        "Trackstar connection id", max_length=128, unique=True
    )
    integration_name = models.CharField(max_length=64)
    # The customer_id Trackstar holds for it, if any (not one of ours, or we would have
    # adopted it).
    trackstar_customer_id = models.CharField(max_length=255, blank=True)
    trackstar_created_at = models.DateTimeField(null=True, blank=True)
    # From connection.created; empty when only the reconcile job saw it (staff paste it).
    access_token = EncryptedTextField(blank=True)
    seen_via = models.CharField(max_length=16, choices=SeenVia.choices)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True, default="")
    # Why it was not adopted although it names a customer of ours: it is never adopted by
    # itself then (a later webhook or reconcile neither); staff assign or delete it.
    held_reason = models.CharField("why it waits for staff", max_length=255, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-first_seen_at"]
        indexes = [
            models.Index(fields=["resolution", "-first_seen_at"], name="unassigned_open_first_seen")
        ]

    def __str__(self) -> str:
        return f"{self.integration_name} ({self.trackstar_connection_id})"

    @property
    def access_token_masked(self) -> str:
        return mask(self.access_token)
