from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from customers.models import Customer

from ..models import AuditEntry, Connection


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    action: str,
    customer: Customer | None = None,
    connection: Connection | None = None,
    **detail: Any,
) -> AuditEntry:
    if connection is not None and customer is None:
        customer = connection.customer
    return AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        customer=customer,
        connection=connection,
        detail=detail,
    )
