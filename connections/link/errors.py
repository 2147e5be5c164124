"""The one error the Link rules raise, and the words shared by more than one rule."""

from django.core.exceptions import ValidationError

LINK_UNAVAILABLE = "This link has expired, was revoked, or was already used."


class LinkRefused(ValidationError):
    """A rule of connecting through Link refused the request (connections.link.services
    holds the rules). `status` is what the JSON endpoints answer with: 400 bad input, 403
    not this caller's, 404 nothing of theirs, 409 not in this state, 410 no longer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
