from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from customers.models import Customer, Membership


def customer_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Customer]:
    if not user.is_authenticated:
        return Customer.objects.none()
    return Customer.objects.filter(memberships__user_id=user.pk, is_active=True).order_by("name")


def membership_role(*, user: AbstractBaseUser | AnonymousUser, customer: Customer) -> str | None:
    """The user's role at this customer ("owner", "member"), or None without a membership."""
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user_id=user.pk, customer=customer)
        .values_list("role", flat=True)
        .first()
    )
