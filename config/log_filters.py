"""Logging filters. Nothing here imports Django models: settings load it."""

from __future__ import annotations

import logging
import re

# /connect/<token>/: the magic-link token is a bearer secret until it is spent.
_LINK_TOKEN = re.compile(r"(/connect/)(?!\?|$)[^/?\s\"]+")


class RedactLinkTokens(logging.Filter):
    """Replaces magic-link tokens in request log lines (django.request's "Gone: /connect/…",
    runserver's request line) with "<token>". The page redirects to a token-free URL after
    the first GET; a spent, unknown or expired link's page stays on the token URL, and its
    lines should not hand the token to whoever reads the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _LINK_TOKEN.sub(r"\1<token>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
