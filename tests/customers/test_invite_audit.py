"""An invitation is audited by the invite itself: the entry and the membership are written
together, and a refusal is written although the invite raises."""

from smtplib import SMTPException

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.test import Client

from audit.models import AuditEntry
from audit.sentences import audit_sentence
from customers.models import Membership
from customers.services import portal_user_invite
from tests.builders import make_user
from tests.customers.helpers import invite, logged_in, staff_with


def test_a_refused_invite_writes_the_refusal_and_no_membership(customer):
    mallory = staff_with("customers.add_membership")
    colleague = staff_with(username="colleague")

    with pytest.raises(ValidationError, match="Only a superuser"):
        portal_user_invite(
            customer=customer, email=colleague.email, invited_by=mallory, role="owner"
        )

    assert not Membership.objects.exists()
    entry = AuditEntry.objects.select_related("actor", "customer").get()
    assert (entry.action, entry.actor, entry.customer) == (
        "customer.user_invite_refused",
        mallory,
        customer,
    )
    assert entry.detail["email"] == colleague.email and entry.detail["role"] == "owner"
    assert "Only a superuser may give a staff account access" in entry.detail["reason"]
    assert audit_sentence(entry) == (
        f"mallory (staff) was refused inviting {colleague.email} to Acme Outdoor"
    )


def test_inviting_someone_who_already_has_access_is_refused_and_audited(customer, staff_user):
    member = make_user(username="pat", email="pat@acme.example", customer=customer)

    response = invite(logged_in(staff_user), customer, member.email)

    assert response.status_code == 200
    assert "already has access to Acme Outdoor" in response.content.decode()
    [refused] = AuditEntry.objects.filter(action="customer.user_invite_refused")
    assert refused.detail["email"] == member.email
    assert not AuditEntry.objects.filter(action="customer.user_invited").exists()


def test_an_invite_writes_one_entry_with_its_membership(customer, staff_user):
    response = invite(logged_in(staff_user), customer, "new@acme.example", role="owner")

    assert response.status_code == 302
    user = get_user_model().objects.get(email="new@acme.example")
    assert Membership.objects.get(user=user).customer == customer
    [entry] = AuditEntry.objects.all()
    assert entry.action == "customer.user_invited"
    assert (entry.actor, entry.detail["user_id"], entry.detail["role"]) == (
        staff_user,
        user.pk,
        "owner",
    )


def test_an_invite_is_not_kept_without_its_entry(
    customer, staff_user, monkeypatch, mailoutbox, django_capture_on_commit_callbacks
):
    """The audit write fails: staff see an error, and nobody got an account, access or mail."""

    def refuse(**kwargs):
        raise DatabaseError("the audit log is unavailable")

    monkeypatch.setattr("customers.services.audit_record", refuse)
    client = Client(raise_request_exception=False)
    client.force_login(staff_user)

    # The invitation is sent after the commit: run what would run then.
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(client, customer, "new@acme.example")

    assert response.status_code == 500
    assert not get_user_model().objects.filter(email="new@acme.example").exists()
    assert not Membership.objects.exists()
    assert not [m for m in mailoutbox if "new@acme.example" in m.to]  # (staff got the 500's)


def test_an_invitation_mail_that_fails_does_not_undo_the_invite(
    customer, staff_user, monkeypatch, mailoutbox, django_capture_on_commit_callbacks
):
    def refuse(**kwargs):
        raise SMTPException("mail server down")

    monkeypatch.setattr("customers.services.send_mail", refuse)
    existing = make_user(username="pat", email="pat@acme.example")

    with django_capture_on_commit_callbacks(execute=True):
        response = invite(logged_in(staff_user), customer, existing.email)

    assert response.status_code == 302
    assert Membership.objects.get(user=existing).customer == customer
    assert AuditEntry.objects.get().action == "customer.user_invited"
    assert not [m for m in mailoutbox if existing.email in m.to]
