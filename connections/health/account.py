"""Our organisation's standing with Trackstar: is our API key accepted?

A 401 on a key-only call means Trackstar refuses the organisation key (a rotation mistake,
a revoked key). Every connection is fine then, so no customer hears of it: syncs pause,
staff see a banner in admin and get one alert by mail, and everything resumes by itself
when a check finds the key accepted again (API.md §10)."""

import logging

from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from connections.models import TrackstarAccount

logger = logging.getLogger(__name__)


def trackstar_account() -> TrackstarAccount:
    account, _ = TrackstarAccount.objects.get_or_create(pk=1)
    return account


def trackstar_key_rejected() -> bool:
    return TrackstarAccount.objects.filter(pk=1, key_rejected_at__isnull=False).exists()


def account_key_rejected(*, error: str) -> bool:
    """Record that Trackstar refuses our key; alert staff once per incident. Returns whether
    this call opened the incident."""
    trackstar_account()
    now = timezone.now()
    with transaction.atomic():
        opened = TrackstarAccount.objects.filter(pk=1, key_rejected_at__isnull=True).update(
            key_rejected_at=now, key_error=error[:2000], checked_at=now, updated_at=now
        )
        if not opened:
            TrackstarAccount.objects.filter(pk=1).update(checked_at=now)
            return False
        transaction.on_commit(lambda: _alert_staff(error), robust=True)
    logger.error("Trackstar refuses our API key; every sync is paused: %s", error)
    return True


def account_key_accepted() -> bool:
    """A key-only call succeeded: close the incident, if one was open. Syncs resume on the
    dispatcher's next tick (they were left due)."""
    now = timezone.now()
    closed = TrackstarAccount.objects.filter(pk=1, key_rejected_at__isnull=False).update(
        key_rejected_at=None, key_error="", checked_at=now, updated_at=now
    )
    if closed:
        logger.warning("Trackstar accepts our API key again; syncs resume")
    return bool(closed)


def _alert_staff(error: str) -> None:
    mail_admins(
        "Trackstar refuses Dockside's API key: every sync is paused",
        "Trackstar answered 401 to a call made with the organisation API key only, so the "
        "key itself is wrong (TRACKSTAR_API_KEY: a rotation mistake, or a revoked key).\n\n"
        f"Trackstar said: {error}\n\n"
        "Every sync is paused until the key works again; Dockside checks every minute and "
        "resumes by itself. No customer was asked to reconnect: their connections are fine.",
        fail_silently=True,
    )
