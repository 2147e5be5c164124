import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.celery_app import app as celery_app

ROOT = Path(__file__).resolve().parents[1]


def test_healthz_reports_database_broker_and_cache(client, db):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "cache": "ok"}


def test_healthz_is_503_when_the_broker_is_down(client, db, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["broker"] == "down"
    assert response.json()["database"] == "ok"


def test_healthz_is_503_when_the_cache_is_down_and_says_nothing_of_where(client, db, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://:hunter2@127.0.0.1:1/0",
            "OPTIONS": settings.REDIS_CACHE_OPTIONS,
        }
    }

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "broker": "ok",
        "cache": "down",
    }
    assert b"hunter2" not in response.content and b"127.0.0.1" not in response.content


@pytest.mark.skipif(not os.environ.get("DATABASE_URL"), reason="needs DATABASE_URL")
def test_healthz_is_503_when_the_database_is_down():
    # A separate process whose database is a closed port: the real failure, not a stub.
    script = (
        "import django, json; django.setup();"
        "from django.test import Client; r = Client().get('/healthz');"
        "print(json.dumps({'code': r.status_code, 'body': r.json()}))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing",
    }
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 503
    assert result["body"]["database"] == "down"


def test_livez_stays_200_while_redis_is_down_for_the_load_balancer(client, db, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    assert client.get("/healthz").status_code == 503

    response = client.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert client.post("/livez").status_code == 405
