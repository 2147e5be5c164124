import secrets
import zoneinfo
from functools import cache

from django.conf import settings
from django.db import models


def _new_public_id() -> str:
    return f"cus_{secrets.token_hex(8)}"


@cache
def timezone_choices() -> list[tuple[str, str]]:
    # A callable, so the migration does not carry the ~600 zone names (and cached: listing
    # them reads the zone files).
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


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
    # The portal shows times in this zone, and reads its date filters in it.
    timezone = models.CharField(
        max_length=64,
        choices=timezone_choices,
        default="UTC",
        help_text="Times in the portal are shown in this time zone.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")


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
