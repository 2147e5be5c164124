import pytest

from tests.builders import make_connection, make_customer, make_user

_PLUGINS = [
    "tests.plugins.sandbox",
    "tests.plugins.browser",
    "tests.plugins.worker",
]


@pytest.fixture
def customer(db):
    return make_customer(name="Acme Outdoor")


@pytest.fixture
def other_customer(db):
    return make_customer(name="Globex Supply")


@pytest.fixture
def portal_user(customer):
    return make_user(username="acme-user", customer=customer)


@pytest.fixture
def other_portal_user(other_customer):
    return make_user(username="globex-user", customer=other_customer)


@pytest.fixture
def staff_user(db):
    return make_user(username="staff-user", is_staff=True, is_superuser=True)


@pytest.fixture
def connection(customer):
    return make_connection(customer=customer)
pytest_plugins = [p for p in _PLUGINS if __import__("importlib.util").util.find_spec(p)]
