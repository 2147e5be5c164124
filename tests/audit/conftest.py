import pytest

from tests.builders import make_connection, make_user


@pytest.fixture
def jane(db):
    return make_user(
        username="jane", first_name="Jane", last_name="Doe", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff(client, jane):
    client.force_login(jane)
    return client


@pytest.fixture
def owner(client, portal_user):
    client.force_login(portal_user)
    return client


@pytest.fixture
def live(trackstar, customer):
    """A ShipBob connection that Trackstar (the sandbox) has, with its token."""
    made = trackstar.connect("shipbob", {"api_key": "sk_1"})
    return make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
        available_actions=made["available_actions"],
        label="ShipBob",
    )
