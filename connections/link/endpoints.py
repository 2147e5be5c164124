"""The JSON endpoints behind the embedded Trackstar Link, shared by the portal, the magic-link page and admin: who is connecting (LinkActor), and the get-link-token, store-token and exchange-status views."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from audit.services import Actor
from connections import selectors
from connections.integrations import (
    connection_label,
    fallback_display_name,
    integration_catalog,
    integration_display_name,
    integration_is_known,
)
from connections.json_requests import BadRequest, error, json_body, required_string
from connections.link import exchanges as exchange_service
from connections.link.guess_limits import link_endpoint_wait
from connections.middleware import mark_link_page
from connections.models import AuthCodeExchange, Connection, MagicLink
from connections.trackstar import (
    TrackstarAuthError,
    TrackstarError,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from customers.models import Customer
from customers.permissions import PortalAction, membership_can
from customers.tenancy import (
    request_customer,
)

logger = logging.getLogger(__name__)


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


# The ids of the magic links this session opened, newest last. Several: a customer may open
# two emailed links (one reconnect each) in two tabs, and each tab acts for its own.
MAGIC_LINK_SESSION_KEY = "dockside_magic_links"
MAGIC_LINK_SESSION_MAX = 10
# The magic-link page says so on each call; the portal never uses a link grant by accident.
MAGIC_LINK_HEADER = "HTTP_X_DOCKSIDE_ACTOR"
# And names which of the session's links it is (magic_link_page_ref; without it, the newest).
MAGIC_LINK_REF_HEADER = "HTTP_X_DOCKSIDE_LINK"


def magic_link_page_ref(link_id: int) -> str:
    """Names a link in the token-free page's URL and calls. Not the token: it means nothing
    outside a session that opened the link."""
    return salted_hmac("dockside.magic-link.page", str(link_id), algorithm="sha256").hexdigest()[
        :32
    ]


def _session_grants(request: HttpRequest) -> list[int]:
    ids = request.session.get(MAGIC_LINK_SESSION_KEY)
    if not isinstance(ids, list):
        return []
    return [i for i in ids if type(i) is int]


def session_grant_add(request: HttpRequest, link: MagicLink) -> None:
    ids = [i for i in _session_grants(request) if i != link.pk] + [link.pk]
    request.session[MAGIC_LINK_SESSION_KEY] = ids[-MAGIC_LINK_SESSION_MAX:]


def session_magic_link(request: HttpRequest, ref: str | None) -> MagicLink | None:
    """A magic link this session opened (connect_page granted it): the one `ref` names, or
    the newest without one."""
    ids = _session_grants(request)
    if not ids:
        return None
    named = (i for i in ids if constant_time_compare(ref or "", magic_link_page_ref(i)))
    link_id = ids[-1] if ref is None else next(named, None)
    if link_id is None:
        return None
    return (
        MagicLink.objects.select_related("customer", "reinstall_connection")
        .filter(pk=link_id)
        .first()
    )


def magic_link_actor(request: HttpRequest, *, allow_spent: bool = False) -> LinkActor | None:
    """The grant of the magic link opened in this session. A spent link still lets the
    visitor read how their own exchange ended (allow_spent), and nothing more."""
    link = session_magic_link(request, request.META.get(MAGIC_LINK_REF_HEADER) or None)
    if link is None:
        return None
    if not allow_spent and (not link.is_usable or not link.customer.is_active):
        raise exchange_service.LinkUnavailable(
            "This link has expired, was revoked, or was already used."
        )
    return LinkActor(
        customer=link.customer,
        source=Connection.Source.MAGIC_LINK,
        user=request.user if request.user.is_authenticated else None,
        allowed_integrations=list(link.allowed_integrations),
        reinstall_connection=link.reinstall_connection,
        magic_link=link,
    )


def link_actor(request: HttpRequest, *, allow_spent: bool = False) -> LinkActor | None:
    if request.META.get(MAGIC_LINK_HEADER) == "magic-link":
        return magic_link_actor(request, allow_spent=allow_spent)
    customer = request_customer(request)
    if customer is None:
        return None
    return LinkActor(customer=customer, source=Connection.Source.PORTAL, user=request.user)


def is_id(value: object) -> bool:
    text = str(value) if isinstance(value, (int, str)) else ""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _check_customer_id(actor: LinkActor, data: dict) -> None:
    # The seed's frontend sends customer_id. The session decides; a different one is refused.
    sent = data.get("customer_id")
    if sent not in (None, "") and str(sent) != actor.customer.public_id:
        raise BadRequest("You cannot connect a WMS for another customer.", status=403)


# A magic-link page names the customer's connections it offers to reconnect by a reference
# bound to the link, not by our ids: the visitor learns their names and nothing else.
RECONNECT_REF_PREFIX = "r_"


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


def _magic_link_reinstall_target(
    actor: LinkActor, link: MagicLink, data: dict
) -> Connection | None:
    if actor.reinstall_connection is not None:
        # A reinstall link reconnects its own connection, whatever the page sends.
        return actor.reinstall_connection
    raw = data.get("connection_id")
    if not isinstance(raw, str) or not raw.startswith(RECONNECT_REF_PREFIX):
        return None  # our ids mean nothing here: the visitor never reaches them
    for connection in magic_link_reconnectable(link):
        if constant_time_compare(raw, magic_link_reconnect_ref(link, connection)):
            return connection
    raise BadRequest("This connection cannot be reconnected from this link.", status=404)


def _reinstall_target(actor: LinkActor, data: dict) -> Connection | None:
    if actor.magic_link is not None:
        return _magic_link_reinstall_target(actor, actor.magic_link, data)
    raw = data.get("connection_id")
    if raw in (None, ""):
        return None
    if not is_id(raw):
        raise BadRequest("'connection_id' must be a connection id.")
    try:
        connection = selectors.connection_get(customer=actor.customer, pk=int(raw))
    except Http404 as e:
        raise BadRequest("Connection not found.", status=404) from e
    if connection.status == Connection.Status.DISCONNECTED:
        raise BadRequest("This connection was disconnected; connect your WMS anew.", status=409)
    return connection


def _check_portal_role(actor: LinkActor, reinstall: Connection | None) -> None:
    """A portal user connects or reconnects as their role allows. Staff (admin URLs) and
    magic-link visitors act by their own grant, not by a membership."""
    if actor.source != Connection.Source.PORTAL:
        return
    action = PortalAction.RECONNECT if reinstall is not None else PortalAction.CONNECT
    user = actor.user
    if user is None or not membership_can(user=user, customer=actor.customer, action=action):
        message = (
            "Only an owner of this account can reconnect a WMS."
            if reinstall is not None
            else "Only an owner of this account can connect a WMS."
        )
        raise BadRequest(message, status=403)


def _link_limit_wait(request: HttpRequest, actor: LinkActor, endpoint: str) -> int:
    # The caller: a user (portal or staff), else the magic link, which a visitor cannot
    # shed as they could a session.
    if actor.user is not None and actor.user.is_authenticated:
        caller = f"user:{actor.user.pk}"
    elif actor.magic_link is not None:
        caller = f"magic-link:{actor.magic_link.pk}"
    else:
        caller = f"session:{request.session.session_key}"
    wait = link_endpoint_wait(endpoint=endpoint, caller=caller, customer_pk=actor.customer.pk)
    if wait:
        logger.warning(
            "Link endpoint %s limited for %s",
            endpoint,
            caller,
            extra={"customer_id": actor.customer.public_id},
        )
    return wait


class LinkEndpoints:
    """get-link-token, store-token and exchange status, for one way of deciding who acts:
    the portal session or a magic-link grant (portal URLs), or staff for a customer
    (admin URLs). Bad input is a JSON 4xx, never a 500."""

    def __init__(self, *, resolve_actor, status_url):
        # (request, *, allow_spent, **url_kwargs) -> LinkActor | None
        self.resolve_actor = resolve_actor
        self.status_url = status_url  # (exchange, **url_kwargs) -> str

    def _run(
        self,
        request: HttpRequest,
        handler,
        url_kwargs: dict,
        *,
        allow_spent: bool = False,
        limit: str | None = None,
    ) -> HttpResponse:
        """The handler parses the request and checks what the caller may do, then answers
        at once (an HttpResponse: refused, or nothing to do) or hands back the step that
        calls Trackstar or writes an exchange. Only that step is charged to the limits: a
        member who may not connect, or a request that is refused anyway, spends nothing of
        the customer's budget, so it cannot lock the owner out."""
        try:
            actor = self.resolve_actor(request, allow_spent=allow_spent, **url_kwargs)
        except exchange_service.LinkUnavailable as e:
            return error(str(e), status=410)
        if actor is None:
            return error("Log in, or open your connect link again.", status=403)
        try:
            outcome: HttpResponse | Callable[[], HttpResponse] = handler(request, actor, url_kwargs)
            if isinstance(outcome, HttpResponse):
                return outcome
            if limit is not None and (wait := _link_limit_wait(request, actor, limit)):
                response = error(
                    f"Too many attempts to connect. Please try again in {wait} seconds.",
                    status=429,
                )
                response["Retry-After"] = str(wait)
                return response
            return outcome()
        except BadRequest as e:
            return error(e.message, status=e.status)

    def get_link_token(self, request: HttpRequest, **url_kwargs) -> HttpResponse:
        if request.method != "POST":
            return error("Use POST.", status=405)
        return self._run(request, self._get_link_token, url_kwargs, limit="get_link_token")

    def store_token(self, request: HttpRequest, **url_kwargs) -> HttpResponse:
        if request.method != "POST":
            return error("Use POST.", status=405)
        return self._run(request, self._store_token, url_kwargs, limit="store_token")

    def exchange_status(self, request: HttpRequest, public_id, **url_kwargs) -> HttpResponse:
        if request.method != "GET":
            return error("Use GET.", status=405)
        return self._run(
            request,
            lambda r, a, k: self._exchange_status(a, public_id, k),
            url_kwargs,
            allow_spent=True,
        )

    def _get_link_token(
        self, request: HttpRequest, actor: LinkActor, url_kwargs
    ) -> Callable[[], HttpResponse]:
        data = json_body(request, required=False)
        _check_customer_id(actor, data)
        reinstall = _reinstall_target(actor, data)
        _check_portal_role(actor, reinstall)
        return lambda: self._link_token_create(actor, reinstall)

    def _link_token_create(self, actor: LinkActor, reinstall: Connection | None) -> HttpResponse:
        try:
            link_token = exchange_service.link_token_create(
                customer=actor.customer,
                reinstall=reinstall,
                source=actor.source,
                user=actor.user,
                magic_link=actor.magic_link,
            )
        except (TrackstarUnavailable, TrackstarRateLimited) as e:
            logger.warning(
                "Link token failed: %s", e, extra={"customer_id": actor.customer.public_id}
            )
            return error(
                "Trackstar is not reachable right now. Please try again in a minute.", status=502
            )
        except TrackstarError as e:
            # Trackstar answered and refused (e.g. a reconnect of a connection it deleted).
            logger.warning(
                "Link token refused: %s", e, extra={"customer_id": actor.customer.public_id}
            )
            if isinstance(e, TrackstarAuthError):
                # Our API key (staff are alerted already): nothing the customer can fix.
                message = (
                    "Connecting is not possible right now; we are on it. Please try again "
                    f"later, or write to {settings.DOCKSIDE_SUPPORT_EMAIL}."
                )
                return error(message, status=503)
            message = (
                "This connection can no longer be reconnected; connect your WMS anew."
                if reinstall
                else "Connecting could not start. Please try again, or write to "
                f"{settings.DOCKSIDE_SUPPORT_EMAIL}."
            )
            return error(message, status=409)
        return JsonResponse({"linkToken": link_token, "link_token": link_token})

    def _store_token(
        self, request: HttpRequest, actor: LinkActor, url_kwargs
    ) -> HttpResponse | Callable[[], HttpResponse]:
        data = json_body(request)
        _check_customer_id(actor, data)
        auth_code = required_string(data, "auth_code", max_length=2048)
        integration_name = required_string(data, "integration_name", max_length=64)
        # The link token Link was opened with (from our get-link-token): it must be one we
        # minted for this customer and handed to this caller, or the code is not taken.
        link_token = required_string(data, "link_token", max_length=2048)
        if not integration_is_known(integration_name):
            raise BadRequest(f"Unknown integration '{integration_name}'.")
        if actor.allowed_integrations and integration_name not in actor.allowed_integrations:
            raise BadRequest("This link does not allow that integration.", status=403)
        reinstall = _reinstall_target(actor, data)
        _check_portal_role(actor, reinstall)
        try:
            existing = exchange_service.exchange_existing(
                customer=actor.customer, auth_code=auth_code
            )
            if existing is not None:
                # A retry of a code we hold (connect.js retries a lost answer or a 429):
                # nothing is written, nothing is charged.
                return JsonResponse(self._exchange_json(existing, actor, url_kwargs), status=202)
            exchange_service.link_token_check(
                customer=actor.customer,
                link_token=link_token,
                reinstall=reinstall,
                source=actor.source,
                user=actor.user,
                magic_link=actor.magic_link,
            )
        except ValidationError as e:
            return error(e.messages[0], status=409)
        except exchange_service.LinkTokenRefused as e:
            return error(e.message, status=e.status)

        def submit() -> HttpResponse:
            try:
                submitted = exchange_service.exchange_submit(
                    customer=actor.customer,
                    auth_code=auth_code,
                    link_token=link_token,
                    integration_name=integration_name,
                    source=actor.source,
                    user=actor.user,
                    reinstall_connection=reinstall,
                    magic_link=actor.magic_link,
                )
            except ValidationError as e:
                return error(e.messages[0], status=409)
            except exchange_service.LinkTokenRefused as e:
                return error(e.message, status=e.status)
            except exchange_service.LinkUnavailable as e:
                return error(str(e), status=410)
            return JsonResponse(
                self._exchange_json(submitted.exchange, actor, url_kwargs), status=202
            )

        return submit

    def _exchange_status(self, actor: LinkActor, public_id, url_kwargs) -> HttpResponse:
        try:
            exchange = selectors.exchange_get(customer=actor.customer, public_id=public_id)
        except Http404:
            return error("Not found.", status=404)
        if actor.magic_link is not None and exchange.magic_link_id != actor.magic_link.pk:
            return error("Not found.", status=404)  # a link visitor sees only their own
        return JsonResponse(self._exchange_json(exchange, actor, url_kwargs))

    def _exchange_json(self, exchange: AuthCodeExchange, actor: LinkActor, url_kwargs) -> dict:
        connection = exchange.connection
        # Succeeded, but recovered without its access token (the worker died after Trackstar
        # answered, and no connection.created brought it): a reconnect finishes it. The
        # page says so and keeps polling: a late connection.created still finishes it.
        to_finish = (
            exchange.status == exchange.Status.SUCCEEDED
            and connection is not None
            and connection.status == Connection.Status.NEEDS_RECONNECT
            and connection.reconnect_cause == Connection.ReconnectCause.TOKEN_MISSING
        )
        message, reconnect_id = (
            _finish_by_reconnect(actor, connection)
            if to_finish and connection is not None
            else ("", None)
        )
        return {
            "exchange_id": str(exchange.public_id),
            "status": exchange.status,
            "error": exchange.last_error if exchange.status == exchange.Status.FAILED else "",
            "status_url": self.status_url(exchange, **url_kwargs),
            "reconnect_to_finish": to_finish,
            "message": message,
            # What the page sends as connection_id to reconnect it; null when this caller
            # cannot (a member who may not reconnect, a magic link that is used up).
            "reconnect_connection_id": reconnect_id,
            "connection": None
            if connection is None
            else {
                "id": connection.pk,
                "connection_id": connection.trackstar_connection_id,
                "integration_name": connection.integration_name,
                "label": connection_label(connection),
                "status": connection.status,
            },
        }


FINISH_WORDS = "Almost there: reconnect to finish."


def _finish_by_reconnect(actor: LinkActor, connection: Connection) -> tuple[str, str | None]:
    """What the page says of a connection a reconnect would finish, and the connection_id
    this caller reconnects it with (None: someone else must)."""
    name = integration_display_name(connection.integration_name)
    how = f" Click Reconnect and enter the {name} credentials once more."
    link = actor.magic_link
    if link is None:
        if actor.source == Connection.Source.PORTAL and (
            actor.user is None
            or not membership_can(
                user=actor.user, customer=actor.customer, action=PortalAction.RECONNECT
            )
        ):
            return f"{FINISH_WORDS} An owner of your account can do it with Reconnect.", None
        return FINISH_WORDS + how, str(connection.pk)
    if link.is_usable:
        if link.reinstall_connection_id == connection.pk:
            return FINISH_WORDS + how, str(connection.pk)  # the link reconnects it anyway
        if connection in magic_link_reconnectable(link):
            return FINISH_WORDS + how, magic_link_reconnect_ref(link, connection)
    if connection.reconnect_notified_at is not None:
        return f"{FINISH_WORDS} We have emailed your account's contact a link to do it.", None
    return (
        f"{FINISH_WORDS} Please write to {settings.DOCKSIDE_SUPPORT_EMAIL} for a link to do it.",
        None,
    )


def _picker_integrations(*, allow_list: list[str], sandbox: bool) -> list[dict]:
    """The WMSes our own picker offers before Link opens (the same ones Link would)."""
    offered = []
    for slug, info in integration_catalog().items():
        if allow_list and slug not in allow_list:
            continue
        if not allow_list and slug == "sandbox" and not sandbox:
            continue
        name = info.get("display_name") or fallback_display_name(slug)
        offered.append({"slug": slug, "name": name, "logo": info.get("logo_url") or ""})
    # Alphabetical, Trackstar's test WMS last.
    return sorted(offered, key=lambda item: (item["slug"] == "sandbox", item["name"].lower()))


def _existing_connections(
    *, customer: Customer, reinstall: Connection | None, magic_link: MagicLink | None
) -> list[dict]:
    """The customer's live connections, so the page can offer "Reconnect it" before a
    second connection of the same WMS is made. A magic-link page learns only their names."""
    if reinstall is not None:
        return []  # the page reconnects that one and offers nothing else
    if magic_link is not None:
        return [
            {
                "ref": magic_link_reconnect_ref(magic_link, connection),
                "buttonId": f"reconnect-link-{n}",
                "integration": connection.integration_name,
                "label": connection_label(connection),
                "status": "",
            }
            for n, connection in enumerate(magic_link_reconnectable(magic_link), start=1)
        ]
    return [
        {
            "ref": str(connection.pk),
            # The same Link instance as the connection's own Reconnect button.
            "buttonId": f"reconnect-{connection.pk}",
            "integration": connection.integration_name,
            "label": connection_label(connection),
            "status": connection.status,
        }
        for connection in selectors.connection_list_live(customer=customer)
    ]


def link_config(
    request: HttpRequest,
    *,
    customer: Customer,
    allow_list: list[str] | None = None,
    reinstall: Connection | None = None,
    get_link_token_url: str = "",
    store_token_url: str = "",
    headers: dict | None = None,
    magic_link: MagicLink | None = None,
    can_reconnect: bool = True,
) -> dict:
    """What static/portal/connect.js needs to drive Trackstar Link on a page. The page's
    response then allows Link's OAuth popups (connections.middleware)."""
    mark_link_page(request)
    sandbox = settings.DEBUG or "trackstarhq.com" not in settings.TRACKSTAR_BASE_URL
    return {
        "scriptUrl": settings.TRACKSTAR_LINK_SCRIPT_URL,
        "getLinkTokenUrl": get_link_token_url or reverse("portal:get_link_token"),
        "storeTokenUrl": store_token_url or reverse("portal:store_token"),
        "headers": headers or {},
        "csrfToken": get_token(request),
        "integrationNames": {
            slug: info.get("display_name") or slug for slug, info in integration_catalog().items()
        },
        "integrationAllowList": allow_list or [],
        # Sent back with every call: the session must still act for this customer, or the
        # call is refused (another tab switched customer, another link was opened).
        "customerId": customer.public_id,
        "reinstallConnectionId": reinstall.pk if reinstall else None,
        # Offer Trackstar's "Sandbox" integration outside production (DEBUG or a sandbox URL).
        "sandbox": sandbox,
        # Our own picker, shown before Link opens (empty: let Link show its own).
        "integrations": _picker_integrations(allow_list=allow_list or [], sandbox=sandbox),
        "existing": _existing_connections(
            customer=customer, reinstall=reinstall, magic_link=magic_link
        ),
        # A portal member who may connect but not reconnect: the picker names the WMSes
        # already connected, and offers no "Reconnect it" (the server would refuse it).
        "canReconnect": can_reconnect,
    }
