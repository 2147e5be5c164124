"""Magic links: our own signed URL that lets a customer connect without an account."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from audit.services import Actor, audit_record, user_or_none
from connections.models import Connection, MagicLink
from customers.models import Customer

logger = logging.getLogger(__name__)

DEFAULT_EXPIRY_DAYS = 7
MAX_EXPIRY_DAYS = 30
TOKEN_BYTES = 32


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def magic_link_url(token: str) -> str:
    return settings.DOCKSIDE_BASE_URL.rstrip("/") + reverse("connect", args=[token])


@dataclass(frozen=True)
class IssuedLink:
    link: MagicLink
    url: str  # holds the token: shown once, never stored


def magic_link_issue(
    *,
    customer: Customer,
    created_by: Actor,
    expires_in_days: int = DEFAULT_EXPIRY_DAYS,
    max_uses: int = 1,
    allowed_integrations: list[str] | None = None,
    reinstall_connection: Connection | None = None,
    email_to: str = "",
) -> IssuedLink:
    if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValidationError(f"A link expires after 1 to {MAX_EXPIRY_DAYS} days.")
    if max_uses < 1:
        raise ValidationError("A link must allow at least one use.")
    if reinstall_connection is not None and reinstall_connection.customer_id != customer.pk:
        raise ValidationError("The connection to reinstall belongs to another customer.")
    if (
        reinstall_connection is not None
        and reinstall_connection.status == Connection.Status.DISCONNECTED
    ):
        # Gone at Trackstar: a reconnect of it can only fail (a disconnect revokes the links
        # that would reconnect it, for the same reason).
        raise ValidationError("A disconnected connection cannot be reconnected.")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with transaction.atomic():
        link = MagicLink.objects.create(
            customer=customer,
            token_hash=token_hash(token),
            expires_at=timezone.now() + timedelta(days=expires_in_days),
            max_uses=max_uses,
            allowed_integrations=sorted(set(allowed_integrations or [])),
            reinstall_connection=reinstall_connection,
            created_by=user_or_none(created_by),
            emailed_to=email_to,
        )
        audit_record(
            actor=created_by,
            action="magic_link.issued",
            customer=customer,
            connection=reinstall_connection,
            magic_link_id=link.pk,
            expires_at=link.expires_at.isoformat(),
            max_uses=max_uses,
            allowed_integrations=link.allowed_integrations,
            emailed_to=email_to,
        )
        url = magic_link_url(token)
        if email_to:
            transaction.on_commit(lambda: _send_link_email(link=link, url=url), robust=True)
    return IssuedLink(link=link, url=url)


def _send_link_email(*, link: MagicLink, url: str) -> None:
    from connections.integrations import integration_display_name

    reinstall = link.reinstall_connection
    context = {
        "link": link,
        "url": url,
        "customer": link.customer,
        "wms": integration_display_name(reinstall.integration_name) if reinstall else "",
    }
    send_mail(
        subject=(
            f"Reconnect your warehouse system to {settings.DOCKSIDE_PRODUCT_NAME}"
            if link.reinstall_connection_id
            else f"Connect your warehouse system to {settings.DOCKSIDE_PRODUCT_NAME}"
        ),
        message=render_to_string("connections/magic_link_email.txt", context),
        from_email=None,
        recipient_list=[link.emailed_to],
    )


def magic_link_find(*, token: str) -> MagicLink | None:
    """The link for a token, whatever its state; None when no link has this token."""
    if not token or len(token) > 128:
        return None
    digest = token_hash(token)
    link = (
        MagicLink.objects.select_related("customer", "reinstall_connection")
        .filter(token_hash=digest)
        .first()
    )
    # The lookup is by an index on the hash; compare again in constant time so the
    # answer never depends on how much of a guess matched.
    if link is None or not hmac.compare_digest(link.token_hash, digest):
        return None
    return link


def magic_link_open(*, link: MagicLink) -> None:
    """Record a visit. Opening consumes nothing: mail scanners prefetch links."""
    now = timezone.now()
    MagicLink.objects.filter(pk=link.pk, first_opened_at__isnull=True).update(first_opened_at=now)
    MagicLink.objects.filter(pk=link.pk).update(last_opened_at=now, open_count=F("open_count") + 1)


def magic_link_consume(*, link_id: int) -> bool:
    """Take one use, in the caller's transaction. One conditional UPDATE: two concurrent
    completions of a one-use link cannot both pass, on PostgreSQL or SQLite."""
    now = timezone.now()
    return bool(
        MagicLink.objects.filter(
            Q(pk=link_id),
            Q(revoked_at__isnull=True),
            Q(expires_at__gt=now),
            Q(use_count__lt=F("max_uses")),
        ).update(use_count=F("use_count") + 1)
    )


def magic_link_release(*, link_id: int) -> None:
    """Give a use back when the exchange it paid for failed: the customer may try again."""
    MagicLink.objects.filter(pk=link_id, use_count__gt=0).update(use_count=F("use_count") - 1)


def magic_link_completed(*, link_id: int) -> None:
    MagicLink.objects.filter(pk=link_id).update(completed_at=timezone.now())


def magic_link_revoke(*, link: MagicLink, actor: Actor) -> bool:
    with transaction.atomic():
        revoked = MagicLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
        if revoked:
            audit_record(
                actor=actor,
                action="magic_link.revoked",
                customer=link.customer,
                magic_link_id=link.pk,
            )
    return bool(revoked)


def magic_links_expire() -> int:
    """Stamp links that ran out before they were used up or revoked (the funnel's end)."""
    return MagicLink.objects.filter(
        expired_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__lte=timezone.now(),
        use_count__lt=F("max_uses"),
    ).update(expired_at=F("expires_at"))
