from django.conf import settings
from django.db import models

from connections.crypto import EncryptedTextField, mask
from customers.models import Customer


class Connection(models.Model):
    """One customer's WMS, connected through Trackstar."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
        ERROR = "error", "Error"
        DISCONNECTED = "disconnected", "Disconnected"

    class ReconnectCause(models.TextChoices):
        # Why a connection is needs_reconnect; only Trackstar's own error clears by itself.
        NONE = "", "—"
        INVALID_CREDENTIALS = "invalid_credentials", "The WMS refused the saved credentials"
        TOKEN_REJECTED = "token_rejected", "Trackstar refused the access token"
        TOKEN_MISSING = "token_missing", "The access token never reached us"

    class Source(models.TextChoices):
        PORTAL = "portal", "Portal"
        MAGIC_LINK = "magic_link", "Magic link"
        STAFF = "staff", "Staff"
        IMPORT = "import", "Imported token"
        # Made outside Dockside and adopted from Trackstar (connection.created, reconcile).
        TRACKSTAR_DASHBOARD = "trackstar_dashboard", "Trackstar dashboard"
        TRACKSTAR_MAGIC_LINK = "trackstar_magic_link", "Trackstar magic link"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="connections")
    trackstar_connection_id = models.CharField(
        "Trackstar connection id", max_length=128, unique=True
    )
    integration_name = models.CharField(max_length=64, db_index=True)
    # A name people can tell apart ("ShipBob", "ShipBob 2", "ShipBob EU"); empty means the
    # WMS's name. Staff and the customer's owners can edit it.
    label = models.CharField(max_length=100, blank=True)
    integration_type = models.CharField(max_length=16, default="wms")
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    access_token = EncryptedTextField(blank=True)
    available_actions = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True)
    reconnect_cause = models.CharField(
        max_length=32, choices=ReconnectCause.choices, blank=True, default=""
    )
    # What Trackstar last said of the connection's health (GET /connections/{id}): a list
    # of {kind, message, resources}, for staff and the portal; see trackstar/health.py.
    trackstar_errors = models.JSONField(default=list, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    # When the health poll looks again: minutes while an error is open, hourly otherwise.
    health_next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Staff can pause a connection's scheduled syncs without disconnecting it.
    sync_paused = models.BooleanField(default=False)
    # When the customer's contact was last told to reconnect (once per incident).
    reconnect_notified_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "status"])]

    def __str__(self) -> str:
        return f"{self.label or self.integration_name} ({self.trackstar_connection_id})"

    @property
    def access_token_masked(self) -> str:
        return mask(self.access_token)
