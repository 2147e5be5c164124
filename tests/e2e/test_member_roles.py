"""A member whose customer lets members connect: the picker connects a new WMS, but offers
no "Reconnect it" for one already connected (the server would refuse it). Real browser."""

import pytest
from playwright.sync_api import expect

from customers.models import Membership
from tests.builders import make_connection, make_customer, make_user
from tests.e2e.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_member_is_told_to_ask_an_owner_to_reconnect(page, live_server, trackstar):
    acme = make_customer(name="Acme Outdoor", members_can_connect=True)
    make_user(username="acme-member", customer=acme, role=Membership.Role.MEMBER)
    make_connection(customer=acme, integration_name="shipbob", label="ShipBob")
    login(page, live_server, "acme-member")

    expect(page.get_by_role("button", name="Reconnect ShipBob")).to_have_count(0)
    page.get_by_role("button", name="Connect your WMS").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="ShipBob").click()

    expect(dialog.get_by_role("heading", name="You already have ShipBob connected")).to_be_visible()
    expect(dialog).to_contain_text("ask an owner of your account to reconnect it")
    choices = dialog.locator(".wms-choices button")
    expect(choices.first).to_have_text("It is a different ShipBob account")
    expect(dialog.get_by_role("button", name="Reconnect it")).to_have_count(0)
