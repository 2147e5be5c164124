"""Reads of connections and exchanges. Every selector takes the customer and filters by it
(DESIGN.md §9): another customer's row is simply not found, so views answer 404, never 403.
The synced records are read in records.py, what the portal says of each connection in
status.py; a selector that crosses customers says `_dangerously` in its name."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from connections.models import AuthCodeExchange, Connection
from customers.models import Customer


def connection_list_live(*, customer: Customer) -> QuerySet[Connection]:
    """The customer's connections that still exist at Trackstar (can be reconnected)."""
    return (
        Connection.objects.filter(customer=customer)
        .exclude(status=Connection.Status.DISCONNECTED)
        .order_by("created_at", "pk")
    )


def connection_get(*, customer: Customer, pk: int) -> Connection:
    return get_object_or_404(Connection, customer=customer, pk=pk)


def exchange_get(*, customer: Customer, public_id: str) -> AuthCodeExchange:
    return get_object_or_404(
        AuthCodeExchange.objects.select_related("connection"),
        customer=customer,
        public_id=public_id,
    )


def exchanges_stale_dangerously(*, older_than_seconds: int) -> QuerySet[AuthCodeExchange]:
    """Pending exchanges of every customer, for the sweep that re-enqueues them."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return AuthCodeExchange.objects.filter(
        status=AuthCodeExchange.Status.PENDING, updated_at__lt=cutoff
    )


def exchanges_owing_deletes_dangerously(*, older_than_seconds: int) -> QuerySet[AuthCodeExchange]:
    """Refused exchanges of every customer whose connection at Trackstar is still to be
    deleted, untouched for a while (the task retrying it died, or the broker was down)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return AuthCodeExchange.objects.filter(
        refused_delete=AuthCodeExchange.RefusedDelete.OWED, updated_at__lt=cutoff
    )
