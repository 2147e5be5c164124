"""Production: every secret comes from the environment, and the development defaults
are refused, so a misconfigured deploy fails at start instead of running insecurely."""

import base64
import binascii

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import (
    BROKER_VISIBILITY_TIMEOUT,
    CELERY_TASK_TIME_LIMIT,
    DEV_FIELD_ENCRYPTION_KEY,
    DEV_SECRET_KEY,
    DEV_TRACKSTAR_API_KEY,
    DEV_TRACKSTAR_WEBHOOK_SECRET,
    REDIS_BROKER_TRANSPORT_OPTIONS,
    REDIS_CACHE_OPTIONS,
    env,
)

DEBUG = False
SECRET_KEY = env("SECRET_KEY")
TRACKSTAR_API_KEY = env("TRACKSTAR_API_KEY")
TRACKSTAR_WEBHOOK_SECRET = env("TRACKSTAR_WEBHOOK_SECRET")
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
TRACKSTAR_BASE_URL = env("TRACKSTAR_BASE_URL", default="https://production.trackstarhq.com")
TRACKSTAR_LINK_SCRIPT_URL = env(
    "TRACKSTAR_LINK_SCRIPT_URL", default="https://link.trackstarhq.com/main.js"
)
REDIS_URL = env("REDIS_URL")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
# The same Redis options as base.py (CELERY_VISIBILITY_TIMEOUT counts here too).
CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_TRANSPORT_OPTIONS
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": REDIS_CACHE_OPTIONS,
    }
}

DOCKSIDE_BASE_URL = env("DOCKSIDE_BASE_URL")  # emailed links point here: no guessing

# Every limit by client address (logins, /connect/ guesses) needs the real address. Behind a
# load balancer REMOTE_ADDR is the balancer's, so one attacker would lock everyone out; no
# default, then: 0 only when said explicitly, for a server facing the internet directly.
_proxy_count = env.str("TRUSTED_PROXY_COUNT", default="").strip()
TRUSTED_PROXY_COUNT = int(_proxy_count) if _proxy_count.isascii() and _proxy_count.isdigit() else -1


def _is_svix_secret(value: str) -> bool:
    """whsec_ + base64, as Trackstar's dashboard gives it; anything else makes svix raise on
    every delivery (a 500 for each webhook)."""
    if not value.startswith("whsec_"):
        return False
    try:
        return bool(base64.b64decode(value.removeprefix("whsec_"), validate=True))
    except (binascii.Error, ValueError):
        return False


def _is_fernet_key(value: str) -> bool:
    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        return False
    return True


_refused = {
    # Redis must not hand a live task to a second worker (see base.py).
    "CELERY_VISIBILITY_TIMEOUT": BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT,
    "SECRET_KEY": SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50,
    "TRACKSTAR_API_KEY": TRACKSTAR_API_KEY == DEV_TRACKSTAR_API_KEY,
    "TRACKSTAR_WEBHOOK_SECRET": TRACKSTAR_WEBHOOK_SECRET == DEV_TRACKSTAR_WEBHOOK_SECRET
    or not _is_svix_secret(TRACKSTAR_WEBHOOK_SECRET),
    "FIELD_ENCRYPTION_KEYS": not FIELD_ENCRYPTION_KEYS
    or DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEYS
    or not all(_is_fernet_key(key) for key in FIELD_ENCRYPTION_KEYS),
    "DOCKSIDE_BASE_URL": not DOCKSIDE_BASE_URL.startswith("https://"),
    "TRUSTED_PROXY_COUNT": TRUSTED_PROXY_COUNT < 0,
}
_bad = sorted(name for name, refused in _refused.items() if refused)
if _bad:
    raise ImproperlyConfigured(
        "Production settings refuse development or missing values for: " + ", ".join(_bad)
    )

# Behind a TLS-terminating load balancer; with no proxy, the header is the client's own.
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
