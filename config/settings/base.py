"""Settings shared by every environment. One `environ.Env()`; every knob is an
environment variable of DESIGN.md §8. Defaults here are for a developer's machine:
production.py refuses to start on them."""

from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

VAR_DIR = Path(env("DOCKSIDE_VAR_DIR", default=str(BASE_DIR / "var")))

# Well-known development values (in the package, for the entry points' check too).
# production.py refuses every one of them.
from . import (  # noqa: E402
    DEV_FIELD_ENCRYPTION_KEY,
    DEV_SECRET_KEY,
    DEV_TRACKSTAR_API_KEY,
    DEV_TRACKSTAR_WEBHOOK_SECRET,
)

SECRET_KEY = env("SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "customers",
    "connections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response: our origin and Trackstar Link's only.
    "connections.middleware.ContentSecurityPolicyMiddleware",
    # Pages that embed Trackstar Link allow its OAuth popups (Cross-Origin-Opener-Policy).
    "connections.middleware.link_page_opener_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A NUL in the query string, or a form Django cannot read, is a 400 before the CSRF
    # check reads the form (and Django's error pages read it again).
    "connections.middleware.RefuseUnreadableRequestsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Slows a username attacked from many addresses; outside axes, so a refused try is
    # not an axes failure.
    "connections.login_throttle.LoginSlowdownMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed logins (portal and admin): lock the username from that address (never the
# username for everyone) after 5 tries, for 15 minutes from the last counted failure.
# Attempts during a lockout, the right password included, are refused and not counted, so
# they cannot stretch it. Counted in the database, so every web process sees the same count.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCK_OUT_AT_FAILURE = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# Failures for a username from any address (connections/login_throttle.py): past
# LOGIN_SLOWDOWN_AFTER within the window, a browser that has not logged in as that user
# before may try it once every LOGIN_SLOWDOWN_SECONDS (else a 429). A slowdown, never a
# lockout: browsers the user has logged in from are not slowed at all.
LOGIN_SLOWDOWN_AFTER = env.int("LOGIN_SLOWDOWN_AFTER", default=20)
LOGIN_SLOWDOWN_WINDOW_SECONDS = env.int("LOGIN_SLOWDOWN_WINDOW_SECONDS", default=60 * 60)
LOGIN_SLOWDOWN_SECONDS = env.int("LOGIN_SLOWDOWN_SECONDS", default=5)
LOGIN_DEVICE_COOKIE_AGE = env.int("LOGIN_DEVICE_COOKIE_AGE", default=180 * 24 * 60 * 60)
AXES_LOCKOUT_TEMPLATE = "portal/locked_out.html"
# One notion of "the client's address" for every throttle (TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "connections.throttle.client_ip"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'dockside.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file in the demo: wait for locks instead of
    # failing, and take the write lock up front so two writers never deadlock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/portal/login/"
LOGIN_REDIRECT_URL = "/portal/"
LOGOUT_REDIRECT_URL = "/portal/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Bodies larger than this are refused before a view parses them (DESIGN.md §9).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Dockside <no-reply@dockside.local>")

# Where people reach Dockside: used in emailed links (magic links, invitations).
DOCKSIDE_BASE_URL = env("DOCKSIDE_BASE_URL", default="http://127.0.0.1:8000")
DOCKSIDE_PRODUCT_NAME = env("DOCKSIDE_PRODUCT_NAME", default="Dockside")
DOCKSIDE_SUPPORT_EMAIL = env("DOCKSIDE_SUPPORT_EMAIL", default="support@dockside.local")
# Who mail_admins() reaches: operational alerts such as Trackstar refusing our API key.
# A comma list of addresses (DOCKSIDE_ADMINS=ops@example.com,oncall@example.com).
ADMINS = [
    ("Dockside staff", a) for a in env.list("DOCKSIDE_ADMINS", default=[DOCKSIDE_SUPPORT_EMAIL])
]
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Guessing limits: unknown /connect/ tokens per client IP in 15 minutes. Past it, unknown
# tokens get a 429; a real link always opens.
CONNECT_TOKEN_MISS_LIMIT = env.int("CONNECT_TOKEN_MISS_LIMIT", default=20)
# How many proxies in front of Dockside append to X-Forwarded-For (0: use REMOTE_ADDR).
# Every limit by address relies on it; production refuses to start without it.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# get-link-token and store-token calls per minute (each at least 1), per caller (a user, or
# a magic link's visitors) and per customer: each costs a Trackstar write, and Trackstar's
# write budget (50/s) is shared by all customers. Past them: 429 with Retry-After.


def _per_minute(name: str, default: int) -> int:
    # A bucket of 0 would refuse (in fact fail) every call: refused here, at start.
    value = env.int(name, default=default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1 (calls per minute), not {value}.")
    return value


LINK_TOKEN_LIMIT_PER_USER = _per_minute("LINK_TOKEN_LIMIT_PER_USER", 10)
LINK_TOKEN_LIMIT_PER_CUSTOMER = _per_minute("LINK_TOKEN_LIMIT_PER_CUSTOMER", 30)
STORE_TOKEN_LIMIT_PER_USER = _per_minute("STORE_TOKEN_LIMIT_PER_USER", 10)
STORE_TOKEN_LIMIT_PER_CUSTOMER = _per_minute("STORE_TOKEN_LIMIT_PER_CUSTOMER", 30)

# --- Secrets at rest ------------------------------------------------------------------
# Comma list of Fernet keys: the first encrypts, all decrypt (rotate_encryption_keys).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[DEV_FIELD_ENCRYPTION_KEY])

# --- Trackstar --------------------------------------------------------------------------
SANDBOX_PORT = env.int("SANDBOX_PORT", default=8765)
TRACKSTAR_BASE_URL = env("TRACKSTAR_BASE_URL", default=f"http://127.0.0.1:{SANDBOX_PORT}")
TRACKSTAR_API_KEY = env("TRACKSTAR_API_KEY", default=DEV_TRACKSTAR_API_KEY)
TRACKSTAR_LINK_SCRIPT_URL = env(
    "TRACKSTAR_LINK_SCRIPT_URL", default=f"{TRACKSTAR_BASE_URL}/link/main.js"
)
TRACKSTAR_WEBHOOK_SECRET = env("TRACKSTAR_WEBHOOK_SECRET", default=DEV_TRACKSTAR_WEBHOOK_SECRET)
# Origins Trackstar Link turns out to need besides its script's own (main.js is not public):
# added to the Content-Security-Policy with the script's origin, e.g. https://x.trackstarhq.com.
TRACKSTAR_LINK_EXTRA_ORIGINS = env.list("TRACKSTAR_LINK_EXTRA_ORIGINS", default=[])
# (connect, read) seconds for every call to Trackstar.
TRACKSTAR_TIMEOUT = (
    env.float("TRACKSTAR_CONNECT_TIMEOUT", default=3.05),
    env.float("TRACKSTAR_READ_TIMEOUT", default=30.0),
)

# --- Sync (DESIGN.md §6) -------------------------------------------------------------------
# Trackstar allows 10 GET/s per access token (API.md §7); every worker shares this budget
# through a Redis token bucket (a per-process one without Redis).
TRACKSTAR_GET_RATE = env.float("TRACKSTAR_GET_RATE", default=10.0)
TRACKSTAR_GET_BURST = env.int("TRACKSTAR_GET_BURST", default=int(TRACKSTAR_GET_RATE) or 1)
# A sync holds its (connection, resource) lease this long past its last page; a worker
# that died lets it lapse after this.
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=120)
# Incremental runs ask for updated_date >= mark - overlap, for clock skew and records
# written while the previous run was paging.
SYNC_OVERLAP_SECONDS = env.int("SYNC_OVERLAP_SECONDS", default=120)
# Most resources change hourly at Trackstar; warehouses and shipping methods twice a day
# (API.md §5). Poll a few times per Trackstar cycle; webhooks fill the gaps in between.
SYNC_INTERVAL_SECONDS = env.int("SYNC_INTERVAL_SECONDS", default=15 * 60)
SYNC_SLOW_INTERVAL_SECONDS = env.int("SYNC_SLOW_INTERVAL_SECONDS", default=3 * 60 * 60)
# At most this many syncs enqueued per dispatcher tick (every minute).
SYNC_DISPATCH_BATCH = env.int("SYNC_DISPATCH_BATCH", default=500)
# A resource's first read waits for Trackstar's connection.historical-sync-completed (or the
# historical_sync_completed map); if neither ever says so, it is read anyway after this.
SYNC_HISTORY_WAIT_SECONDS = env.int("SYNC_HISTORY_WAIT_SECONDS", default=6 * 60 * 60)
# "Resync now" asks Trackstar to refresh from the WMS and reads on
# connection.force-sync-completed; without that event, it reads after this.
SYNC_FORCE_TIMEOUT_SECONDS = env.int("SYNC_FORCE_TIMEOUT_SECONDS", default=15 * 60)
# The health poll re-reads GET /connections/{id} (errors[], historical_sync_completed):
# often while an error is open, hourly (staggered) otherwise. Webhooks can be missed.
HEALTH_CHECK_INTERVAL_SECONDS = env.int("HEALTH_CHECK_INTERVAL_SECONDS", default=60 * 60)
HEALTH_CHECK_ERROR_INTERVAL_SECONDS = env.int("HEALTH_CHECK_ERROR_INTERVAL_SECONDS", default=5 * 60)
HEALTH_CHECK_BATCH = env.int("HEALTH_CHECK_BATCH", default=200)
# One reconnect email per incident; a connection whose error flaps gets no second email
# within this long.
RECONNECT_EMAIL_QUIET_SECONDS = env.int("RECONNECT_EMAIL_QUIET_SECONDS", default=24 * 60 * 60)

# --- Redis, Celery ------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
# How long Redis waits before handing an unacknowledged task (its worker died) to another
# worker. Tests that kill a worker set it short.
BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files in var/broker, so the demo needs no server.
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "control"):
        # kombu's filesystem transport expects its folders to exist.
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
        # kombu sweeps for abandoned messages every interval x throttle seconds (100 s by
        # default); with a short visibility timeout, sweep at the same pace.
        "unacked_restore_interval": max(1, min(10, BROKER_VISIBILITY_TIMEOUT // 10)),
        "unacked_restore_throttle": 10 if BROKER_VISIBILITY_TIMEOUT >= 600 else 1,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
CELERY_TASK_IGNORE_RESULT = True
# Tests give each of their workers a queue of its own, so workers do not steal each
# other's tasks.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="celery")
# No task is lost: acknowledge after the work is done, give the message back when the
# worker process dies, and take one message at a time.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Both well below the broker's visibility timeout, or Redis would hand a running task
# to a second worker.
CELERY_TASK_SOFT_TIME_LIMIT = 15 * 60
CELERY_TASK_TIME_LIMIT = 20 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    "exchange-sweep": {"task": "connections.exchange_sweep", "schedule": 30.0},
    "webhooks-sweep": {"task": "connections.webhooks_sweep", "schedule": 60.0},
    "magic-links-expire": {"task": "connections.magic_links_expire", "schedule": 15 * 60.0},
    "sync-dispatch": {"task": "connections.sync_dispatch", "schedule": 60.0},
    "health-poll": {"task": "connections.health_poll", "schedule": 60.0},
    "reconcile": {"task": "connections.reconcile", "schedule": 60 * 60.0},
}
# Fail fast when the broker is down: the outbox row is already committed, and the sweep
# enqueues it later; a request must not hang on a dead broker.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TIMEZONE = "UTC"

# --- Content-Security-Policy (django-csp), enforced ------------------------------------------
# connections.middleware adds Trackstar Link's origins (TRACKSTAR_LINK_SCRIPT_URL's, and
# TRACKSTAR_LINK_EXTRA_ORIGINS) to script, style, img, font, connect and frame sources.
# No inline script anywhere: page scripts are static files, config is a JSON data block.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        # Link styles its modal with a <style> it adds to the page; a style runs no code.
        "style-src": [csp.SELF, csp.UNSAFE_INLINE],
        # Integration logos are URLs from Trackstar's integration list, on hosts it does not
        # document.
        "img-src": [csp.SELF, "data:", "https:"],
        "font-src": [csp.SELF, "data:"],
        "connect-src": [csp.SELF],
        "frame-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    }
}

# Short timeouts: the cache only holds limits and the integrations list, which give way
# when Redis is down (connections/degrade.py); without them a hung Redis would hold every
# login for as long as the OS lets a connection try.
REDIS_CACHE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": REDIS_CACHE_OPTIONS,
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs at DEBUG; keep it quiet so nothing sensitive leaks.
        "urllib3": {"level": "WARNING"},
    },
}
