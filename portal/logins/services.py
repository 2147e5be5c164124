"""Staff unlocking a login that failed logins have locked or slowed."""

from axes.models import AccessAttempt
from django.db import transaction

from audit.services import Actor, audit_record
from portal.logins.slowdown import login_pace_clear, login_slowdown_clear


@transaction.atomic
def login_unlock(*, username: str, ip_address: str | None, actor: Actor) -> int:
    """Lift axes' lockout of this username from this address (its records from that address
    go; other addresses', an attacker's among them, stay), and free the slowdown's slot of
    that address's network for it. The per-username count stays: see login_slowdown_lift.
    Returns how many lockout records went. Audited."""
    removed, _ = AccessAttempt.objects.filter(username=username, ip_address=ip_address).delete()
    login_pace_clear(username, ip_address)
    audit_record(
        actor=actor,
        action="login.unlocked",
        username=username,
        ip_address=ip_address,
        attempts=removed,
    )
    return removed


def login_slowdown_lift(*, username: str, actor: Actor) -> int:
    """Forget the failures counted for this username from every address, so no browser is
    slowed for it (axes' lockouts per address stay). For a slowdown whose lockout records
    have gone, or never were (one failure from each of many addresses). Returns how many
    failures were counted. Audited."""
    failures = login_slowdown_clear(username)
    audit_record(actor=actor, action="login.slowdown_cleared", username=username, failures=failures)
    return failures
