"""Trackstar's list of integrations (name, logo, actions), cached: it changes rarely and
Trackstar allows one call a minute to /integrations (API.md §4)."""

import logging
import re
from typing import Any

from django.core.cache import cache

from connections.clients import trackstar_client
from connections.degrade import cache_or
from connections.trackstar import TrackstarError

logger = logging.getLogger(__name__)

CACHE_KEY = "trackstar:integrations:wms"
CACHE_SECONDS = 60 * 60
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def integration_catalog() -> dict[str, dict[str, Any]]:
    """slug → IntegrationInfo. Empty when Trackstar cannot be reached and nothing is cached,
    and while the cache's Redis is down: asking Trackstar on every request instead would
    spend its one call a minute at once, and an empty list is already handled (slugs are
    accepted by their form, names are made from them)."""
    unavailable: dict[str, dict[str, Any]] = {}
    catalog = cache_or(unavailable, lambda: cache.get(CACHE_KEY))
    if catalog is unavailable:
        return {}
    if catalog is None:
        try:
            integrations = trackstar_client().list_integrations("wms")
        except TrackstarError:
            logger.warning("Trackstar integrations list unavailable", exc_info=True)
            # Remember the failure briefly, so an outage does not add a timeout to every
            # request that needs the list.
            cache_or(None, lambda: cache.set(CACHE_KEY, {}, 60))
            return {}
        catalog = {i["integration_name"]: i for i in integrations if i.get("integration_name")}
        cache_or(None, lambda: cache.set(CACHE_KEY, catalog, CACHE_SECONDS))
    return catalog


def integration_is_known(slug: str) -> bool:
    catalog = integration_catalog()
    if catalog:
        return slug in catalog
    # Trackstar is unreachable: accept a well-formed slug rather than lose the auth code;
    # the exchange itself tells us whether it was real.
    return bool(SLUG_RE.match(slug))


def fallback_display_name(slug: str) -> str:
    """A readable name for an integration Trackstar's list did not (or could not) name."""
    return slug.replace("-", " ").title()


def integration_display_name(slug: str) -> str:
    info = integration_catalog().get(slug) or {}
    return info.get("display_name") or fallback_display_name(slug)


def connection_label(connection) -> str:
    """What people call a connection: its label, else its WMS's name."""
    return connection.label or integration_display_name(connection.integration_name)
