"""Who may do what: a portal user by their role at the customer, and a staff user when they
give someone access to a customer. The portal's views, its JSON endpoints and its templates
all ask here, so a role means the same thing everywhere."""

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError

from customers.models import Customer, Membership
from customers.selectors import membership_role


class PortalAction(StrEnum):
    CONNECT = "connect"  # a new connection
    RECONNECT = "reconnect"  # new credentials for an existing one
    DISCONNECT = "disconnect"
    RENAME = "rename"


def role_can(*, role: str | None, customer: Customer, action: PortalAction) -> bool:
    if role == Membership.Role.OWNER:
        return True
    if role == Membership.Role.MEMBER:
        # Members read. Connecting adds a connection but breaks or removes nothing, so a
        # customer may allow it; reconnecting swaps the credentials a live connection uses.
        return action == PortalAction.CONNECT and customer.members_can_connect
    return False  # no membership


def membership_can(
    *, user: AbstractBaseUser | AnonymousUser, customer: Customer, action: PortalAction
) -> bool:
    return role_can(
        role=membership_role(user=user, customer=customer), customer=customer, action=action
    )


def membership_permissions(
    *, user: AbstractBaseUser | AnonymousUser, customer: Customer
) -> dict[str, bool]:
    """Every portal action at once, for a page that shows or hides its buttons (one query)."""
    role = membership_role(user=user, customer=customer)
    return {
        f"can_{action.value}": role_can(role=role, customer=customer, action=action)
        for action in PortalAction
    }


def is_staff_account(user: AbstractBaseUser) -> bool:
    return bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))


def membership_grant_check(
    *, granted_by: AbstractBaseUser | AnonymousUser, user: AbstractBaseUser
) -> None:
    """May granted_by give this existing account access to a customer? A staff account that
    is also a customer's member reads that customer's data and acts in its portal, so only a
    superuser may make one; otherwise a staff user could make themselves any customer's
    member."""
    if is_staff_account(user) and not getattr(granted_by, "is_superuser", False):
        raise ValidationError(
            "That is a staff account. Only a superuser may give a staff account access to a "
            "customer."
        )
