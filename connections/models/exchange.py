import uuid

from django.conf import settings
from django.db import models

from connections.crypto import EncryptedTextField
from connections.models.connection import Connection
from customers.models import Customer


class LinkTokenGrant(models.Model):
    """A link token Dockside got from Trackstar for one customer (POST /link/token), kept as
    its SHA-256. store-token takes only a token this customer received, and not after it
    expired; the code's own binding is checked at exchange time (Trackstar answers with the
    customer_id of the link token that made the code, API.md §3)."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="link_token_grants"
    )
    # The connection the token reinstalls (Link reconnects it), if any.
    reinstall_connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Who it was handed to: store-token takes it from that caller only (the same user; the
    # same magic link for its visitors), not from anyone else of the customer. Adoption
    # reads the magic link and what it allowed then: a connection Link made through the
    # token, whose code never reached store-token, must not slip past them (adoption.py).
    source = models.CharField(max_length=20, choices=Connection.Source.choices, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    magic_link = models.ForeignKey(
        "connections.MagicLink",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="link_token_grants",
    )
    allowed_integrations = models.JSONField(default=list, blank=True)  # empty: all
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="link_token_grant_expiry")]

    def __str__(self) -> str:
        return f"Link token for {self.customer_id} (expires {self.expires_at:%Y-%m-%d %H:%M})"


class AuthCodeExchange(models.Model):
    """The outbox for one auth code from Trackstar Link.

    Written in the request that received the code and processed by a worker, so the code
    survives a broker outage; unique on the code's hash, so a double submit is one row."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="exchanges")
    auth_code_hash = models.CharField(max_length=64, unique=True)
    # Cleared once the exchange ends: a spent code is of no use to anyone.
    auth_code = EncryptedTextField(blank=True)
    integration_name = models.CharField(max_length=64)
    source = models.CharField(max_length=20, choices=Connection.Source.choices)
    magic_link = models.ForeignKey(
        "connections.MagicLink",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="exchanges",
    )
    reinstall_connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class RefusedDelete(models.TextChoices):
        NONE = "", "—"
        OWED = "owed", "Owed: delete it at Trackstar"
        DELETED = "deleted", "Deleted at Trackstar"
        KEPT = "kept", "Kept: not ours to delete"
        GAVE_UP = "gave_up", "Gave up: staff delete it in Trackstar's dashboard"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # A worker holds the exchange until then; a worker that died lets it lapse.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # When the worker's scheduled retry is due; the sweep leaves the exchange alone until
    # a while after, so one retry chain runs, not one per sweep.
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="exchanges"
    )
    # The link token the browser said it opened Link with (store-token checks it was ours).
    link_token = models.ForeignKey(
        LinkTokenGrant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="exchanges",
    )
    # A refused exchange whose code made a connection at Trackstar that no row of ours
    # owns: it is deleted there (with its token), and this row remembers that it is owed
    # until Trackstar confirms, however long Trackstar is down.
    refused_connection_id = models.CharField(max_length=128, blank=True)
    refused_access_token = EncryptedTextField(blank=True)
    refused_delete = models.CharField(
        max_length=16, choices=RefusedDelete.choices, blank=True, default=""
    )
    refused_delete_attempts = models.PositiveIntegerField(default=0)
    # When the delete task's own retry is due: the sweep leaves the row alone until then,
    # so one retry chain runs at a time.
    refused_delete_retry_at = models.DateTimeField(null=True, blank=True)
    refused_delete_error = models.TextField(blank=True)
    refused_deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(
                fields=["refused_connection_id"],
                name="exchange_refused_conn",
                condition=~models.Q(refused_connection_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.integration_name} exchange {self.public_id} ({self.status})"
