"""Settings shared by every environment. One `environ.Env()`; every knob is an
environment variable of DESIGN.md §8. Defaults here are for a developer's machine:
production.py refuses to start on them."""

from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

VAR_DIR = Path(env("DOCKSIDE_VAR_DIR", default=str(BASE_DIR / "var")))

# Well-known development values (in the package, for the entry points' check too).
# production.py refuses every one of them.
from config.settings import (  # noqa: E402
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
    # GinIndex(OpClass(...)) for the portal's trigram search indexes (PostgreSQL only).
    "django.contrib.postgres",
    "axes",
    "customers",
    "audit",
    "connections",
    "portal",
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
    "portal.logins.slowdown.LoginSlowdownMiddleware",
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
# Failures for a username from any address (portal/logins/slowdown.py): past
# LOGIN_SLOWDOWN_AFTER within the window, a browser that has not logged in as that user
# before may try it once every LOGIN_SLOWDOWN_SECONDS (else a 429). A slowdown, never a
# lockout: browsers the user has logged in from are not slowed at all.
LOGIN_SLOWDOWN_AFTER = env.int("LOGIN_SLOWDOWN_AFTER", default=20)
LOGIN_SLOWDOWN_WINDOW_SECONDS = env.int("LOGIN_SLOWDOWN_WINDOW_SECONDS", default=60 * 60)
LOGIN_SLOWDOWN_SECONDS = env.int("LOGIN_SLOWDOWN_SECONDS", default=5)
LOGIN_DEVICE_COOKIE_AGE = env.int("LOGIN_DEVICE_COOKIE_AGE", default=180 * 24 * 60 * 60)
# Our page: how long the pause is, the way back to the login form, whom to write to.
AXES_LOCKOUT_CALLABLE = "config.lockout.lockout_response"
# One notion of "the client's address" for every throttle (TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "connections.link.guess_limits.client_ip"

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
# One: requests spaced 1/rate apart, so no second ever holds more than the rate. A burst
# equal to the rate let a fresh bucket send twice the rate in its first second (burst plus
# refill), which Trackstar's per-second limit answers with 429s.
TRACKSTAR_GET_BURST = env.int("TRACKSTAR_GET_BURST", default=1)
# A sync holds its (connection, resource) lease this long past its last renewal. A live
# run renews it on every page and, while a page waits (the shared rate limit, a slow
# Trackstar, a retry-after), every third of it: a heartbeat. A worker that died lets it
# lapse, and SYNC_RESUME_INTERVAL_SECONDS later at most another worker resumes the run from
# its cursor. The trade-off: shorter hands a dead worker's sync over sooner, but a worker
# stalled longer than this (a frozen VM, a database write stuck on a lock) loses its lease
# to another; the fencing token then makes it stop without writing, so the cost is work
# done twice, never wrong data. 30 s: three heartbeats (one UPDATE each) cover any pause
# a healthy worker has, and a dead worker's sync resumes 30 to 40 s after the crash.
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=30)
if SYNC_LEASE_SECONDS < 3:
    raise ImproperlyConfigured(f"SYNC_LEASE_SECONDS must be at least 3, not {SYNC_LEASE_SECONDS}.")
# How often beat looks for syncs whose lease lapsed (their worker died), to resume them:
# one indexed query over the rows due now.
SYNC_RESUME_INTERVAL_SECONDS = env.int("SYNC_RESUME_INTERVAL_SECONDS", default=10)
# Incremental runs ask for updated_date >= mark - overlap, for clock skew and records
# written while the previous run was paging.
SYNC_OVERLAP_SECONDS = env.int("SYNC_OVERLAP_SECONDS", default=120)
# Most resources change hourly at Trackstar; warehouses and shipping methods twice a day
# (API.md §5). Poll a few times per Trackstar cycle; webhooks fill the gaps in between.
SYNC_INTERVAL_SECONDS = env.int("SYNC_INTERVAL_SECONDS", default=15 * 60)
SYNC_SLOW_INTERVAL_SECONDS = env.int("SYNC_SLOW_INTERVAL_SECONDS", default=3 * 60 * 60)
# At most this many syncs enqueued per dispatcher tick (every minute), as many requests sent
# again, and as many new connections given sync state (a big import: their first reads
# are spread over the interval, not all in one minute). 5,000: 10,000 connections make about
# 3,450 resource syncs due a minute (BENCHMARKS.md, dispatcher); 500 fell behind by hours.
SYNC_DISPATCH_BATCH = env.int("SYNC_DISPATCH_BATCH", default=5000)
# A requested sync (staff's resync or re-read, a webhook's, a first or a scheduled one) is a
# row before it is a message. A request no run has taken this long after its message went
# out is presumed lost with the broker's data, and the dispatcher sends it again; the wait
# doubles with each copy, up to 32 times this, so a long queue gathers few of them (a copy
# of a message that was only slow finds its request taken and does nothing). With the
# dispatcher every minute, a lost request runs within about two minutes.
SYNC_REQUEST_RESEND_SECONDS = env.int("SYNC_REQUEST_RESEND_SECONDS", default=60)
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

# --- Webhooks (DESIGN.md §6) ------------------------------------------------------------------
# A stored event handed to the broker and still not applied this long after is taken as
# lost (Redis restarted empty, or the worker holding it died) and the sweep (every minute)
# sends it again: applied within about two minutes from the database alone. A live event
# takes well under a second; one that waits longer in a backlog gets a second message,
# which finds it applied and does nothing (applying is idempotent, under the row's lock).
WEBHOOK_LOST_TASK_SECONDS = env.int("WEBHOOK_LOST_TASK_SECONDS", default=60)
# At most this many events per sweep, oldest first: a real backlog is not doubled.
WEBHOOK_SWEEP_BATCH = env.int("WEBHOOK_SWEEP_BATCH", default=1000)

# --- Redis, Celery ------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
# How long Redis waits before handing an unacknowledged task (its worker died) to another
# worker. Tests that kill a worker set it short.
BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
# For a Redis broker, here and in production.py.
REDIS_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    # kombu sweeps for abandoned messages every interval x throttle seconds (100 s by
    # default); with a short visibility timeout, sweep at the same pace.
    "unacked_restore_interval": max(1, min(10, BROKER_VISIBILITY_TIMEOUT // 10)),
    "unacked_restore_throttle": 10 if BROKER_VISIBILITY_TIMEOUT >= 600 else 1,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
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
    CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_TRANSPORT_OPTIONS
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
CELERY_TASK_IGNORE_RESULT = True
# Four queues, so a customer's exchange never waits behind a sync: a worker started with
# `-Q interactive,webhooks,default` answers "Connecting…" while `-Q sync` workers are busy
# with long reads (README, "Production"). A worker without -Q consumes all four.
# The prefix goes before every queue name: tests give each test's workers queues of their
# own with it, so workers do not steal each other's tasks. Production leaves it empty.
CELERY_QUEUE_PREFIX = env("CELERY_QUEUE_PREFIX", default="")
QUEUE_NAMES = ("interactive", "webhooks", "sync", "default")


def _queue(name: str) -> dict[str, str]:
    return {"queue": CELERY_QUEUE_PREFIX + name}


# Every task, by name, and its queue: the one place routing lives.
# tests/test_celery_routing.py fails on a task that is not here.
CELERY_TASK_ROUTES = {
    # interactive: someone is watching, and each task is one or two Trackstar calls.
    "connections.exchange": _queue("interactive"),
    "connections.exchange_refused_delete": _queue("interactive"),
    # webhooks: one stored event each; bursts must not delay an exchange either, so they
    # have a queue of their own that the interactive workers also take.
    "connections.webhook": _queue("webhooks"),
    # sync: minutes of paging through Trackstar (up to SYNC_TIME_BUDGET_SECONDS a task).
    "connections.sync": _queue("sync"),
    "connections.reconcile": _queue("sync"),  # pages through every Trackstar connection
    # default: beat's periodic work (short queries that enqueue the rest) and health
    # checks (one GET each, up to HEALTH_CHECK_BATCH a minute: fanned out by the poll, so
    # not on interactive). It must not wait behind syncs either: the exchange sweep is how
    # a lost exchange comes back, and the dispatcher is what starts syncs.
    "connections.exchange_sweep": _queue("default"),
    "connections.webhooks_sweep": _queue("default"),
    "connections.magic_links_expire": _queue("default"),
    "connections.sync_dispatch": _queue("default"),
    "connections.sync_resume_orphaned": _queue("default"),
    "connections.health_poll": _queue("default"),
    "connections.health_refresh": _queue("default"),
}
# Each queue with a direct exchange of its own name, as Celery makes for a queue it meets
# in a route, so producers and workers agree whichever declares it first.
CELERY_TASK_QUEUES = [
    Queue(queue, Exchange(queue), routing_key=queue)
    for queue in (CELERY_QUEUE_PREFIX + name for name in QUEUE_NAMES)
]
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUE_PREFIX + "default"
# No task is lost: acknowledge after the work is done, give the message back when the
# worker process dies, and take one message at a time.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Both well below the broker's visibility timeout, or Redis would hand a running task
# to a second worker (tests/test_celery_routing.py checks it, production settings too).
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
    # A dead worker's sync: resumed within SYNC_LEASE_SECONDS + this of the crash.
    "sync-resume-orphaned": {
        "task": "connections.sync_resume_orphaned",
        "schedule": float(SYNC_RESUME_INTERVAL_SECONDS),
    },
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
    "filters": {"redact_link_tokens": {"()": "config.log_filters.RedactLinkTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs at DEBUG; keep it quiet so nothing sensitive leaks.
        "urllib3": {"level": "WARNING"},
        # Request lines name the URL: no magic-link token in them (they go on to Django's
        # handlers, mail_admins included, and to the root's).
        "django.request": {"filters": ["redact_link_tokens"]},
        "django.server": {
            "handlers": ["console"],
            "filters": ["redact_link_tokens"],
            "level": "INFO",
            "propagate": False,
        },
    },
}
