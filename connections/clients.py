"""The one place that builds a Trackstar client from Django settings."""

from functools import lru_cache

from django.conf import settings

from connections.trackstar import TrackstarClient


@lru_cache(maxsize=4)
def _client(base_url: str, api_key: str, timeout: tuple[float, float]) -> TrackstarClient:
    return TrackstarClient(base_url, api_key, timeout=timeout)


def trackstar_client() -> TrackstarClient:
    # Keyed by the settings so a test that points at another sandbox gets its own client;
    # in production this is one client (one requests.Session) per process.
    return _client(
        settings.TRACKSTAR_BASE_URL, settings.TRACKSTAR_API_KEY, tuple(settings.TRACKSTAR_TIMEOUT)
    )
