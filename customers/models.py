import secrets

from django.conf import settings
from django.db import models


def _new_public_id() -> str:
    return f"cus_{secrets.token_hex(8)}"


class Customer(models.Model):
    """A tenant: one company whose warehouse systems we connect."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    # Sent to Trackstar as customer_id; never our database id.
    public_id = models.CharField(max_length=40, unique=True, default=_new_public_id, editable=False)
    contact_email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    # Owners connect, reconnect and disconnect; members read, and connect too if this is on.
    members_can_connect = models.BooleanField(
        default=False,
        help_text="Let portal users with the member role connect a new WMS. Only owners "
        "reconnect and disconnect.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "customer"], name="unique_membership"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.customer}"
