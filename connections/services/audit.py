from typing import Any, TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from customers.models import Customer

from ..models import AuditEntry, Connection

# Whoever acts: a user, an anonymous visitor (magic link), or the system (None).
Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None


def user_or_none(actor: Actor) -> Any:
    """The user to record as creator or actor: nobody for anonymous visitors and the system."""
    return actor if actor is not None and actor.is_authenticated else None


def audit_record(
    *,
    actor: Actor,
    action: str,
    customer: Customer | None = None,
    connection: Connection | None = None,
    **detail: Any,
) -> AuditEntry:
    if connection is not None and customer is None:
        customer = connection.customer
    return AuditEntry.objects.create(
        actor=user_or_none(actor),
        action=action,
        customer=customer,
        connection=connection,
        detail=detail,
    )
