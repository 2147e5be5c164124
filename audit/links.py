"""Links to the audit log, for pages that show one customer or one connection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.urls import reverse

if TYPE_CHECKING:
    from connections.models import Connection
    from customers.models import Customer


def audit_log_url(*, customer: Customer | None = None, connection: Connection | None = None) -> str:
    """The audit log filtered to one customer or one connection ("View audit log" links)."""
    url = reverse("admin:audit_auditentry_changelist")
    if connection is not None:
        return f"{url}?customer__id__exact={connection.customer_id}&connection__id__exact={connection.pk}"
    if customer is not None:
        return f"{url}?customer__id__exact={customer.pk}"
    return url
