from typing import Any, TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from audit.models import AuditEntry
from customers.models import Customer

# Whoever acts: a user, an anonymous visitor (magic link), or the system (None).
Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None

ActorKind = AuditEntry.ActorKind


def user_or_none(actor: Actor) -> Any:
    """The user to record as creator or actor: nobody for anonymous visitors and the system."""
    return actor if actor is not None and actor.is_authenticated else None


def actor_kind_of(actor: Actor, action: str) -> str:
    """staff / customer for a user; a customer for an anonymous (magic-link) visitor;
    Trackstar or Dockside when nobody acts."""
    if actor is not None and not actor.is_authenticated:
        return ActorKind.CUSTOMER
    user = user_or_none(actor)
    if user is not None:
        return ActorKind.STAFF if getattr(user, "is_staff", False) else ActorKind.CUSTOMER
    return ActorKind.TRACKSTAR if action in AuditEntry.TRACKSTAR_ACTIONS else ActorKind.SYSTEM


def audit_record(
    *,
    actor: Actor,
    action: str,
    customer: Customer | None = None,
    # A connections.Connection: not imported, as connections imports audit to write the log.
    connection: Any = None,
    by: str | None = None,
    **detail: Any,
) -> AuditEntry:
    """`by`: the kind of actor (AuditEntry.ActorKind) when the actor alone does not say it,
    e.g. a magic-link visitor recorded with no user."""
    if connection is not None and customer is None:
        customer = connection.customer
    detail["by"] = by or actor_kind_of(actor, action)
    return AuditEntry.objects.create(
        actor=user_or_none(actor),
        action=action,
        customer=customer,
        connection=connection,
        detail=detail,
    )
