from django.conf import settings
from django.db import models
from django.utils import timezone

from connections.models.connection import Connection
from customers.models import Customer


class MagicLink(models.Model):
    """A signed-in-by-link invitation to connect a WMS for one customer (DESIGN.md §2.2).

    Only the SHA-256 of the token is stored; the URL is shown once when it is issued."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="magic_links")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    use_count = models.PositiveIntegerField(default=0)
    # Integration slugs offered in Link; empty means every integration.
    allowed_integrations = models.JSONField(default=list, blank=True)
    reinstall_connection = models.ForeignKey(
        Connection,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Reconnect this connection instead of making a new one.",
    )
    emailed_to = models.EmailField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The funnel: issued (created_at) → opened → completed / expired / revoked.
    first_opened_at = models.DateTimeField(null=True, blank=True)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    open_count = models.PositiveIntegerField(default=0)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Set by the beat task once the link ran out unused, so the funnel is a set of timestamps.
    expired_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(use_count__lte=models.F("max_uses")),
                name="magic_link_uses_within_max",
            ),
        ]

    def __str__(self) -> str:
        return f"Magic link for {self.customer} ({self.state_label})"

    @property
    def state(self) -> str:
        if self.revoked_at:
            return self.State.REVOKED
        if self.use_count >= self.max_uses:
            return self.State.COMPLETED
        if self.expires_at <= timezone.now():
            return self.State.EXPIRED
        return self.State.ACTIVE

    @property
    def state_label(self) -> str:
        return self.State(self.state).label

    @property
    def is_usable(self) -> bool:
        return self.state == self.State.ACTIVE
