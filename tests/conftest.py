import pytest

from tests.builders import make_connection, make_customer, make_user

pytest_plugins = [
    "tests.plugins.sandbox",
    "tests.plugins.browser",
    "tests.plugins.worker",
    "tests.plugins.redis_server",
    "tests.plugins.integration",
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


@pytest.fixture
def trackstar(settings, sandbox):
    """Point this process's Dockside at the sandbox (as production points at Trackstar)."""
    from django.core.cache import cache

    settings.TRACKSTAR_BASE_URL = sandbox.base_url
    settings.TRACKSTAR_API_KEY = sandbox.api_key
    settings.TRACKSTAR_LINK_SCRIPT_URL = f"{sandbox.base_url}/link/main.js"
    settings.TRACKSTAR_WEBHOOK_SECRET = sandbox.webhook_secret
    cache.clear()
    yield sandbox
    cache.clear()


@pytest.fixture(autouse=True)
def _redis_breakers_closed():
    """A test that made Redis or the broker fail must not leave this process skipping them
    (connections.degrade keeps a failure for 10 s) for the tests after it."""
    from connections import degrade

    degrade.reset()
    yield
    degrade.reset()


@pytest.fixture
def published(monkeypatch):
    """Tasks handed to the broker by connections.enqueue, as (task name, args), instead of
    being published; `published.refuse = n` makes the next n publishes fail as a down
    broker does."""
    from kombu.exceptions import OperationalError as BrokerError

    from config.celery_app import app as celery_app

    class Published(list):
        refuse = 0
        attempts = 0  # publishes tried, refused ones too

    sent = Published()

    def send_task(name, args=(), kwargs=None, **options):
        sent.attempts += 1
        if sent.refuse:
            sent.refuse -= 1
            raise BrokerError("the broker is down")
        sent.append((name, tuple(args), dict(kwargs or {})))

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return sent
