import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "p" * 30 + "-production-secret-key-0123456789abcdefgh",
    "DATABASE_URL": "postgres://dockside:pw@db.internal:5432/dockside",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "TRACKSTAR_API_KEY": "live-org-key",
    "TRACKSTAR_WEBHOOK_SECRET": "whsec_bGl2ZS13ZWJob29rLXNlY3JldA==",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "dockside.example.com",
    "DOCKSIDE_BASE_URL": "https://dockside.example.com",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Only what a production host would have: no test-only switches such as
    # DJANGO_ALLOW_ASYNC_UNSAFE (set for Playwright) leak into the check.
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secrets():
    for missing in ["SECRET_KEY", "TRACKSTAR_API_KEY", "FIELD_ENCRYPTION_KEYS"]:
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert missing in result.stderr


def test_production_refuses_development_defaults():
    env = {**PRODUCTION_ENV, "TRACKSTAR_API_KEY": "sandbox-key"}
    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "TRACKSTAR_API_KEY" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRACKSTAR_WEBHOOK_SECRET", "not-a-svix-secret"),
        ("TRACKSTAR_WEBHOOK_SECRET", "whsec_***not base64***"),
        ("FIELD_ENCRYPTION_KEYS", "too-short-to-be-a-fernet-key"),
        ("DOCKSIDE_BASE_URL", "http://dockside.example.com"),
        ("DOCKSIDE_BASE_URL", None),
    ],
)
def test_production_refuses_values_that_would_fail_later(name, value):
    """A webhook secret svix cannot use (every delivery a 500), a key Fernet cannot load,
    or no https base URL for emailed links: refused at start, by name."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != name}
    if value is not None:
        env[name] = value

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert name in result.stderr
