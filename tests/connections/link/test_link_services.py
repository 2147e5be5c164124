"""The Link service called directly, as a new caller would (a task, an admin page, another
view): each rule holds without the JSON endpoints in front of it. The endpoints' own tests
(test_store_token, test_magic_links, test_portal_roles, …) pin the statuses and words."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone

from connections import services
from connections.link import exchanges as exchange_service
from connections.link import magic_links as magic_link_service
from connections.link import services as link_service
from connections.link.errors import LinkRefused
from connections.link.services import LinkActor
from connections.models import AuthCodeExchange, Connection, LinkTokenGrant, MagicLink
from customers.models import Membership
from customers.permissions import PortalAction
from tests.builders import make_connection, make_link_token, make_user


class FakeTrackstar:
    """POST /link/token: counts the calls that reach Trackstar."""

    def __init__(self):
        self.link_tokens = []

    def create_link_token(self, *, customer_id, connection_id=None):
        self.link_tokens.append({"customer_id": customer_id, "connection_id": connection_id})
        return f"lt_fake_{len(self.link_tokens)}"


@pytest.fixture
def trackstar_calls(monkeypatch):
    fake = FakeTrackstar()
    monkeypatch.setattr(exchange_service, "trackstar_client", lambda: fake)
    return fake.link_tokens


@pytest.fixture
def owner(customer, portal_user):
    return LinkActor(customer=customer, source=Connection.Source.PORTAL, user=portal_user)


@pytest.fixture
def member_user(customer):
    return make_user(username="acme-member", customer=customer, role=Membership.Role.MEMBER)


@pytest.fixture
def member(customer, member_user):
    return LinkActor(customer=customer, source=Connection.Source.PORTAL, user=member_user)


@pytest.fixture
def staff(customer, staff_user):
    return LinkActor(customer=customer, source=Connection.Source.STAFF, user=staff_user)


def issue(customer, **kwargs) -> MagicLink:
    return magic_link_service.magic_link_issue(customer=customer, created_by=None, **kwargs).link


def visitor(link: MagicLink) -> LinkActor:
    return link_service.magic_link_actor(link=link, user=None)


def submit(actor: LinkActor, *, integration_name="shipbob", link_token=None, **kwargs):
    if link_token is None:
        link_token = make_link_token(
            customer=actor.customer,
            reinstall=kwargs.pop("reinstall", None),
            user=actor.user if actor.magic_link is None else None,
            magic_link=actor.magic_link,
            source=actor.source,
        )
    return link_service.link_code_submit(
        actor=actor,
        auth_code=kwargs.pop("auth_code", "ac_service"),
        integration_name=integration_name,
        link_token=link_token,
        **kwargs,
    )


@contextmanager
def refused(status: int, match: str | None = None):
    """The block is refused with this status (what the endpoints would answer)."""
    with pytest.raises(LinkRefused, match=match) as info:
        yield info
    assert info.value.status == status, info.value.messages


# --- A link that works ------------------------------------------------------------------------


def test_an_owner_gets_a_link_token_recorded_for_them(owner, customer, trackstar_calls):
    link_token = link_service.link_token_issue(actor=owner)

    assert trackstar_calls == [{"customer_id": customer.public_id, "connection_id": None}]
    grant = LinkTokenGrant.objects.get()
    assert grant.customer == customer and grant.user == owner.user
    assert link_token == "lt_fake_1"


def test_a_code_submitted_is_one_exchange_enqueued_after_commit(
    owner, customer, connection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submitted = submit(owner, reinstall=connection, connection_ref=connection.pk)
        again = submit(owner, reinstall=connection, connection_ref=str(connection.pk))

    assert submitted.created and not again.created
    assert again.exchange == submitted.exchange
    exchange = AuthCodeExchange.objects.get()
    assert exchange.customer == customer and exchange.reinstall_connection == connection
    assert len(callbacks) == 1


def test_the_check_writes_nothing_and_finds_a_retry(owner, customer):
    link_token = make_link_token(customer=customer, user=owner.user)
    code = {"auth_code": "ac_retry", "integration_name": "shipbob", "link_token": link_token}

    first = link_service.link_code_submit_check(actor=owner, **code)
    assert first.existing is None and first.reinstall is None
    assert AuthCodeExchange.objects.count() == 0

    submitted = link_service.link_code_submit(actor=owner, **code)
    assert link_service.link_code_submit_check(actor=owner, **code).existing == submitted.exchange


# --- The magic link's allow list ----------------------------------------------------------------


def test_the_allow_list_is_the_services_not_the_pages(customer):
    link = issue(customer, allowed_integrations=["shiphero"])

    with refused(403, "does not allow that integration"):
        submit(visitor(link), integration_name="shipbob")

    assert AuthCodeExchange.objects.count() == 0
    link.refresh_from_db()
    assert link.use_count == 0


def test_the_allow_list_is_the_links_whatever_the_actor_was_built_with(customer):
    link = issue(customer, allowed_integrations=["shiphero"])
    careless = LinkActor(
        customer=customer, source=Connection.Source.MAGIC_LINK, magic_link=link
    )  # no allowed_integrations copied over

    with refused(403, "does not allow that integration"):
        submit(careless, integration_name="shipbob")
    assert AuthCodeExchange.objects.count() == 0


def test_an_integration_trackstar_does_not_offer_is_refused(owner, monkeypatch):
    from connections import integrations

    monkeypatch.setattr(integrations, "integration_catalog", lambda: {"shipbob": {}})

    with refused(400, "Unknown integration 'nope'"):
        submit(owner, integration_name="nope")


# --- The reinstall (reconnect) target ------------------------------------------------------------


def test_another_customers_connection_is_not_a_reinstall_target(
    owner, staff, other_customer, trackstar_calls
):
    theirs = make_connection(customer=other_customer)

    for actor in (owner, staff):
        with refused(404, "Connection not found."):
            link_service.link_token_issue(actor=actor, connection_ref=theirs.pk)
        with refused(404, "Connection not found."):
            submit(actor, connection_ref=theirs.pk)

    assert trackstar_calls == []
    assert AuthCodeExchange.objects.count() == 0


def test_a_disconnected_connection_cannot_be_reconnected(owner, staff, customer, trackstar_calls):
    gone = make_connection(customer=customer, status=Connection.Status.DISCONNECTED)

    for actor in (owner, staff):
        with refused(409, "was disconnected"):
            link_service.link_token_issue(actor=actor, connection_ref=gone.pk)
        with refused(409, "was disconnected"):
            submit(actor, connection_ref=gone.pk)

    assert trackstar_calls == []
    assert AuthCodeExchange.objects.count() == 0


def test_a_reinstall_link_whose_connection_was_disconnected_reconnects_nothing(
    customer, connection, trackstar_calls
):
    link = issue(customer, reinstall_connection=connection)
    # Gone without the disconnect that revokes its links (a row changed behind our back).
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.DISCONNECTED)
    link = MagicLink.objects.select_related("customer", "reinstall_connection").get(pk=link.pk)

    with refused(409, "was disconnected"):
        link_service.link_token_issue(actor=visitor(link))
    assert trackstar_calls == []


def test_no_reconnect_link_is_issued_for_a_disconnected_connection(customer):
    gone = make_connection(customer=customer, status=Connection.Status.DISCONNECTED)

    with pytest.raises(ValidationError, match="disconnected connection cannot be reconnected"):
        issue(customer, reinstall_connection=gone)
    assert MagicLink.objects.count() == 0


def test_a_reinstall_link_reconnects_its_own_connection_whatever_is_asked(customer, connection):
    other = make_connection(customer=customer)
    link = issue(customer, reinstall_connection=connection)

    target = link_service.link_reinstall_target(actor=visitor(link), connection_ref=other.pk)

    assert target == connection


def test_a_plain_link_reconnects_only_by_its_own_references(customer, connection):
    link = issue(customer)
    other_link = issue(customer)
    actor = visitor(link)

    # Our ids mean nothing to a link's page; another link's reference is refused.
    assert link_service.link_reinstall_target(actor=actor, connection_ref=connection.pk) is None
    with refused(404, "cannot be reconnected from this link"):
        link_service.link_reinstall_target(
            actor=actor,
            connection_ref=link_service.magic_link_reconnect_ref(other_link, connection),
        )
    ref = link_service.magic_link_reconnect_ref(link, connection)
    assert link_service.link_reinstall_target(actor=actor, connection_ref=ref) == connection


def test_a_connection_id_that_is_no_id_is_refused(owner):
    with refused(400, "must be a connection id"):
        link_service.link_reinstall_target(actor=owner, connection_ref="1; DROP TABLE")


# --- A magic link that is spent, expired or revoked ----------------------------------------------


UNUSABLE = [
    pytest.param({"use_count": 1}, id="spent"),
    pytest.param({"expires_at": timezone.now() - timedelta(minutes=1)}, id="expired"),
    pytest.param({"revoked_at": timezone.now()}, id="revoked"),
]


@pytest.mark.parametrize("change", UNUSABLE)
def test_an_unusable_magic_link_acts_for_nobody(customer, change, trackstar_calls):
    link = issue(customer)
    link_token = make_link_token(customer=customer, magic_link=link)
    actor = visitor(link)  # opened while it worked
    MagicLink.objects.filter(pk=link.pk).update(**change)
    link.refresh_from_db()

    with refused(410, "expired, was revoked, or was already used"):
        link_service.magic_link_actor(link=link, user=None)
    with refused(410):
        link_service.link_token_issue(actor=actor)
    with refused(410):
        submit(actor, link_token=link_token)

    assert trackstar_calls == []
    assert AuthCodeExchange.objects.count() == 0
    # How its own exchange ended stays readable.
    assert link_service.magic_link_actor(link=link, user=None, allow_spent=True).magic_link == link


def test_a_magic_link_of_an_inactive_customer_acts_for_nobody(customer, trackstar_calls):
    link = issue(customer)
    customer.is_active = False
    customer.save()

    with refused(410):
        link_service.magic_link_usable_check(link=link)
    with refused(410):
        link_service.link_token_issue(
            actor=LinkActor(customer=customer, source=Connection.Source.MAGIC_LINK, magic_link=link)
        )
    assert trackstar_calls == []


def test_nobody_connects_for_an_inactive_customer(owner, staff, customer, trackstar_calls):
    customer.is_active = False
    customer.save()

    for actor in (owner, staff):
        with refused(403, "no longer active"):
            link_service.link_token_issue(actor=actor)
        with refused(403, "no longer active"):
            submit(actor)
    assert trackstar_calls == []
    assert AuthCodeExchange.objects.count() == 0


def test_the_last_use_is_taken_once(customer, django_capture_on_commit_callbacks):
    link = issue(customer)
    actor = visitor(link)
    with django_capture_on_commit_callbacks(execute=False):
        submit(actor, auth_code="ac_first")

    # The same in-memory link still reads as usable: the use is taken in the database.
    with refused(410, "already used"):
        submit(actor, auth_code="ac_second")
    assert AuthCodeExchange.objects.count() == 1


# --- The portal role -----------------------------------------------------------------------------


def test_a_member_cannot_reconnect_even_when_members_may_connect(
    member, customer, connection, trackstar_calls
):
    customer.members_can_connect = True
    customer.save()

    assert link_service.link_token_issue(actor=member)  # connecting: allowed
    with refused(403, "Only an owner of this account can reconnect a WMS."):
        link_service.link_token_issue(actor=member, connection_ref=connection.pk)
    with refused(403, "Only an owner of this account can reconnect a WMS."):
        submit(member, reinstall=connection, connection_ref=connection.pk)

    assert len(trackstar_calls) == 1
    assert AuthCodeExchange.objects.count() == 0


def test_a_member_cannot_connect_unless_the_customer_allows_it(member, trackstar_calls):
    with refused(403, "Only an owner of this account can connect a WMS."):
        link_service.link_token_issue(actor=member)
    with refused(403, "Only an owner of this account can connect a WMS."):
        submit(member)

    assert trackstar_calls == []
    assert AuthCodeExchange.objects.count() == 0


def test_staff_and_magic_links_act_by_their_own_grant(
    staff, customer, connection, member_user, trackstar_calls
):
    link = issue(customer)
    signed_in_member = link_service.magic_link_actor(link=link, user=member_user)

    link_service.link_token_issue(actor=staff, connection_ref=connection.pk)
    link_service.link_token_issue(actor=signed_in_member)

    assert len(trackstar_calls) == 2


def test_a_user_of_no_customer_is_refused(customer, other_portal_user, trackstar_calls):
    stranger = LinkActor(customer=customer, source=Connection.Source.PORTAL, user=other_portal_user)

    with refused(403):
        link_service.link_token_issue(actor=stranger)
    assert trackstar_calls == []


# --- The customer the session decides ------------------------------------------------------------


def test_a_customer_id_of_another_customer_is_refused(owner, customer, other_customer):
    with refused(403, "another customer"):
        link_service.link_token_issue(actor=owner, customer_id=other_customer.public_id)
    with refused(403, "another customer"):
        submit(owner, customer_id=other_customer.public_id)
    assert AuthCodeExchange.objects.count() == 0

    submit(owner, customer_id=customer.public_id)  # its own: ignored
    assert AuthCodeExchange.objects.count() == 1


def test_a_link_token_handed_to_someone_else_is_refused(owner, customer, staff_user):
    someone_elses = make_link_token(customer=customer, user=staff_user, source="staff")

    with refused(403, "Connecting must start on this page"):
        submit(owner, link_token=someone_elses)
    assert AuthCodeExchange.objects.count() == 0


def test_another_customers_auth_code_is_refused(owner, customer, other_customer):
    theirs = LinkActor(customer=other_customer, source=Connection.Source.STAFF)
    submit(theirs, auth_code="ac_theirs")

    with refused(409, "already used"):
        submit(owner, auth_code="ac_theirs")


# --- Reading how it went ---------------------------------------------------------------------------


def test_a_link_visitor_reads_only_the_exchanges_of_their_link(
    owner, customer, other_customer, django_capture_on_commit_callbacks
):
    link = issue(customer, max_uses=2)
    with django_capture_on_commit_callbacks(execute=False):
        by_link = submit(visitor(link), auth_code="ac_link").exchange
        by_owner = submit(owner, auth_code="ac_owner").exchange
    actor = visitor(link)

    assert link_service.link_exchange_get(actor=actor, public_id=by_link.public_id) == by_link
    with pytest.raises(Http404):
        link_service.link_exchange_get(actor=actor, public_id=by_owner.public_id)
    theirs = LinkActor(customer=other_customer, source=Connection.Source.PORTAL)
    with pytest.raises(Http404):
        link_service.link_exchange_get(actor=theirs, public_id=by_owner.public_id)


def test_what_each_caller_reconnects_a_connection_with(owner, member, staff, customer, connection):
    link = issue(customer)
    spent = issue(customer)
    MagicLink.objects.filter(pk=spent.pk).update(use_count=1)
    spent.refresh_from_db()

    assert link_service.link_reconnect_ref(actor=owner, connection=connection) == str(connection.pk)
    assert link_service.link_reconnect_ref(actor=staff, connection=connection) == str(connection.pk)
    assert link_service.link_reconnect_ref(actor=member, connection=connection) is None
    assert link_service.link_reconnect_ref(
        actor=visitor(link), connection=connection
    ) == link_service.magic_link_reconnect_ref(link, connection)
    spent_actor = link_service.magic_link_actor(link=spent, user=None, allow_spent=True)
    assert link_service.link_reconnect_ref(actor=spent_actor, connection=connection) is None


# --- Renaming and disconnecting in the portal ------------------------------------------------------


@pytest.mark.parametrize("action", [PortalAction.RENAME, PortalAction.DISCONNECT])
def test_only_an_owner_renames_or_disconnects_in_the_portal(
    action, connection, portal_user, member_user, other_portal_user
):
    services.connection_portal_check(connection=connection, user=portal_user, action=action)
    for user in (member_user, other_portal_user, None):
        with pytest.raises(PermissionDenied, match="Only an owner of this account"):
            services.connection_portal_check(connection=connection, user=user, action=action)
