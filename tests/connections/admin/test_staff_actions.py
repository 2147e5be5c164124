"""Staff operations in admin: every action calls a service and leaves an audit entry."""

import json

import pytest
from django.core import mail

from audit.models import AuditEntry
from connections.link import magic_links as magic_link_service
from connections.models import AuthCodeExchange, Connection, MagicLink
from tests.builders import make_connection, make_link_token, make_user


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def actions(action: str):
    return list(AuditEntry.objects.filter(action=action))


def test_issuing_a_magic_link_shows_the_url_once(staff, customer, staff_user):
    response = staff.post(
        "/admin/connections/magiclink/add/",
        {
            "customer": customer.pk,
            "expires_in_days": 7,
            "max_uses": 2,
        },
    )
    assert response.status_code == 302  # a reload of the next page cannot issue another
    stored = json.dumps(dict(staff.session))

    page = staff.get(response["Location"])
    again = staff.get(response["Location"]).content.decode()

    html = page.content.decode()
    assert 'id="magic-link-url"' in html and "/connect/" in html
    assert "no-store" in page["Cache-Control"]
    token = html.split("/connect/", 1)[1].split("/", 1)[0]
    assert token not in stored  # the session held it encrypted, and holds nothing now
    assert token not in again and "cannot be shown again" in again
    link = MagicLink.objects.get()
    assert (link.customer, link.max_uses, link.created_by) == (customer, 2, staff_user)
    assert actions("magic_link.issued")[0].actor == staff_user


def test_issue_form_refuses_more_than_30_days(staff, customer):
    response = staff.post(
        "/admin/connections/magiclink/add/",
        {
            "customer": customer.pk,
            "expires_in_days": 45,
            "max_uses": 1,
        },
    )

    assert response.status_code == 200
    assert MagicLink.objects.count() == 0


def test_revoke_action(staff, customer, staff_user):

    link = magic_link_service.magic_link_issue(customer=customer, created_by=staff_user).link

    staff.post("/admin/connections/magiclink/", {"action": "revoke", "_selected_action": [link.pk]})

    link.refresh_from_db()
    assert link.revoked_at is not None and link.state == MagicLink.State.REVOKED
    assert actions("magic_link.revoked")[0].actor == staff_user


def test_funnel_filter(staff, customer, staff_user):

    opened = magic_link_service.magic_link_issue(customer=customer, created_by=staff_user).link
    magic_link_service.magic_link_issue(customer=customer, created_by=staff_user)
    magic_link_service.magic_link_open(link=opened)

    response = staff.get("/admin/connections/magiclink/?funnel=opened")

    assert [link.pk for link in response.context["cl"].result_list] == [opened.pk]


def test_import_a_valid_token(staff, customer, staff_user, trackstar):
    made = trackstar.connect("shipbob", {"api_key": "sk_1"})

    response = staff.post(
        f"/admin/customers/customer/{customer.pk}/import-token/",
        {"access_token": made["access_token"]},
    )

    assert response.status_code == 302
    connection = Connection.objects.get()
    assert connection.trackstar_connection_id == made["connection_id"]
    assert connection.integration_name == "shipbob"
    assert connection.source == Connection.Source.IMPORT
    assert connection.access_token == made["access_token"]
    assert trackstar.connection(made["connection_id"])["customer_id"] == customer.public_id
    assert actions("connection.imported")[0].actor == staff_user


def test_import_refuses_an_invalid_token(staff, customer, trackstar):
    response = staff.post(
        f"/admin/customers/customer/{customer.pk}/import-token/",
        {"access_token": "trackstar_not_a_token"},
    )

    assert response.status_code == 200
    assert "does not accept this access token" in response.content.decode()
    assert Connection.objects.count() == 0


def test_import_refuses_a_duplicate(staff, customer, other_customer, trackstar):
    made = trackstar.connect("shipbob", {"api_key": "sk_1"})
    make_connection(customer=other_customer, trackstar_connection_id=made["connection_id"])

    response = staff.post(
        f"/admin/customers/customer/{customer.pk}/import-token/",
        {"access_token": made["access_token"]},
    )

    assert "already in Dockside" in response.content.decode()
    assert Connection.objects.count() == 1
    # Trackstar still has the other customer's id on it.
    assert trackstar.connection(made["connection_id"])["customer_id"] != customer.public_id


def test_disconnect_action_deletes_at_trackstar(staff, customer, staff_user, trackstar):
    made = trackstar.connect("shipbob", {"api_key": "sk_1"})
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
    )

    confirm = staff.post(
        "/admin/connections/connection/",
        {"action": "disconnect", "_selected_action": [connection.pk]},
    )
    connection.refresh_from_db()
    assert confirm.status_code == 200 and "Yes, disconnect" in confirm.content.decode()
    assert connection.status == Connection.Status.ACTIVE  # nothing happens before confirming

    staff.post(
        "/admin/connections/connection/",
        {"action": "disconnect", "confirm": "yes", "_selected_action": [connection.pk]},
    )
    connection.refresh_from_db()
    assert connection.status == Connection.Status.DISCONNECTED
    assert connection.access_token == ""
    assert trackstar.get(f"/_sandbox/connections/{made['connection_id']}").status_code == 404
    assert actions("connection.disconnected")[0].actor == staff_user


def test_disconnecting_revokes_its_reconnect_links(customer, staff_user, trackstar):
    from connections import services

    made = trackstar.connect("shipbob", {"api_key": "sk_1"})
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
    )
    link = magic_link_service.magic_link_issue(
        customer=customer, created_by=staff_user, reinstall_connection=connection
    ).link

    services.connection_disconnect(connection=connection, actor=staff_user)

    link.refresh_from_db()
    assert link.state == MagicLink.State.REVOKED


def test_pause_and_resume_actions(staff, connection):
    staff.post(
        "/admin/connections/connection/",
        {"action": "pause_syncing", "_selected_action": [connection.pk]},
    )
    connection.refresh_from_db()
    assert connection.sync_paused is True
    staff.post(
        "/admin/connections/connection/",
        {"action": "resume_syncing", "_selected_action": [connection.pk]},
    )
    connection.refresh_from_db()
    assert connection.sync_paused is False
    assert len(actions("connection.sync_paused")) == len(actions("connection.sync_resumed")) == 1


def test_send_reconnect_link_action(staff, connection, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        staff.post(
            "/admin/connections/connection/",
            {"action": "send_reconnect_link", "_selected_action": [connection.pk]},
        )

    link = MagicLink.objects.get()
    assert link.reinstall_connection == connection
    assert mail.outbox[0].to == [connection.customer.contact_email]
    assert "Reconnect" in mail.outbox[0].subject
    assert "Shipbob connection of" in mail.outbox[0].body  # names the WMS to reconnect
    assert actions("magic_link.issued")[0].connection == connection


def test_invite_a_portal_user(
    staff, customer, staff_user, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            f"/admin/customers/customer/{customer.pk}/invite/",
            {"email": "new.person@acme.example", "username": "newperson"},
        )

    assert response.status_code == 302
    assert customer.memberships.filter(user__username="newperson").exists()
    body = mail.outbox[0].body
    url = next(word for word in body.split() if "/portal/welcome/" in word)
    assert actions("customer.user_invited")[0].actor == staff_user
    # The invitation link lets them choose a password and lands them in the portal.
    client.logout()
    path = url.split("127.0.0.1:8000", 1)[1]
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a-long-Fresh-passw0rd", "new_password2": "a-long-Fresh-passw0rd"},
    )
    assert done.status_code == 302 and done["Location"] == "/portal/"
    assert client.get("/portal/").context["customer"] == customer


def test_staff_store_token_records_staff_and_who(
    staff, customer, staff_user, django_capture_on_commit_callbacks
):
    # As the staff page's get-link-token handed it to this staff user.
    link_token = make_link_token(customer=customer, user=staff_user, source="staff")
    with django_capture_on_commit_callbacks(execute=False):
        response = staff.post(
            f"/admin/customers/customer/{customer.pk}/connect/store-token",
            json.dumps(
                {"auth_code": "ac_staff", "integration_name": "shipbob", "link_token": link_token}
            ),
            content_type="application/json",
        )

    assert response.status_code == 202
    assert response.json()["status_url"].startswith(
        f"/admin/customers/customer/{customer.pk}/connect/exchanges/"
    )
    exchange = AuthCodeExchange.objects.get()
    assert (exchange.source, exchange.created_by) == (Connection.Source.STAFF, staff_user)
    assert actions("connection.credentials_entered")[0].customer == customer
    assert staff.get(response.json()["status_url"]).json()["status"] == "pending"


@pytest.mark.parametrize(
    "url",
    [
        "/admin/customers/customer/{pk}/connect/",
        "/admin/customers/customer/{pk}/import-token/",
        "/admin/customers/customer/{pk}/invite/",
        "/admin/connections/magiclink/add/",
        "/admin/audit/auditentry/",
    ],
)
def test_non_staff_cannot_reach_staff_screens(client, portal_user, customer, url):
    client.force_login(portal_user)

    response = client.get(url.format(pk=customer.pk))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_store_token_takes_only_a_link_token_minted_for_that_customer(
    staff, customer, other_customer, staff_user
):
    # Staff's page for Globex minted this one; the code is submitted on Acme's page.
    theirs = make_link_token(customer=other_customer, user=staff_user, source="staff")

    response = staff.post(
        f"/admin/customers/customer/{customer.pk}/connect/store-token",
        json.dumps({"auth_code": "ac_staff", "integration_name": "shipbob", "link_token": theirs}),
        content_type="application/json",
    )

    assert response.status_code == 403
    assert AuthCodeExchange.objects.count() == 0


def test_non_staff_cannot_post_to_staff_link_endpoints(client, portal_user, customer):
    client.force_login(portal_user)

    response = client.post(
        f"/admin/customers/customer/{customer.pk}/connect/store-token",
        json.dumps({"auth_code": "x", "integration_name": "shipbob"}),
        content_type="application/json",
    )

    assert response.status_code == 302
    assert AuthCodeExchange.objects.count() == 0


def test_audit_log_is_read_only(staff, connection, staff_user):
    from connections import services

    services.connection_set_paused(connection=connection, paused=True, actor=staff_user)
    entry = AuditEntry.objects.get()

    assert staff.get("/admin/audit/auditentry/").status_code == 200
    assert staff.get("/admin/audit/auditentry/add/").status_code == 403
    assert staff.post(f"/admin/audit/auditentry/{entry.pk}/delete/").status_code == 403


def test_the_audit_logs_old_address_still_opens_it(staff):
    # Before the audit log was its own app it lived under /admin/connections/: bookmarks
    # and links pasted into tickets keep their filters.
    response = staff.get("/admin/connections/auditentry/?action=connection.paused")

    assert response.status_code == 302
    assert response["Location"] == "/admin/audit/auditentry/?action=connection.paused"
    entry_page = staff.get("/admin/connections/auditentry/42/change/")
    assert entry_page["Location"] == "/admin/audit/auditentry/42/change/"


def test_portal_login_locks_out_after_repeated_failures(client, portal_user):
    for _ in range(5):
        client.post(
            "/portal/login/", {"username": portal_user.username, "password": "wrong-password"}
        )

    response = client.post(
        "/portal/login/", {"username": portal_user.username, "password": "correct-horse-battery"}
    )

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page
    # How long, whom to write to, and the way back: not a dead end.
    assert "paused for 15 minutes" in page
    assert "support@dockside.local" in page
    assert 'href="/portal/login/"' in page
    assert response["Retry-After"] == "900"


def test_view_only_staff_cannot_run_actions(client, customer):
    from django.contrib.auth.models import Permission

    viewer = make_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_connection", "view_magiclink"])
    )
    connection = make_connection(customer=customer)
    client.force_login(viewer)

    listing = client.get("/admin/connections/connection/")
    response = client.post(
        "/admin/connections/connection/",
        {"action": "disconnect", "confirm": "yes", "_selected_action": [connection.pk]},
    )

    assert listing.status_code == 200
    action_form = listing.context["action_form"]
    offered = [name for name, _ in action_form.fields["action"].choices] if action_form else []
    assert "disconnect" not in offered
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert response.status_code in (200, 302)
