"""Fixtures for the connections tests that sync or check health against the real sandbox
over HTTP and the real database."""

import pytest

from connections.models import Connection, ResourceSync
from connections.sync.schedule import sync_resources_for
from tests.builders import make_connection


@pytest.fixture
def no_enqueue(monkeypatch):
    """Tasks are run by hand: record what would have been enqueued, as (resource, kind),
    and ("health", connection id) for a health check."""
    from connections.health import services as health
    from connections.sync import schedule

    enqueued = []
    monkeypatch.setattr(
        schedule,
        "sync_send",
        lambda connection_id, resource, kind, full=False: enqueued.append((resource, kind)),
    )
    monkeypatch.setattr(
        health,
        "health_check_enqueue",
        lambda connection_id: enqueued.append(("health", connection_id)),
    )
    return enqueued


@pytest.fixture
def trackstar_settings(settings, sandbox):
    """Point the app's Trackstar client at the test sandbox."""
    settings.TRACKSTAR_BASE_URL = sandbox.base_url
    settings.TRACKSTAR_API_KEY = sandbox.api_key
    return settings


@pytest.fixture
def connect(sandbox, trackstar_settings, customer):
    """Make a connection at the sandbox and its Connection row: connect(integration, **counts).

    By default Trackstar has finished its initial sync already (the sandbox serves data at
    once, and every resource is marked history_ready); `history_ready=False` leaves it as a
    brand-new connection is: the sandbox serves nothing until its historical sync is done."""

    def _connect(
        integration: str = "sandbox", *, customer=customer, history_ready: bool = True, **counts
    ) -> Connection:
        if history_ready:
            sandbox.configure(historical_sync_delay=0)
        made = sandbox.connect(
            integration,
            {"api_key": "k", "username": "u", "password": "p", "company_code": "c", "domain": "d"},
        )
        if counts:
            sandbox.dataset(made["connection_id"], **counts)
        connection = make_connection(
            customer=customer,
            trackstar_connection_id=made["connection_id"],
            integration_name=made["integration_name"],
            access_token=made["access_token"],
            available_actions=made["available_actions"],
        )
        if history_ready:
            ResourceSync.objects.bulk_create(
                [
                    ResourceSync(connection=connection, resource=resource, history_ready=True)
                    for resource in sync_resources_for(connection)
                ]
            )
        return connection

    return _connect
