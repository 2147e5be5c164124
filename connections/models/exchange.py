import uuid

from django.conf import settings
from django.db import models

from customers.models import Customer

from ..crypto import EncryptedTextField
from .connection import Connection


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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.integration_name} exchange {self.public_id} ({self.status})"
