"""Who may give someone access to a customer: inviting takes permission to add memberships
(and to add users, for a new account), and only a superuser attaches a staff account to a
customer, by invitation, on the customer's page or in the membership admin."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from audit.models import AuditEntry
from customers.models import Membership
from tests.builders import make_user
from tests.customers.helpers import (
    CHANGE_CUSTOMER,
    customer_form,
    invite,
    logged_in,
    staff_with,
)

# --- The invite page ---------------------------------------------------------------------


def test_a_staff_user_who_may_only_add_users_cannot_invite_themselves(customer):
    mallory = staff_with("auth.add_user")
    client = logged_in(mallory)

    assert client.get(f"/admin/customers/customer/{customer.pk}/invite/").status_code == 403
    response = invite(client, customer, mallory.email)

    assert response.status_code == 403
    assert not Membership.objects.filter(user=mallory).exists()
    # So the portal still knows no customer for them.
    assert client.get("/portal/")["Location"] == "/portal/choose/"


def test_an_inviter_who_is_not_a_superuser_cannot_attach_a_staff_account(customer):
    mallory = staff_with("customers.add_membership", "auth.add_user")
    admin_account = staff_with(username="root", is_superuser=True)
    client = logged_in(mallory)

    for email in (mallory.email, admin_account.email.upper()):
        response = invite(client, customer, email, role="owner")

        assert response.status_code == 200
        assert "Only a superuser may give a staff account access" in response.content.decode()
    assert not Membership.objects.exists()
    assert not mail.outbox
    refused = AuditEntry.objects.filter(action="customer.user_invite_refused")
    assert [(e.actor, e.customer, e.detail["email"]) for e in refused.order_by("pk")] == [
        (mallory, customer, mallory.email),
        (mallory, customer, admin_account.email.upper()),
    ]


def test_a_superuser_may_attach_a_staff_account(customer, staff_user):
    colleague = staff_with(username="colleague")

    response = invite(logged_in(staff_user), customer, colleague.email)

    assert response.status_code == 302
    assert Membership.objects.get(user=colleague).customer == customer


def test_adding_memberships_reaches_existing_accounts_and_adding_users_makes_new_ones(
    customer, other_customer, django_capture_on_commit_callbacks
):
    inviter = staff_with("customers.add_membership")
    consultant = make_user(
        username="consultant", email="c@consult.example", customer=other_customer
    )
    client = logged_in(inviter)

    with django_capture_on_commit_callbacks(execute=True):
        response = invite(client, customer, consultant.email, role="owner")

    assert response.status_code == 302
    assert Membership.objects.get(user=consultant, customer=customer).role == "owner"
    assert mail.outbox[0].to == [consultant.email]
    entry = AuditEntry.objects.get(action="customer.user_invited")
    assert (entry.actor, entry.customer, entry.detail["role"]) == (inviter, customer, "owner")

    # A new account takes "add user" too.
    refused = invite(client, customer, "new.person@acme.example")
    assert refused.status_code == 200
    assert "you may not create accounts" in refused.content.decode()
    assert not get_user_model().objects.filter(email="new.person@acme.example").exists()


def test_an_invitation_makes_a_member_unless_told_otherwise(customer, staff_user):
    response = invite(logged_in(staff_user), customer, "someone@acme.example")

    assert response.status_code == 302
    assert Membership.objects.get(user__email="someone@acme.example").role == "member"


@pytest.mark.parametrize(
    ("role", "members_can_connect", "promised"),
    [("member", False, False), ("member", True, True), ("owner", False, True)],
)
def test_the_invitation_promises_what_the_role_allows(
    customer,
    staff_user,
    mailoutbox,
    django_capture_on_commit_callbacks,
    role,
    members_can_connect,
    promised,
):
    customer.members_can_connect = members_can_connect
    customer.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(logged_in(staff_user), customer, "someone@acme.example", role=role)

    assert response.status_code == 302
    [mail] = mailoutbox
    assert ("connect your warehouse management system" in mail.body) is promised
    assert "see its warehouse data" in mail.body


def test_a_bad_role_is_a_form_error(customer, staff_user):
    response = invite(logged_in(staff_user), customer, "someone@acme.example", role="admin")

    assert response.status_code == 200
    assert not Membership.objects.exists()


# --- The customer's membership inline and the membership admin -------------------------------


def test_the_inline_adds_no_membership_without_add_membership(customer):
    """Django asks the inline's model (Membership) for the add permission, not the page's."""
    mallory = staff_with(
        *CHANGE_CUSTOMER, "customers.view_membership", "customers.change_membership"
    )
    client = logged_in(mallory)
    url = f"/admin/customers/customer/{customer.pk}/change/"
    assert "memberships-TOTAL_FORMS" in client.get(url).content.decode()  # the inline is there

    response = client.post(url, customer_form(customer, (mallory, "owner")))

    assert response.status_code == 302
    assert not Membership.objects.exists()


def test_the_inline_refuses_a_staff_account_to_a_non_superuser(customer):
    mallory = staff_with(*CHANGE_CUSTOMER, "customers.view_membership", "customers.add_membership")
    portal_person = make_user(username="portal-person")
    client = logged_in(mallory)
    url = f"/admin/customers/customer/{customer.pk}/change/"

    refused = client.post(url, customer_form(customer, (mallory, "owner")))
    assert refused.status_code == 200
    assert "Only a superuser may give a staff account access" in refused.content.decode()
    assert not Membership.objects.exists()

    allowed = client.post(url, customer_form(customer, (portal_person, "member")))
    assert allowed.status_code == 302
    assert Membership.objects.get().user == portal_person


def test_the_membership_admin_refuses_a_staff_account_to_a_non_superuser(customer, staff_user):
    mallory = staff_with("customers.view_membership", "customers.add_membership")
    client = logged_in(mallory)
    add = "/admin/customers/membership/add/"

    refused = client.post(add, {"user": mallory.pk, "customer": customer.pk, "role": "owner"})
    assert refused.status_code == 200
    assert "Only a superuser may give a staff account access" in refused.content.decode()
    assert not Membership.objects.exists()

    # A superuser may.
    allowed = logged_in(staff_user).post(
        add, {"user": mallory.pk, "customer": customer.pk, "role": "member"}
    )
    assert allowed.status_code == 302
    assert Membership.objects.get().user == mallory


def test_the_membership_admin_refuses_moving_a_membership_onto_a_staff_account(
    customer, portal_user
):
    mallory = staff_with("customers.view_membership", "customers.change_membership")
    membership = portal_user.memberships.get()

    response = logged_in(mallory).post(
        f"/admin/customers/membership/{membership.pk}/change/",
        {"user": mallory.pk, "customer": customer.pk, "role": "owner"},
    )

    assert response.status_code == 200
    membership.refresh_from_db()
    assert membership.user == portal_user
