"""Staff unlocking a username that failed logins have locked or slowed."""

from axes.utils import reset as axes_reset
from django.db import transaction

from ..login_throttle import login_slowdown_reset
from .audit import Actor, audit_record


@transaction.atomic
def login_unlock(*, username: str, actor: Actor) -> int:
    """Forget the username's failed logins from every address (axes' lockouts) and its
    slowdown; returns how many lockout records went. Audited."""
    removed = axes_reset(username=username)
    login_slowdown_reset(username)
    audit_record(actor=actor, action="login.unlocked", username=username, attempts=removed)
    return removed
