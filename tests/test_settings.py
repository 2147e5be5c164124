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
    "TRUSTED_PROXY_COUNT": "1",
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


@pytest.mark.parametrize("value", [None, "", "-1", "two", "1.5"])
def test_production_refuses_to_guess_how_many_proxies_are_in_front(value):
    """Behind a load balancer every client would have the balancer's address, and five
    wrong passwords from anyone would lock a username for everyone."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "TRUSTED_PROXY_COUNT"}
    if value is not None:
        env["TRUSTED_PROXY_COUNT"] = value

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "TRUSTED_PROXY_COUNT" in result.stderr


def test_production_facing_the_internet_says_so_with_zero_proxies():
    env = {**PRODUCTION_ENV, "TRUSTED_PROXY_COUNT": "0"}

    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stdout + result.stderr


# --- No fallback to local settings where production variables are set ----------------------

SETTINGS_HINT = "DJANGO_SETTINGS_MODULE=config.settings.production"


def _without_settings_module(**env: str) -> dict[str, str]:
    """What a host has whose deploy forgot DJANGO_SETTINGS_MODULE (the cleaned environment of
    _run drops it)."""
    return {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return subprocess.run(
        argv, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "name", ["SECRET_KEY", "TRACKSTAR_API_KEY", "TRACKSTAR_WEBHOOK_SECRET", "FIELD_ENCRYPTION_KEYS"]
)
def test_manage_py_refuses_local_settings_when_a_production_secret_is_set(name):
    """Before: manage.py ran on local settings (DEBUG on) with production secrets beside."""
    result = _manage("check", env=_without_settings_module(**{name: PRODUCTION_ENV[name]}))

    assert result.returncode != 0
    assert SETTINGS_HINT in result.stderr and name in result.stderr
    assert "System check identified" not in result.stdout  # it never got to run


@pytest.mark.parametrize(
    "argv",
    [
        # The worker and beat load the app the same way; `report` needs no broker.
        ["-m", "celery", "-A", "config", "report"],
        ["-c", "import config.wsgi"],
        ["-c", "import config.asgi"],
    ],
    ids=["celery", "wsgi", "asgi"],
)
def test_celery_wsgi_and_asgi_refuse_it_too(argv):
    """wsgi/asgi said production, but config/__init__.py (the Celery app) chose local first."""
    result = _run([sys.executable, *argv], env=_without_settings_module(**PRODUCTION_ENV))

    assert result.returncode != 0
    assert SETTINGS_HINT in result.stderr


def test_a_developers_machine_still_falls_back_to_local_settings():
    from config.settings import DOTENV, production_variables_set

    if production_variables_set(environ={}, dotenv=DOTENV):
        pytest.skip(".env on this machine holds a production variable")
    env = {"DATABASE_URL": PRODUCTION_ENV["DATABASE_URL"]}  # PostgreSQL alone is not a deploy

    result = _run(
        [
            sys.executable,
            "-c",
            "import config.wsgi, os; print(os.environ['DJANGO_SETTINGS_MODULE'])",
        ],
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config.settings.local"


def test_local_settings_named_explicitly_run_whatever_is_set():
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.local", "SECRET_KEY": "a-dev-secret"}

    result = _manage("check", env=env)

    assert result.returncode == 0, result.stderr


def test_a_secret_in_dotenv_counts_as_set(tmp_path):
    from config.settings import production_variables_set

    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nDEBUG=on\nexport SECRET_KEY='s3cret'\nTRACKSTAR_API_KEY=\n")

    assert production_variables_set(environ={}, dotenv=dotenv) == ["SECRET_KEY"]
    assert production_variables_set(environ={}, dotenv=tmp_path / "missing") == []


def test_development_values_in_dotenv_do_not_count_as_production(tmp_path):
    """A developer's .env pointing the sandbox at its well-known key and webhook secret is
    not a deployment: manage.py keeps falling back to local settings there."""
    from config.settings import (
        DEV_TRACKSTAR_API_KEY,
        DEV_TRACKSTAR_WEBHOOK_SECRET,
        production_variables_set,
    )

    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"TRACKSTAR_API_KEY={DEV_TRACKSTAR_API_KEY}\n"
        f"TRACKSTAR_WEBHOOK_SECRET={DEV_TRACKSTAR_WEBHOOK_SECRET}\n"
    )

    assert production_variables_set(environ={}, dotenv=dotenv) == []
    assert production_variables_set(environ={"TRACKSTAR_API_KEY": "sk_live"}, dotenv=dotenv) == [
        "TRACKSTAR_API_KEY"
    ]
