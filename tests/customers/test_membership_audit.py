"""Giving and taking access to a customer in admin writes the audit entry with the
membership, in one transaction: on the customer's page (its memberships inline) and in the
membership admin, for a superuser and for staff with only the membership permissions."""

import pytest
from django.db import DatabaseError
from django.test import Client

from audit.models import AuditEntry
from audit.sentences import audit_sentence
from customers.models import Membership
from tests.builders import make_user
from tests.customers.helpers import CHANGE_CUSTOMER, customer_form, logged_in, staff_with

MEMBERSHIPS = "/admin/customers/membership/"
INLINE = (*CHANGE_CUSTOMER, "customers.view_membership")


def page_of(customer) -> str:
    return f"/admin/customers/customer/{customer.pk}/change/"


def entries(action: str) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(action=action).select_related("actor", "customer").order_by("pk")
    )


def sentences() -> list[str]:
    return [audit_sentence(e) for e in AuditEntry.objects.select_related("actor", "customer")]


@pytest.fixture
def pat(db):
    return make_user(username="pat", email="pat@acme.example")


@pytest.fixture
def failing_audit(monkeypatch):
    """The audit log's table refuses the write (a full disk, a lost connection)."""

    def refuse(**kwargs):
        raise DatabaseError("the audit log is unavailable")

    monkeypatch.setattr("customers.services.audit_record", refuse)


def unraising(user) -> Client:
    """A client that gets the 500 page staff would see, instead of the exception."""
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


# --- On the customer's page ----------------------------------------------------------------


def test_a_superuser_adding_a_member_on_the_customer_page_is_audited(customer, staff_user, pat):
    response = logged_in(staff_user).post(
        page_of(customer), customer_form(customer, (pat, "owner"))
    )

    assert response.status_code == 302
    assert Membership.objects.get(customer=customer).user == pat
    [entry] = entries("customer.membership_added")
    assert (entry.actor, entry.customer, entry.detail["user_id"]) == (staff_user, customer, pat.pk)
    assert audit_sentence(entry) == (
        "staff-user (staff) gave pat@acme.example access to Acme Outdoor as owner"
    )


def test_changing_a_role_on_the_customer_page_is_audited(customer, pat):
    membership = Membership.objects.create(user=pat, customer=customer, role="member")
    mallory = staff_with(*INLINE, "customers.change_membership")

    response = logged_in(mallory).post(
        page_of(customer), customer_form(customer, existing=[(membership, pat, "owner", False)])
    )

    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "owner"
    [entry] = entries("customer.membership_role_changed")
    assert (entry.actor, entry.detail["old_role"], entry.detail["role"]) == (
        mallory,
        "member",
        "owner",
    )
    assert audit_sentence(entry) == (
        "mallory (staff) changed the role of pat@acme.example at Acme Outdoor from member to owner"
    )


def test_removing_a_member_on_the_customer_page_is_audited(customer, pat):
    """Taking someone's access away was a plain delete, written nowhere."""
    membership = Membership.objects.create(user=pat, customer=customer, role="owner")
    mallory = staff_with(*INLINE, "customers.delete_membership")

    response = logged_in(mallory).post(
        page_of(customer), customer_form(customer, existing=[(membership, pat, "owner", True)])
    )

    assert response.status_code == 302
    assert not Membership.objects.exists()
    [entry] = entries("customer.membership_removed")
    assert (entry.actor, entry.customer, entry.detail["email"]) == (
        mallory,
        customer,
        pat.email,
    )
    assert audit_sentence(entry) == (
        "mallory (staff) removed the access of pat@acme.example to Acme Outdoor"
    )


def test_saving_the_customer_page_with_its_members_unchanged_writes_nothing(
    customer, staff_user, pat
):
    membership = Membership.objects.create(user=pat, customer=customer, role="member")

    response = logged_in(staff_user).post(
        page_of(customer), customer_form(customer, existing=[(membership, pat, "member", False)])
    )

    assert response.status_code == 302
    assert not AuditEntry.objects.exists()


def test_a_refused_staff_account_on_the_customer_page_writes_no_membership_and_no_entry(
    customer,
):
    mallory = staff_with(*INLINE, "customers.add_membership")

    response = logged_in(mallory).post(
        page_of(customer), customer_form(customer, (mallory, "owner"))
    )

    assert response.status_code == 200
    assert "Only a superuser may give a staff account access" in response.content.decode()
    assert not Membership.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_member_added_on_the_customer_page_is_not_kept_without_its_entry(
    customer, staff_user, pat, failing_audit
):
    response = unraising(staff_user).post(
        page_of(customer), customer_form(customer, (pat, "owner"))
    )

    assert response.status_code == 500
    assert not Membership.objects.exists()


# --- In the membership admin ---------------------------------------------------------------


def test_adding_in_the_membership_admin_is_audited(customer, pat):
    mallory = staff_with("customers.view_membership", "customers.add_membership")

    response = logged_in(mallory).post(
        f"{MEMBERSHIPS}add/", {"user": pat.pk, "customer": customer.pk, "role": "member"}
    )

    assert response.status_code == 302
    assert Membership.objects.get().user == pat
    [entry] = entries("customer.membership_added")
    assert (entry.actor, entry.customer, entry.detail["role"]) == (mallory, customer, "member")


def test_moving_a_membership_to_another_customer_is_a_removal_and_an_addition(
    customer, other_customer, pat
):
    membership = Membership.objects.create(user=pat, customer=customer, role="owner")
    mallory = staff_with("customers.view_membership", "customers.change_membership")

    response = logged_in(mallory).post(
        f"{MEMBERSHIPS}{membership.pk}/change/",
        {"user": pat.pk, "customer": other_customer.pk, "role": "owner"},
    )

    assert response.status_code == 302
    assert Membership.objects.get().customer == other_customer
    assert sentences() == [
        "mallory (staff) gave pat@acme.example access to Globex Supply as owner",
        "mallory (staff) removed the access of pat@acme.example to Acme Outdoor",
    ]


def test_only_a_superuser_moves_a_staff_accounts_access_to_another_customer(
    customer, other_customer
):
    # Staff with the membership permissions, whose own account is a member of Acme, must
    # not give themselves Globex by moving that membership.
    mallory = staff_with("customers.view_membership", "customers.change_membership")
    membership = Membership.objects.create(user=mallory, customer=customer, role="owner")

    response = logged_in(mallory).post(
        f"{MEMBERSHIPS}{membership.pk}/change/",
        {"user": mallory.pk, "customer": other_customer.pk, "role": "owner"},
    )

    assert response.status_code == 200
    assert "Only a superuser may give a staff account access" in response.content.decode()
    assert Membership.objects.get().customer == customer
    assert not AuditEntry.objects.exists()


def test_the_membership_service_refuses_that_move_too(customer, other_customer):
    from django.core.exceptions import ValidationError

    from customers.services import membership_update

    mallory = staff_with("customers.view_membership", "customers.change_membership")
    membership = Membership.objects.create(user=mallory, customer=customer, role="owner")

    with pytest.raises(ValidationError, match="Only a superuser"):
        membership_update(membership=membership, changed_by=mallory, customer=other_customer)

    assert Membership.objects.get().customer == customer


def test_deleting_in_the_membership_admin_is_audited(customer, staff_user, pat):
    membership = Membership.objects.create(user=pat, customer=customer, role="owner")

    response = logged_in(staff_user).post(f"{MEMBERSHIPS}{membership.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Membership.objects.exists()
    [entry] = entries("customer.membership_removed")
    assert (entry.actor, entry.customer, entry.detail["user_id"]) == (staff_user, customer, pat.pk)


def test_deleting_from_the_membership_list_audits_each_membership(customer, other_customer, pat):
    memberships = [
        Membership.objects.create(user=pat, customer=customer),
        Membership.objects.create(user=pat, customer=other_customer),
    ]
    mallory = staff_with("customers.view_membership", "customers.delete_membership")

    response = logged_in(mallory).post(
        MEMBERSHIPS,
        {
            "action": "delete_selected",
            "_selected_action": [m.pk for m in memberships],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not Membership.objects.exists()
    assert sorted(e.customer.name for e in entries("customer.membership_removed")) == [
        "Acme Outdoor",
        "Globex Supply",
    ]


def test_a_membership_is_not_removed_without_its_entry(customer, staff_user, pat, failing_audit):
    membership = Membership.objects.create(user=pat, customer=customer, role="owner")

    response = unraising(staff_user).post(f"{MEMBERSHIPS}{membership.pk}/delete/", {"post": "yes"})

    assert response.status_code == 500
    assert Membership.objects.filter(pk=membership.pk).exists()
