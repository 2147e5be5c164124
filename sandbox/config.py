import os
from dataclasses import dataclass, field

# Dev-only Svix secret: "whsec_" + base64("dockside-sandbox-webhook-secret"). Dockside's
# DEV_TRACKSTAR_WEBHOOK_SECRET and scripts/demo.sh use the same value, so webhooks verify out
# of the box. Never use it in production.
DEFAULT_WEBHOOK_SECRET = "whsec_ZG9ja3NpZGUtc2FuZGJveC13ZWJob29rLXNlY3JldA=="
DEFAULT_API_KEY = "sandbox-key"


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class Settings:
    api_key: str = DEFAULT_API_KEY
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_url: str | None = None
    get_rate: float = 10.0
    write_rate: float = 50.0
    # Lifetimes are undocumented upstream ("short-lived"); these are our guesses.
    link_token_ttl: float = 30 * 60
    auth_code_ttl: float = 10 * 60
    historical_sync_delay: float = 1.0
    # How long a force sync (POST /connections/sync) and an on-demand sync job take.
    force_sync_delay: float = 1.0
    on_demand_sync_delay: float = 1.0
    # Which documented shape errors[] entries take on GET /connections[/{id}] (API.md §10):
    # "doc" {error_type, resource, message}, "oas" {error_message, affected_endpoints,
    # first_seen, last_seen}, or "both" merged.
    error_shape: str = "both"
    webhook_retry_delays: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    state_file: str | None = None

    # Knobs /_sandbox/config may change at runtime (api_key is never echoed back).
    TUNABLE = (
        "api_key",
        "webhook_url",
        "get_rate",
        "write_rate",
        "link_token_ttl",
        "auth_code_ttl",
        "historical_sync_delay",
        "force_sync_delay",
        "on_demand_sync_delay",
        "error_shape",
        "webhook_retry_delays",
    )
    ERROR_SHAPES = ("both", "doc", "oas")

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            api_key=os.environ.get("TRACKSTAR_API_KEY") or DEFAULT_API_KEY,
            webhook_secret=os.environ.get("TRACKSTAR_WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
            webhook_url=os.environ.get("TRACKSTAR_SANDBOX_WEBHOOK_URL") or None,
            get_rate=_float_env("SANDBOX_GET_RATE", 10.0),
            write_rate=_float_env("SANDBOX_WRITE_RATE", 50.0),
        )

    def public(self) -> dict:
        shown = {name: getattr(self, name) for name in self.TUNABLE if name != "api_key"}
        return {"api_key_set": bool(self.api_key), **shown}

    @classmethod
    def check(cls, name: str, value: object) -> str | None:
        """Why /_sandbox/config refuses this value, or None."""
        if name == "api_key" and (not isinstance(value, str) or not value.strip()):
            return "api_key must be a non-empty string."
        if name == "error_shape" and value not in cls.ERROR_SHAPES:
            return f"error_shape must be one of {list(cls.ERROR_SHAPES)}."
        delays = ("historical_sync_delay", "force_sync_delay", "on_demand_sync_delay")
        if name in delays and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            return f"{name} must be a number of seconds >= 0."
        return None
