"""Which settings module a process runs on, decided in one place for every entry point
(manage.py, the Celery app, wsgi/asgi). Nothing here imports Django or the settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

LOCAL = "config.settings.local"
PRODUCTION = "config.settings.production"

# Well-known development values: base.py defaults to them and production.py refuses them.
DEV_SECRET_KEY = "django-insecure-dockside-development-only"
DEV_FIELD_ENCRYPTION_KEY = "ZG9ja3NpZGUtZGV2LW9ubHktZmllbGQta2V5LTAwMDA="
DEV_TRACKSTAR_API_KEY = "sandbox-key"
# The sandbox signs its webhooks with this secret unless told otherwise.
DEV_TRACKSTAR_WEBHOOK_SECRET = "whsec_ZG9ja3NpZGUtc2FuZGJveC13ZWJob29rLXNlY3JldA=="

# Secrets only a deployment sets: local settings would run with DEBUG on and a development
# database next to them. base.py also reads .env, so a secret there counts too. A variable
# set to its development value (a developer's .env for the sandbox) is not one.
PRODUCTION_VARIABLES = {
    "SECRET_KEY": DEV_SECRET_KEY,
    "TRACKSTAR_API_KEY": DEV_TRACKSTAR_API_KEY,
    "TRACKSTAR_WEBHOOK_SECRET": DEV_TRACKSTAR_WEBHOOK_SECRET,
    "FIELD_ENCRYPTION_KEYS": DEV_FIELD_ENCRYPTION_KEY,
}
DOTENV = Path(__file__).resolve().parent.parent.parent / ".env"


def _dotenv_values(path: Path) -> dict[str, str]:
    """The non-empty values a .env file sets (django-environ's format)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    values = {}
    for line in lines:
        line = line.strip().removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        value = value.strip().strip("'\"")
        if sep and not name.startswith("#") and value:
            values[name.strip()] = value
    return values


def production_variables_set(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = DOTENV
) -> list[str]:
    environ = os.environ if environ is None else environ
    in_dotenv = _dotenv_values(dotenv) if dotenv is not None else {}
    found = []
    for name, development in PRODUCTION_VARIABLES.items():
        value = environ.get(name, "").strip() or in_dotenv.get(name, "")
        if value and value != development:
            found.append(name)
    return found


def settings_module_select() -> None:
    """Use local settings when DJANGO_SETTINGS_MODULE is unset, unless that would run a
    deployment on them: then stop with an error that says what to set.

    wsgi.py and asgi.py cannot default to production instead: importing them imports
    config/__init__.py, whose Celery app must choose before it is built."""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    found = production_variables_set()
    if found:
        # Printed, not only raised: gunicorn and celery do not show a SystemExit's message.
        print(
            "DJANGO_SETTINGS_MODULE is not set, and this environment has production "
            f"variables ({', '.join(found)}): refusing to fall back to {LOCAL}. Set "
            f"DJANGO_SETTINGS_MODULE={PRODUCTION}, or {LOCAL} explicitly on a "
            "developer's machine.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    os.environ["DJANGO_SETTINGS_MODULE"] = LOCAL
