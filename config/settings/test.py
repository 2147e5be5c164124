"""pytest. The suite expects DATABASE_URL and REDIS_URL (scripts/test.sh provides them)."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
STATIC_ROOT = None  # type: ignore[assignment]  # whitenoise serves nothing from disk under test
# Tests that need Trackstar use the `trackstar` fixture (a sandbox of their own); the rest
# must never reach a developer's running demo sandbox on the default port.
# (Processes the tests start, such as the worker, get the sandbox's URL in their env.)
TRACKSTAR_BASE_URL = env("TRACKSTAR_BASE_URL", default="http://127.0.0.1:9")
TRACKSTAR_LINK_SCRIPT_URL = f"{TRACKSTAR_BASE_URL}/link/main.js"
