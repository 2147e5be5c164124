from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from connections.link import exchanges as exchange_service
from connections.models import Connection, ResourceSync, SyncRun, WebhookEvent
from tests.builders import make_connection


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def synced(customer):
    connection = make_connection(
        customer=customer, available_actions=["get_orders", "get_inventory"]
    )
    now = timezone.now()
    ResourceSync.objects.create(
        connection=connection,
        resource="orders",
        last_success_at=now - timedelta(minutes=3),
        next_sync_at=now + timedelta(minutes=12),
    )
    ResourceSync.objects.create(
        connection=connection, resource="inventory", last_success_at=now - timedelta(days=1)
    )
    SyncRun.objects.create(
        connection=connection,
        resource="orders",
        kind="incremental",
        status="succeeded",
        pages=3,
        records=2500,
        finished_at=now,
    )
    return connection


def test_the_sync_panel_shows_each_resource(staff, synced):
    html = staff.get(f"/admin/connections/connection/{synced.pk}/change/").content.decode()

    assert "Sync panel" in html
    assert "Incremental succeeded</a>: 2500 records, 3 pages" in html
    assert ">fresh<" in html and ">stale<" in html
    assert html.count("Resync now") >= 2


def test_reread_one_resource_enqueues_it_and_audits(
    staff, synced, staff_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            f"/admin/connections/connection/{synced.pk}/resync/?resource=orders&mode=reread"
        )

    assert response.status_code == 302
    assert len(callbacks) == 1
    entry = AuditEntry.objects.get(action="connection.reread_requested")
    assert (entry.actor, entry.detail["resources"]) == (staff_user, ["orders"])


def test_resync_now_asks_trackstar_to_refresh_first_and_reads_later(
    staff, customer, staff_user, trackstar, django_capture_on_commit_callbacks
):
    made = trackstar.connect("sandbox", {"api_key": "k"})
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
        available_actions=["get_orders", "get_inventory"],
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            f"/admin/connections/connection/{connection.pk}/resync/?resource=orders", follow=True
        )

    assert "Trackstar is refreshing orders from the WMS" in response.content.decode()
    assert callbacks == []  # nothing is read until Trackstar says it is done
    orders = ResourceSync.objects.get(connection=connection, resource="orders")
    assert orders.force_sync_requested_at is not None
    entry = AuditEntry.objects.get(action="connection.force_sync_requested")
    assert (entry.actor, entry.detail["resources"]) == (staff_user, ["orders"])
    panel = staff.get(f"/admin/connections/connection/{connection.pk}/change/").content.decode()
    assert "Trackstar is refreshing from the WMS" in panel


def test_resync_of_a_disconnected_connection_is_refused(
    staff, synced, django_capture_on_commit_callbacks
):
    Connection.objects.filter(pk=synced.pk).update(status=Connection.Status.DISCONNECTED)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(f"/admin/connections/connection/{synced.pk}/resync/", follow=True)

    assert "only an active connection can sync" in response.content.decode()
    assert callbacks == []


def test_failed_runs_can_be_retried(staff, synced, django_capture_on_commit_callbacks):
    failed = SyncRun.objects.create(
        connection=synced,
        resource="inventory",
        kind="incremental",
        status="failed",
        error="Trackstar stayed unreachable",
    )

    listing = staff.get("/admin/connections/syncrun/?status__exact=failed")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post(
            "/admin/connections/syncrun/", {"action": "retry", "_selected_action": [failed.pk]}
        )

    assert [r.pk for r in listing.context["cl"].result_list] == [failed.pk]
    assert len(callbacks) == 1


def test_failed_webhooks_can_be_retried(staff, synced, django_capture_on_commit_callbacks):
    event = WebhookEvent.objects.create(
        svix_id="msg_f",
        event_type="order.updated",
        connection=synced,
        payload={},
        status="failed",
        error="boom",
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post(
            "/admin/connections/webhookevent/", {"action": "retry", "_selected_action": [event.pk]}
        )

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert len(callbacks) == 1
    assert AuditEntry.objects.filter(action="webhook.retried").count() == 1


def test_a_backfill_is_requested_shown_and_cancelled_at_trackstar(staff, customer, trackstar):
    from connections.models import Backfill

    made = trackstar.connect("sandbox", {"api_key": "k"})
    trackstar.configure(on_demand_sync_delay=60)  # stays open while the test looks at it
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
    )
    url = f"/admin/connections/connection/{connection.pk}"

    assert "Backfill history" in staff.get(f"{url}/change/").content.decode()
    response = staff.post(
        f"{url}/backfill/",
        {"resource": "orders", "start_time": "2026-01-01", "end_time": "2026-01-31"},
        follow=True,
    )

    assert "Trackstar is backfilling orders" in response.content.decode()
    backfill = Backfill.objects.get()
    assert (backfill.status, backfill.resource) == ("open", "orders")
    job = trackstar.get(
        f"/connections/on-demand-syncs/{backfill.trackstar_job_id}",
        headers=trackstar.token_headers(made["access_token"]),
    ).json()["data"]
    assert (job["function_name"], job["requested_start_time"][:10]) == ("get_orders", "2026-01-01")
    page = staff.get(f"{url}/change/").content.decode()
    assert "History backfills" in page and "Running at Trackstar" in page

    staff.post(f"{url}/backfill/{backfill.pk}/cancel/")

    backfill.refresh_from_db()
    assert backfill.status == "cancelled"
    job = trackstar.get(
        f"/connections/on-demand-syncs/{backfill.trackstar_job_id}",
        headers=trackstar.token_headers(made["access_token"]),
    ).json()["data"]
    assert job["status"] == "cancelled"
    assert AuditEntry.objects.filter(action="connection.backfill_cancelled").exists()


def test_inventory_cannot_be_backfilled(staff, synced):
    response = staff.post(
        f"/admin/connections/connection/{synced.pk}/backfill/",
        {"resource": "inventory", "start_time": "2026-01-01", "end_time": "2026-01-31"},
    )

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-02-01", "2026-01-01", "must not be after the end day"),
        ("9999-12-31", "9999-12-31", "covers days in the past"),
        ("2026-01-01", "9999-12-31", None),  # up to now: Trackstar is asked (none here)
        ("garbage", "2026-01-01", "Enter a valid date"),
    ],
)
def test_a_backfill_window_that_makes_no_sense_is_refused_clearly(
    staff, synced, start, end, message
):
    from connections.models import Backfill

    response = staff.post(
        f"/admin/connections/connection/{synced.pk}/backfill/",
        {"resource": "orders", "start_time": start, "end_time": end},
    )

    assert response.status_code == 200
    if message:
        assert message in response.content.decode()
    assert not Backfill.objects.exists()


def test_staff_rename_a_connection_and_it_is_audited(staff, synced, staff_user):
    url = f"/admin/connections/connection/{synced.pk}/change/"
    data = change_form_data(staff, url, synced, label="ShipBob EU")

    response = staff.post(url, data)

    assert response.status_code == 302
    synced.refresh_from_db()
    assert synced.label == "ShipBob EU"
    entry = AuditEntry.objects.get(action="connection.renamed")
    assert (entry.actor, entry.detail["new"]) == (staff_user, "ShipBob EU")
    assert "ShipBob EU" in staff.get("/admin/connections/connection/").content.decode()


def test_resync_now_with_a_refused_api_key_raises_the_alarm(staff, customer, trackstar):
    from connections.models import TrackstarAccount

    made = trackstar.connect("sandbox", {"api_key": "k"})
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
    )
    trackstar.configure(api_key="a-key-we-do-not-have")

    response = staff.post(f"/admin/connections/connection/{connection.pk}/resync/", follow=True)

    page = response.content.decode()
    assert "Trackstar refuses our API key" in page  # the message and the banner
    assert TrackstarAccount.objects.get().key_rejected_at is not None
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE  # the customer's WMS is fine
    assert not ResourceSync.objects.filter(force_sync_requested_at__isnull=False).exists()


def test_a_link_token_refused_for_our_api_key_alerts_staff(customer, trackstar):
    from connections.models import TrackstarAccount
    from connections.trackstar import TrackstarAuthError

    trackstar.configure(api_key="a-key-we-do-not-have")

    with pytest.raises(TrackstarAuthError):
        exchange_service.link_token_create(customer=customer)

    assert TrackstarAccount.objects.get().key_rejected_at is not None


def test_a_customer_is_told_plainly_when_our_api_key_is_refused(client, customer, trackstar):
    from tests.builders import make_user

    client.force_login(make_user(customer=customer))
    trackstar.configure(api_key="a-key-we-do-not-have")

    response = client.post("/portal/get-link-token", {}, content_type="application/json")

    assert response.status_code == 503
    message = response.json()["error"]
    assert "try again later" in message and "401" not in message and "key" not in message


@pytest.mark.parametrize(
    ("label", "message"),
    [("   ", "Give the connection a name."), ("shipbob main", "already called")],
)
def test_a_bad_name_in_admin_is_a_form_error_not_a_500(staff, synced, label, message):
    make_connection(customer=synced.customer, label="ShipBob Main")
    url = f"/admin/connections/connection/{synced.pk}/change/"
    data = change_form_data(staff, url, synced, label=label)

    response = staff.post(url, data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not AuditEntry.objects.filter(action="connection.renamed").exists()


def change_form_data(staff, url, connection, **fields):
    """What the connection's change form posts: the fields, plus the inlines' own ids."""
    page = staff.get(url)
    data = dict(fields)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(
            {f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()}
        )
        for form in formset.forms:
            data[form.add_prefix("id")] = form.instance.pk
            data[form.add_prefix("connection")] = connection.pk
    return data


def test_the_backfill_form_offers_only_what_trackstar_can_backfill(staff, synced):
    page = staff.get(f"/admin/connections/connection/{synced.pk}/backfill/").content.decode()

    for offered in ("Orders", "Products", "Returns", "Inbound shipments"):
        assert f">{offered}<" in page
    for not_offered in ("Inventory", "Warehouses", "Shipping methods"):
        assert f">{not_offered}<" not in page


def test_a_second_reread_while_the_first_is_queued_joins_it_and_the_panel_says_so(
    staff, synced, django_capture_on_commit_callbacks
):
    url = f"/admin/connections/connection/{synced.pk}/resync/?resource=orders&mode=reread"
    with django_capture_on_commit_callbacks(execute=False) as first:
        staff.post(url)
    with django_capture_on_commit_callbacks(execute=False) as second:
        response = staff.post(url, follow=True)

    assert "Re-reading orders of Shipbob of Acme Outdoor from Trackstar." in (
        response.content.decode()
    )
    assert (len(first), len(second)) == (1, 0)  # one message: the second press joined
    orders = ResourceSync.objects.get(connection=synced, resource="orders")
    assert (orders.requested_kind, orders.requested_full) == ("manual", True)
    panel = staff.get(f"/admin/connections/connection/{synced.pk}/change/").content.decode()
    assert "Queued (Re-read, asked just now)" in panel
