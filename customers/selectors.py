from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from .models import Customer


def customer_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Customer]:
    if not user.is_authenticated:
        return Customer.objects.none()
    return Customer.objects.filter(memberships__user_id=user.pk, is_active=True).order_by("name")
