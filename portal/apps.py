from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The customer-facing site: pages, templates, static files and logins. No models."""

    name = "portal"

    def ready(self) -> None:
        # The login slowdown counts failures through auth signals.
        import portal.logins.slowdown  # noqa: F401
