"""The audit log in admin: a sentence first, read-only, filtered by customer and connection,
searchable, in a constant number of queries."""

import re

from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from connections import services
from tests.builders import make_connection, make_customer

URL = "/admin/audit/auditentry/"


def pause_and_resume(connection, actor):
    services.connection_set_paused(connection=connection, paused=True, actor=actor)
    services.connection_set_paused(connection=connection, paused=False, actor=actor)


def test_the_list_leads_with_the_sentence(staff, jane, customer):
    connection = make_connection(customer=customer, label="ShipBob 2")
    services.connection_set_paused(connection=connection, paused=True, actor=jane)

    html = staff.get(URL).content.decode()

    assert "Jane Doe (staff) paused ShipBob 2 of Acme Outdoor" in html
    header = html.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert re.findall(r"column-(\w+)", header)[0] == "sentence"
    assert "What happened" in header


def test_filtered_by_customer_and_by_connection(staff, jane, customer):
    other = make_customer(name="Globex Supply")
    mine = make_connection(customer=customer, label="ShipBob")
    mine_too = make_connection(customer=customer, label="Deposco")
    theirs = make_connection(customer=other, label="ShipHero")
    for connection in (mine, mine_too, theirs):
        services.connection_set_paused(connection=connection, paused=True, actor=jane)

    by_customer = staff.get(URL, {"customer__id__exact": customer.pk}).content.decode()
    by_connection = staff.get(
        URL, {"customer__id__exact": customer.pk, "connection__id__exact": mine.pk}
    ).content.decode()

    assert "paused ShipBob of Acme Outdoor" in by_customer
    assert "paused Deposco of Acme Outdoor" in by_customer
    assert "ShipHero of Globex Supply" not in by_customer.split('id="changelist-filter"')[0]
    assert "paused ShipBob of Acme Outdoor" in by_connection
    assert "paused Deposco of Acme Outdoor" not in by_connection
    # The sidebar offers the chosen customer's connections.
    sidebar = by_customer.split('id="changelist-filter"', 1)[1]
    assert "Deposco of Acme Outdoor" in sidebar and "ShipHero" not in sidebar


def test_a_garbage_filter_is_an_error_page_not_a_500(staff, jane, connection):
    services.connection_set_paused(connection=connection, paused=True, actor=jane)

    for params in ({"connection__id__exact": "abc"}, {"customer__id__exact": "abc"}):
        response = staff.get(URL, params)
        assert response.status_code == 302 and "e=1" in response["Location"]


def test_a_link_to_a_connection_without_entries_lists_none(staff, jane, connection):
    """Not every entry: a filter that matches nothing says so."""
    services.connection_set_paused(connection=connection, paused=True, actor=jane)

    html = staff.get(URL, {"connection__id__exact": connection.pk + 1000}).content.decode()

    assert "paused" not in html.split('id="changelist-filter"')[0]


def test_filtered_by_who(staff, jane, customer):
    connection = make_connection(customer=customer, label="ShipBob")
    services.connection_set_paused(connection=connection, paused=True, actor=jane)
    services.connection_mark_needs_reconnect(connection_id=connection.pk, reason="Broken.")

    trackstar_only = staff.get(URL, {"by": "trackstar"}).content.decode()

    assert "Trackstar reported ShipBob of Acme Outdoor broken" in trackstar_only
    assert "Jane Doe (staff) paused" not in trackstar_only


def test_search_finds_a_connection_by_its_name(staff, jane, customer):
    pause_and_resume(make_connection(customer=customer, label="ShipBob EU"), jane)
    pause_and_resume(make_connection(customer=customer, label="Deposco"), jane)

    html = staff.get(URL, {"q": "shipbob eu"}).content.decode()

    assert "paused ShipBob EU of Acme Outdoor" in html
    assert "paused Deposco" not in html


def test_constant_queries_whatever_the_number_of_entries(staff, jane, customer):
    def count_queries() -> int:
        with CaptureQueriesContext(db) as queries:
            assert staff.get(URL, {"customer__id__exact": customer.pk}).status_code == 200
        return len(queries)

    pause_and_resume(make_connection(customer=customer, label="ShipBob"), jane)
    few = count_queries()
    for n in range(20):
        pause_and_resume(make_connection(customer=customer, label=f"ShipBob {n + 2}"), jane)
    many = count_queries()

    assert AuditEntry.objects.count() == 42
    assert many == few


def test_an_entry_is_read_only_with_no_save_button(staff, jane, connection):
    services.connection_set_paused(connection=connection, paused=True, actor=jane)
    entry = AuditEntry.objects.get()

    page = staff.get(f"{URL}{entry.pk}/change/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "Jane Doe (staff) paused" in html
    assert 'name="_save"' not in html
    assert staff.get(f"{URL}add/").status_code == 403
    assert staff.post(f"{URL}{entry.pk}/delete/").status_code == 403
    assert staff.post(f"{URL}{entry.pk}/change/", {"action": "x"}).status_code == 403


def test_the_customer_and_connection_pages_link_to_their_audit_log(staff, jane, customer):
    mine = make_connection(customer=customer, label="ShipBob")
    other = make_connection(customer=customer, label="Deposco")
    for connection in (mine, other):
        services.connection_set_paused(connection=connection, paused=True, actor=jane)

    for page, shown, hidden in (
        (f"/admin/connections/connection/{mine.pk}/change/", "ShipBob", "Deposco"),
        (f"/admin/customers/customer/{customer.pk}/change/", "Deposco", None),
    ):
        html = staff.get(page).content.decode()
        href = re.search(r'<a href="([^"]+)" id="view-audit-log"', html)
        assert href, page
        log = staff.get(href.group(1).replace("&amp;", "&")).content.decode()
        listing = log.split('id="changelist-filter"')[0]
        assert f"paused {shown} of Acme Outdoor" in listing
        if hidden:
            assert f"paused {hidden} of Acme Outdoor" not in listing
