from django.conf import settings
from django.db import models

from customers.models import Customer


class AuditEntry(models.Model):
    """Who did what, when, to which customer or connection. Written by services only."""

    class ActorKind(models.TextChoices):
        STAFF = "staff", "Staff"
        CUSTOMER = "customer", "Customer"
        TRACKSTAR = "trackstar", "Trackstar"
        SYSTEM = "system", "Dockside"

    # Who acts when no user does: Trackstar reported it (webhooks, the health poll, the
    # reconcile job), else Dockside itself did it. A kind written at the time (detail["by"])
    # wins: it survives the user's deletion and tells a magic-link visitor from the system.
    TRACKSTAR_ACTIONS = frozenset(
        {
            "connection.needs_reconnect",
            "connection.repaired",
            "connection.disconnected",
            "connection.adopted",
            "connection.token_received",
            "connection.permission_missing",
            "connection.permission_granted",
            "trackstar.schedule_stuck",
        }
    )

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action = models.CharField(max_length=64, db_index=True)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A string reference, not an import: connections writes the audit log, so audit must
    # not import connections.
    connection = models.ForeignKey(
        "connections.Connection",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        # The table connections made (connections 0003): the model moved, its rows did not.
        db_table = "connections_auditentry"
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def actor_kind(self) -> str:
        by = self.detail.get("by") if isinstance(self.detail, dict) else None
        if by in self.ActorKind.values:
            return by
        if self.actor is not None:
            return self.ActorKind.STAFF if self.actor.is_staff else self.ActorKind.CUSTOMER
        if self.action in self.TRACKSTAR_ACTIONS:
            return self.ActorKind.TRACKSTAR
        return self.ActorKind.SYSTEM
