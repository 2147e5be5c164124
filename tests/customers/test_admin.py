from connections.models import Connection
from tests.builders import make_connection


def test_customer_list_counts_connections_by_status(client, staff_user, customer, other_customer):
    make_connection(customer=customer, status=Connection.Status.ACTIVE)
    make_connection(customer=customer, status=Connection.Status.ACTIVE)
    make_connection(customer=customer, status=Connection.Status.NEEDS_RECONNECT)
    client.force_login(staff_user)

    response = client.get("/admin/customers/customer/")

    assert response.status_code == 200
    rows = {c.name: c for c in response.context["cl"].result_list}
    assert (rows["Acme Outdoor"].n_active, rows["Acme Outdoor"].n_attention) == (2, 1)
    assert (rows["Globex Supply"].n_active, rows["Globex Supply"].n_attention) == (0, 0)


def test_customer_list_query_count_does_not_grow(client, staff_user, django_assert_max_num_queries):
    from tests.builders import make_customer

    client.force_login(staff_user)
    for _ in range(30):
        make_connection(customer=make_customer())
    with django_assert_max_num_queries(8):
        assert client.get("/admin/customers/customer/").status_code == 200


def test_admin_is_closed_to_portal_users(client, portal_user):
    client.force_login(portal_user)

    response = client.get("/admin/customers/customer/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_memberships_of_staff_accounts_can_be_listed(client, staff_user, customer, portal_user):
    """A staff account made a customer's member before the invite rule: staff find it."""
    from customers.models import Membership

    Membership.objects.create(user=staff_user, customer=customer)
    client.force_login(staff_user)

    response = client.get("/admin/customers/membership/?user__is_staff__exact=1")

    assert response.status_code == 200
    assert [m.user for m in response.context["cl"].result_list] == [staff_user]
