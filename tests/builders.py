"""Small builders for test data; each returns a saved row with sensible defaults."""

import itertools
import uuid

from django.contrib.auth import get_user_model
from django.utils.text import slugify

from connections.link import exchanges as exchange_service
from connections.models import Connection
from customers.models import Customer, Membership

PASSWORD = "correct-horse-battery"
_seq = itertools.count(1)


def make_customer(*, name: str | None = None, **fields) -> Customer:
    name = name or f"Customer {next(_seq)}"
    fields.setdefault("slug", f"{slugify(name)}-{uuid.uuid4().hex[:8]}")
    fields.setdefault("contact_email", f"ops@{slugify(name)}.example")
    return Customer.objects.create(name=name, **fields)


def make_user(
    *,
    username: str | None = None,
    customer: Customer | None = None,
    role: str = Membership.Role.OWNER,
    **fields,
):
    User = get_user_model()
    user = User.objects.create_user(
        username=username or f"user{next(_seq)}", password=PASSWORD, **fields
    )
    if customer is not None:
        Membership.objects.create(user=user, customer=customer, role=role)
    return user


def make_connection(*, customer: Customer, **fields) -> Connection:
    n = next(_seq)
    fields.setdefault("trackstar_connection_id", f"conn_{n:06d}")
    fields.setdefault("integration_name", "shipbob")
    fields.setdefault("status", Connection.Status.ACTIVE)
    fields.setdefault("source", Connection.Source.PORTAL)
    fields.setdefault("access_token", f"trackstar_token_{n:06d}_secret")
    return Connection.objects.create(customer=customer, **fields)


def make_link_token(
    *,
    customer: Customer,
    reinstall: Connection | None = None,
    user=None,
    magic_link=None,
    source: str | None = None,
) -> str:
    """A link token as our get-link-token hands out, recorded for this customer and for
    whom it was handed to (store-token takes it from them only): `user` (a portal user;
    staff with source="staff"), or `magic_link`'s visitors. Without asking Trackstar: for
    tests that post store-token with a made-up auth code."""

    if source is None:
        source = Connection.Source.MAGIC_LINK if magic_link else Connection.Source.PORTAL
    token = f"lt_test_{uuid.uuid4().hex}"
    exchange_service.link_token_record(
        customer=customer,
        link_token=token,
        reinstall=reinstall,
        source=source,
        user=user,
        magic_link=magic_link,
    )
    return token
