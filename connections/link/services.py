"""The Link service: the rules of connecting a WMS through Trackstar Link, for every caller
(the portal, the magic-link page, staff in admin). Each rule raises LinkRefused, a
ValidationError that carries the HTTP status the JSON endpoints answer with, so a view
only parses the request, calls here, and turns a refusal into its 4xx."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import Http404
from django.utils.crypto import constant_time_compare, salted_hmac

from audit.services import Actor
from connections import selectors
from connections.integrations import integration_is_known
from connections.json_requests import is_id
from connections.link import exchanges
from connections.link.errors import LINK_UNAVAILABLE, LinkRefused
from connections.link.exchanges import SubmittedExchange
from connections.models import AuthCodeExchange, Connection, MagicLink
from customers.models import Customer
from customers.permissions import PortalAction, membership_can

# --- Who is connecting ----------------------------------------------------------------------


@dataclass
class LinkActor:
    """Whom a Link request acts for, taken from the session only."""

    customer: Customer
    source: str
    user: Actor = None
    allowed_integrations: list[str] = field(default_factory=list)  # empty: all of them
    reinstall_connection: Connection | None = None  # forced by a reinstall magic link
    magic_link: MagicLink | None = None


def magic_link_usable_check(*, link: MagicLink) -> None:
    """A magic link acts only while it is usable (not spent, expired or revoked) and its
    customer is active."""
    if not link.is_usable or not link.customer.is_active:
        raise LinkRefused(LINK_UNAVAILABLE, status=410)


def magic_link_actor(*, link: MagicLink, user: Actor, allow_spent: bool = False) -> LinkActor:
    """Whom a magic link acts for: its customer, with its allow list and reinstall. A spent
    link still lets the visitor read how their own exchange ended (allow_spent), and
    nothing more."""
    if not allow_spent:
        magic_link_usable_check(link=link)
    return LinkActor(
        customer=link.customer,
        source=Connection.Source.MAGIC_LINK,
        user=user,
        allowed_integrations=list(link.allowed_integrations),
        reinstall_connection=link.reinstall_connection,
        magic_link=link,
    )


def link_actor_check(*, actor: LinkActor) -> None:
    """The actor may connect at all: a usable magic link, or an active customer."""
    if actor.magic_link is not None:
        magic_link_usable_check(link=actor.magic_link)
    elif not actor.customer.is_active:
        raise LinkRefused("This account is no longer active.", status=403)


def link_customer_check(*, actor: LinkActor, customer_id: object) -> None:
    """The seed's frontend sends customer_id. The session decides; a different one is
    refused."""
    if customer_id not in (None, "") and str(customer_id) != actor.customer.public_id:
        raise LinkRefused("You cannot connect a WMS for another customer.", status=403)


def _role_allows(actor: LinkActor, action: PortalAction) -> bool:
    """Staff (admin URLs) and magic-link visitors act by their own grant; a portal user as
    their membership's role allows."""
    if actor.source != Connection.Source.PORTAL:
        return True
    user = actor.user
    return user is not None and membership_can(user=user, customer=actor.customer, action=action)


def link_role_check(*, actor: LinkActor, reinstall: Connection | None) -> None:
    """A portal user connects or reconnects as their role allows. Staff (admin URLs) and
    magic-link visitors act by their own grant, not by a membership."""
    action = PortalAction.RECONNECT if reinstall is not None else PortalAction.CONNECT
    if not _role_allows(actor, action):
        message = (
            "Only an owner of this account can reconnect a WMS."
            if reinstall is not None
            else "Only an owner of this account can connect a WMS."
        )
        raise LinkRefused(message, status=403)


def link_integration_check(*, actor: LinkActor, integration_name: str) -> None:
    """A WMS Trackstar offers, and one the magic link allows."""
    if not integration_is_known(integration_name):
        raise LinkRefused(f"Unknown integration '{integration_name}'.", status=400)
    # A magic link's own list, whatever the actor was built with.
    link = actor.magic_link
    allowed = link.allowed_integrations if link is not None else actor.allowed_integrations
    if allowed and integration_name not in allowed:
        raise LinkRefused("This link does not allow that integration.", status=403)


# --- What a reconnect may reconnect ---------------------------------------------------------


# A magic-link page names the customer's connections it offers to reconnect by a reference
# bound to the link, not by our ids: the visitor learns their names and nothing else.
RECONNECT_REF_PREFIX = "r_"

DISCONNECTED_WORDS = "This connection was disconnected; connect your WMS anew."


def magic_link_reconnect_ref(link: MagicLink, connection: Connection) -> str:
    digest = salted_hmac(
        "dockside.magic-link.reconnect", f"{link.pk}:{connection.pk}", algorithm="sha256"
    ).hexdigest()
    return RECONNECT_REF_PREFIX + digest[:32]


def magic_link_reconnectable(link: MagicLink) -> list[Connection]:
    """What a plain magic link may reconnect: the customer's live connections of the
    integrations it offers. A reinstall link reconnects its own connection only."""
    if link.reinstall_connection_id is not None:
        return []
    connections = selectors.connection_list_live(customer=link.customer)
    if link.allowed_integrations:
        connections = connections.filter(integration_name__in=link.allowed_integrations)
    return list(connections)


def _magic_link_reinstall_target(link: MagicLink, connection_ref: object) -> Connection | None:
    reinstall = link.reinstall_connection
    if reinstall is not None:
        # A reinstall link reconnects its own connection, whatever the page sends; one that
        # was disconnected since has nothing left to reconnect.
        if reinstall.status == Connection.Status.DISCONNECTED:
            raise LinkRefused(DISCONNECTED_WORDS, status=409)
        return reinstall
    if not isinstance(connection_ref, str) or not connection_ref.startswith(RECONNECT_REF_PREFIX):
        return None  # our ids mean nothing here: the visitor never reaches them
    for connection in magic_link_reconnectable(link):
        if constant_time_compare(connection_ref, magic_link_reconnect_ref(link, connection)):
            return connection
    raise LinkRefused("This connection cannot be reconnected from this link.", status=404)


def link_reinstall_target(*, actor: LinkActor, connection_ref: object) -> Connection | None:
    """The connection this Link session reconnects (None: a new connection). The portal and
    staff name it by our id, one of the customer's live connections; a magic-link page by
    the reference bound to its link (magic_link_reconnect_ref), and a reinstall link always
    reconnects its own."""
    if actor.magic_link is not None:
        return _magic_link_reinstall_target(actor.magic_link, connection_ref)
    if connection_ref in (None, ""):
        return None
    if not is_id(connection_ref):
        raise LinkRefused("'connection_id' must be a connection id.", status=400)
    try:
        connection = selectors.connection_get(customer=actor.customer, pk=int(str(connection_ref)))
    except Http404 as e:
        raise LinkRefused("Connection not found.", status=404) from e
    if connection.status == Connection.Status.DISCONNECTED:
        raise LinkRefused(DISCONNECTED_WORDS, status=409)
    return connection


def link_reconnect_ref(*, actor: LinkActor, connection: Connection) -> str | None:
    """What this caller sends as connection_id to reconnect this connection; None when they
    may not (a member who may not reconnect, a magic link that is used up or does not
    offer it, a disconnected connection)."""
    if connection.status == Connection.Status.DISCONNECTED:
        return None
    link = actor.magic_link
    if link is None:
        return str(connection.pk) if _role_allows(actor, PortalAction.RECONNECT) else None
    if not link.is_usable:
        return None
    if link.reinstall_connection_id == connection.pk:
        return str(connection.pk)  # the link reconnects it anyway
    if connection in magic_link_reconnectable(link):
        return magic_link_reconnect_ref(link, connection)
    return None


# --- Link tokens ------------------------------------------------------------------------------


def link_token_issue_check(
    *, actor: LinkActor, connection_ref: object = None, customer_id: object = None
) -> Connection | None:
    """Everything link_token_issue checks, without asking Trackstar (reads only: the
    endpoint asks before it spends any of its limits). Returns the reinstall target."""
    link_actor_check(actor=actor)
    link_customer_check(actor=actor, customer_id=customer_id)
    reinstall = link_reinstall_target(actor=actor, connection_ref=connection_ref)
    link_role_check(actor=actor, reinstall=reinstall)
    return reinstall


def link_token_issue(
    *, actor: LinkActor, connection_ref: object = None, customer_id: object = None
) -> str:
    """A Trackstar link token for the actor's customer (reconnecting `connection_ref`),
    recorded with whom it was handed to: store-token takes it only from them. Raises
    LinkRefused, or the TrackstarError of Trackstar's refusal or outage."""
    reinstall = link_token_issue_check(
        actor=actor, connection_ref=connection_ref, customer_id=customer_id
    )
    return exchanges.link_token_create(
        customer=actor.customer,
        reinstall=reinstall,
        source=actor.source,
        user=actor.user,
        magic_link=actor.magic_link,
    )


# --- Auth codes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCodeCheck:
    reinstall: Connection | None
    existing: AuthCodeExchange | None  # a retry of a code we hold: its exchange


def _code_rules(
    *, actor: LinkActor, integration_name: str, connection_ref: object, customer_id: object
) -> Connection | None:
    link_actor_check(actor=actor)
    link_customer_check(actor=actor, customer_id=customer_id)
    link_integration_check(actor=actor, integration_name=integration_name)
    reinstall = link_reinstall_target(actor=actor, connection_ref=connection_ref)
    link_role_check(actor=actor, reinstall=reinstall)
    return reinstall


def link_code_submit_check(
    *,
    actor: LinkActor,
    auth_code: str,
    integration_name: str,
    link_token: str,
    connection_ref: object = None,
    customer_id: object = None,
) -> LinkCodeCheck:
    """Everything link_code_submit checks, writing nothing (store-token asks before it
    spends any of its limits), and the exchange of a code we hold already: a retry
    (connect.js retries a lost answer or a 429) is answered with it, whatever became of its
    link token since."""
    reinstall = _code_rules(
        actor=actor,
        integration_name=integration_name,
        connection_ref=connection_ref,
        customer_id=customer_id,
    )
    existing = exchanges.exchange_existing(customer=actor.customer, auth_code=auth_code)
    if existing is None:
        exchanges.link_token_check(
            customer=actor.customer,
            link_token=link_token,
            reinstall=reinstall,
            source=actor.source,
            user=actor.user,
            magic_link=actor.magic_link,
        )
    return LinkCodeCheck(reinstall=reinstall, existing=existing)


def link_code_submit(
    *,
    actor: LinkActor,
    auth_code: str,
    integration_name: str,
    link_token: str,
    connection_ref: object = None,
    customer_id: object = None,
) -> SubmittedExchange:
    """Take the auth code Link gave the actor's page: the rules above, then the exchange
    outbox row (exchanges.exchange_submit checks the link token and takes a magic link's
    use in its transaction). Never calls Trackstar."""
    reinstall = _code_rules(
        actor=actor,
        integration_name=integration_name,
        connection_ref=connection_ref,
        customer_id=customer_id,
    )
    return exchanges.exchange_submit(
        customer=actor.customer,
        auth_code=auth_code,
        link_token=link_token,
        integration_name=integration_name,
        source=actor.source,
        user=actor.user,
        reinstall_connection=reinstall,
        magic_link=actor.magic_link,
    )


def link_exchange_get(*, actor: LinkActor, public_id: object) -> AuthCodeExchange:
    """An exchange of the actor's customer; a magic link's visitor sees only the ones made
    through that link. Http404 otherwise."""
    exchange = selectors.exchange_get(customer=actor.customer, public_id=str(public_id))
    if actor.magic_link is not None and exchange.magic_link_id != actor.magic_link.pk:
        raise Http404("Not found.")
    return exchange
