import time

import pytest

from tests.builders import PASSWORD


@pytest.fixture
def live_trackstar(trackstar, live_server, celery_worker_process):
    """Web (live server), a real worker process and the sandbox, wired together; the
    sandbox's webhooks go to this live server."""
    trackstar.configure(webhook_url=f"{live_server.url}/webhooks/trackstar/")
    return trackstar


def login(page, live_server, username: str, *, url: str = "/portal/login/") -> None:
    page.goto(f"{live_server.url}{url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def connect_in_modal(page, *, integration: str = "ShipBob", api_key: str = "sk_live_123",
                     pick: bool = True) -> None:
    dialog = page.get_by_role("dialog")
    if pick:
        dialog.get_by_role("button", name=integration).click()
    dialog.get_by_label("API key").fill(api_key)
    dialog.get_by_role("button", name="Connect").click()


def wait_for(predicate, *, timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {message}")
