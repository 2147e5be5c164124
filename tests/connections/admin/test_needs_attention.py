"""The staff "Needs attention" page: what needs a person, each with what fixes it."""

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from connections.link import magic_links as magic_link_service
from connections.models import (
    Connection,
    MagicLink,
    ResourceSync,
    SyncRun,
    UnassignedConnection,
)
from tests.builders import make_connection, make_customer

from .conftest import staff_with

URL = "/admin/connections/connection/needs-attention/"


def _world(customer, n: int = 1):
    """n of each kind of trouble, and a healthy connection that must not show."""
    now = timezone.now()
    made = {}
    for i in range(n):
        broken = make_connection(
            customer=customer,
            status=Connection.Status.NEEDS_RECONNECT,
            reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
            label=f"Broken {i}",
        )
        no_access = make_connection(customer=customer, label=f"NoAccess {i}")
        ResourceSync.objects.create(
            connection=no_access,
            resource="returns",
            permission_error="No access to returns.",
            permission_error_at=now,
            last_success_at=now,
        )
        retrying = make_connection(customer=customer, label=f"Retrying {i}")
        run = SyncRun.objects.create(
            connection=retrying,
            resource="orders",
            kind="initial",
            attempts=3,
            error="Trackstar is busy or unreachable; will retry (timeout).",
        )
        ResourceSync.objects.create(
            connection=retrying, resource="orders", current_run=run, last_success_at=now
        )
        failed = make_connection(customer=customer, label=f"Failed {i}")
        ResourceSync.objects.create(
            connection=failed,
            resource="inventory",
            last_error="Trackstar refused the sync: bad filter",
            last_success_at=now,
        )
        stale = make_connection(customer=customer, label=f"Stale {i}")
        ResourceSync.objects.create(
            connection=stale,
            resource="orders",
            interval_seconds=900,
            last_success_at=now - timedelta(hours=1),
        )
        UnassignedConnection.objects.create(
            trackstar_connection_id=f"conn_unassigned_{i}_{customer.pk}",
            integration_name="shiphero",
            seen_via=UnassignedConnection.SeenVia.RECONCILE,
        )
        link = magic_link_service.magic_link_issue(customer=customer, created_by=None).link
        MagicLink.objects.filter(pk=link.pk).update(expires_at=now + timedelta(hours=5))
        made.setdefault("broken", broken)
        made.setdefault("stale", stale)
        made.setdefault("failed", failed)
        made.setdefault("link", link)
    healthy = make_connection(customer=customer, label="Healthy one")
    ResourceSync.objects.create(
        connection=healthy, resource="orders", interval_seconds=900, last_success_at=now
    )
    # A fresh link (days left) and a used one: not about to expire unused.
    magic_link_service.magic_link_issue(customer=customer, created_by=None, expires_in_days=7)
    return made


def test_each_kind_of_trouble_is_listed_with_what_fixes_it(staff, customer):
    made = _world(customer)

    page = staff.get(URL).content.decode()

    assert "Broken 0" in page and "The WMS refused the saved credentials" in page
    assert "Send reconnect link to ops@acme-outdoor.example" in page
    assert "NoAccess 0" in page and "No access to returns." in page
    assert "Granted: read Returns again" in page
    # A retrying run says so, with its attempts and last error (not "Running: 0 pages").
    assert "Retrying, attempt 3" in page and "will retry (timeout)" in page
    assert "Failed 0" in page and "Trackstar refused the sync: bad filter" in page
    assert "Retry now" in page
    assert "Stale 0" in page and "Every 15 min" in page
    assert (
        f'action="/admin/connections/connection/{made["stale"].pk}/resync/?resource=orders"' in page
    )
    assert "conn_unassigned_0_" in page and "Assign to a customer" in page
    assert f"/admin/connections/magiclink/{made['link'].pk}/change/" in page
    assert "Issue a new link" in page
    assert "Healthy one" not in page
    assert page.count("Never opened") == 1  # the fresh 7-day link is not about to expire


def test_the_admin_index_links_to_it(staff):
    index = staff.get("/admin/").content.decode()

    assert 'id="needs-attention-link"' in index and f'href="{URL}"' in index


def test_nothing_to_do_says_so(staff, customer):
    healthy = make_connection(customer=customer)
    ResourceSync.objects.create(
        connection=healthy, resource="orders", last_success_at=timezone.now()
    )

    page = staff.get(URL).content.decode()

    assert page.count("Nothing here.") == 6


def test_constant_queries_whatever_the_number_of_rows(
    staff, customer, django_assert_max_num_queries
):
    _world(customer, n=1)
    staff.get(URL)  # warm: session, permissions, content types
    with django_assert_max_num_queries(14) as one:
        small = staff.get(URL)
    _world(make_customer(name="Bigger Co"), n=12)
    with django_assert_max_num_queries(len(one.captured_queries)) as many:
        big = staff.get(URL)

    assert small.status_code == big.status_code == 200
    assert len(many.captured_queries) == len(one.captured_queries)
    assert big.content.decode().count('data-row="stale-') == 13


def test_the_reconnect_button_sends_the_link_and_comes_back(
    staff, customer, django_capture_on_commit_callbacks
):
    made = _world(customer)
    broken = made["broken"]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            f"/admin/connections/connection/{broken.pk}/act/reconnect-link/",
            {"next": URL},
            follow=True,
        )

    assert response.redirect_chain[-1][0] == URL
    assert "Reconnect link sent to ops@acme-outdoor.example for Broken 0 of Acme Outdoor" in (
        response.content.decode()
    )
    assert [m.to for m in mail.outbox] == [["ops@acme-outdoor.example"]]
    assert MagicLink.objects.filter(reinstall_connection=broken).count() == 1


def test_the_retry_button_rereads_the_failed_resource(
    staff, customer, django_capture_on_commit_callbacks
):
    failed = _world(customer)["failed"]

    with django_capture_on_commit_callbacks(execute=False):
        response = staff.post(
            f"/admin/connections/connection/{failed.pk}/resync/?resource=inventory&mode=reread",
            {"next": URL},
            follow=True,
        )

    assert response.redirect_chain[-1][0] == URL
    assert "Re-reading inventory of Failed 0 of Acme Outdoor from Trackstar." in (
        response.content.decode()
    )
    assert ResourceSync.objects.get(connection=failed, resource="inventory").requested_at


def test_an_offsite_next_is_not_followed(staff, customer):
    broken = _world(customer)["broken"]

    response = staff.post(
        f"/admin/connections/connection/{broken.pk}/act/pause/",
        {"next": "https://evil.example/admin/"},
    )

    assert response["Location"] == f"/admin/connections/connection/{broken.pk}/change/"


def test_view_only_staff_see_the_list_but_no_buttons(viewer, customer):
    _world(customer)

    page = viewer.get(URL).content.decode()

    assert "Broken 0" in page and "Stale 0" in page
    assert 'type="submit" class="button' not in page
    assert "Send reconnect link" not in page and "Retry now" not in page
    assert "Assign to a customer" not in page


def test_staff_without_view_permission_are_refused(client, customer):
    client.force_login(staff_with("view_magiclink", username="links-only"))

    assert client.get(URL).status_code == 403


def test_links_are_left_out_for_staff_who_may_not_see_them(client, customer):
    _world(customer)
    client.force_login(staff_with("view_connection", username="conn-only"))

    page = client.get(URL).content.decode()

    assert "Broken 0" in page
    assert "Magic links about to expire" not in page


def test_portal_users_are_sent_to_the_login(client, portal_user):
    client.force_login(portal_user)

    response = client.get(URL)

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_page_fits_1280_px(transactional_db, live_server, page):
    from tests.e2e.conftest import login

    staff_with("view_connection", "change_connection", "view_magiclink", username="ops")
    _world(make_customer(name="Acme Outdoor"), n=3)
    page.set_viewport_size({"width": 1280, "height": 900})
    login(page, live_server, "ops", url="/admin/login/")
    page.goto(f"{live_server.url}{URL}")

    assert page.locator("h1").inner_text() == "Needs attention"
    assert page.locator("#stale tbody tr").count() == 3
    assert (
        page.get_by_role("button", name="Send reconnect link to ops@acme-outdoor.example").count()
        == 3
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
