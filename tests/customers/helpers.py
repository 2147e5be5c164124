"""Staff accounts with chosen permissions, and the admin forms they post."""

from django.contrib.auth.models import Permission
from django.test import Client

from tests.builders import make_user

CHANGE_CUSTOMER = ("customers.view_customer", "customers.change_customer")


def staff_with(*perms: str, username: str = "mallory", **fields):
    user = make_user(
        username=username, email=f"{username}@dockside.example", is_staff=True, **fields
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def invite(client, customer, email, **fields):
    return client.post(
        f"/admin/customers/customer/{customer.pk}/invite/", {"email": email, **fields}
    )


def customer_form(customer, *rows, existing=()):
    """The customer's change form: `rows` are new memberships (user, role); `existing` are
    the customer's memberships as posted back (membership, user, role, delete)."""
    data = {
        "name": customer.name,
        "slug": customer.slug,
        "contact_email": customer.contact_email,
        "timezone": customer.timezone,
        "is_active": "on",
        "memberships-TOTAL_FORMS": str(len(existing) + len(rows)),
        "memberships-INITIAL_FORMS": str(len(existing)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        # The connections inline, shown to those who may view connections (none here).
        "connections-TOTAL_FORMS": "0",
        "connections-INITIAL_FORMS": "0",
        "connections-MIN_NUM_FORMS": "0",
        "connections-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for n, (membership, user, role, delete) in enumerate(existing):
        data[f"memberships-{n}-id"] = str(membership.pk)
        data[f"memberships-{n}-customer"] = str(customer.pk)
        data[f"memberships-{n}-user"] = str(user.pk)
        data[f"memberships-{n}-role"] = role
        if delete:
            data[f"memberships-{n}-DELETE"] = "on"
    for n, (user, role) in enumerate(rows, start=len(existing)):
        data[f"memberships-{n}-user"] = str(user.pk)
        data[f"memberships-{n}-role"] = role
    return data
