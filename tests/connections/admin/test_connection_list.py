from tests.builders import make_connection


def test_connection_admin_never_renders_the_token(client, staff_user, customer):
    conn = make_connection(customer=customer, access_token="trackstar_eyVERYSECRETTOKEN42")
    client.force_login(staff_user)

    change = client.get(f"/admin/connections/connection/{conn.pk}/change/")
    listing = client.get("/admin/connections/connection/?q=shipbob")

    assert change.status_code == 200
    assert listing.status_code == 200
    for response in (change, listing):
        assert "VERYSECRETTOKEN" not in response.content.decode()
    assert "trac••••••••EN42" in change.content.decode()


def test_connection_admin_filters_by_status(client, staff_user, customer):
    make_connection(customer=customer, status="active", trackstar_connection_id="conn_live")
    make_connection(customer=customer, status="needs_reconnect", trackstar_connection_id="conn_bad")
    client.force_login(staff_user)

    response = client.get("/admin/connections/connection/?status__exact=needs_reconnect")

    ids = [c.trackstar_connection_id for c in response.context["cl"].result_list]
    assert ids == ["conn_bad"]
