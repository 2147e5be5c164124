"""Reads. Every selector takes the customer and filters by it (DESIGN.md §9): another
customer's row is simply not found, so views answer 404, never 403."""

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from customers.models import Customer

from .models import AuthCodeExchange, Connection


def connection_list(*, customer: Customer) -> QuerySet[Connection]:
    return Connection.objects.filter(customer=customer).order_by("-created_at")


def connection_get(*, customer: Customer, pk: int) -> Connection:
    return get_object_or_404(Connection, customer=customer, pk=pk)


def exchange_get(*, customer: Customer, public_id: str) -> AuthCodeExchange:
    return get_object_or_404(
        AuthCodeExchange.objects.select_related("connection"),
        customer=customer, public_id=public_id,
    )


def exchanges_stale_dangerously(*, older_than_seconds: int) -> QuerySet[AuthCodeExchange]:
    """Pending exchanges of every customer, for the sweep that re-enqueues them."""
    from datetime import timedelta

    from django.utils import timezone

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return AuthCodeExchange.objects.filter(
        status=AuthCodeExchange.Status.PENDING, updated_at__lt=cutoff
    )
