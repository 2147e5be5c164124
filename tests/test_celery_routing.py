"""Which queue each task runs on, and the Celery settings that must agree with each other.
Settings, not behaviour, but a task left without a route would silently land on `default`,
and a visibility timeout below the time limit would run a live task twice."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from celery import Task
from django.conf import settings

from config.celery_app import app
from connections.sync.tasks import SYNC_TIME_BUDGET_SECONDS
from tests.test_settings import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parents[1]


def _tasks_defined_in_the_apps() -> set[str]:
    """Every task of every `tasks.py` of the apps' packages, listed for Celery or not."""
    names = set()
    for app_dir in ("audit", "connections", "customers", "portal"):
        for path in (ROOT / app_dir).rglob("tasks.py"):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = importlib.import_module(dotted)
            names |= {obj.name for obj in vars(module).values() if isinstance(obj, Task)}
    return names


def _queue_of(task_name: str) -> str:
    """Where Celery's own router sends the task, without the prefix."""
    queue = app.amqp.router.route({}, task_name)["queue"].name
    return queue.removeprefix(settings.CELERY_QUEUE_PREFIX)


def test_every_task_has_a_route_to_one_of_the_four_queues():
    app.loader.import_default_modules()
    registered = {name for name in app.tasks if not name.startswith("celery.")}
    defined = _tasks_defined_in_the_apps()
    routes = settings.CELERY_TASK_ROUTES

    assert defined <= registered, "add its package to TASK_PACKAGES in config/celery_app.py"
    assert sorted(registered - routes.keys()) == [], "add these tasks to CELERY_TASK_ROUTES"
    assert sorted(routes.keys() - registered) == [], "routes for tasks that do not exist"
    assert {_queue_of(name) for name in registered} <= set(settings.QUEUE_NAMES)
    assert [queue.name for queue in settings.CELERY_TASK_QUEUES] == list(settings.QUEUE_NAMES)


def test_an_exchange_never_shares_a_queue_with_a_sync():
    assert _queue_of("connections.exchange") == "interactive"
    assert _queue_of("connections.exchange_refused_delete") == "interactive"
    assert _queue_of("connections.webhook") == "webhooks"
    assert _queue_of("connections.sync") == "sync"
    assert _queue_of("connections.reconcile") == "sync"
    # Beat's short work (the exchange sweep recovers lost exchanges, the dispatcher starts
    # syncs) must run while every sync slot is busy; only the hourly reconcile is long.
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"] != "connections.reconcile":
            assert _queue_of(entry["task"]) == "default", entry["task"]


def _celery_conf(env: dict[str, str]) -> dict:
    code = (
        "import json, django; django.setup()\n"
        "from config.celery_app import app\n"
        "from connections.sync.tasks import SYNC_TIME_BUDGET_SECONDS\n"
        "c = app.conf\n"
        "print(json.dumps({'queues': [q.name for q in c.task_queues],"
        " 'routes': {t: r['queue'] for t, r in c.task_routes.items()},"
        " 'default_queue': c.task_default_queue,"
        " 'visibility_timeout': (c.broker_transport_options or {}).get('visibility_timeout'),"
        " 'soft_time_limit': c.task_soft_time_limit, 'time_limit': c.task_time_limit,"
        " 'sync_budget': SYNC_TIME_BUDGET_SECONDS}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_queue_prefix_is_put_before_every_queue_and_route():
    """How each test's workers get queues of their own (tests/plugins/worker.py)."""
    conf = _celery_conf(
        {"DJANGO_SETTINGS_MODULE": "config.settings.test", "CELERY_QUEUE_PREFIX": "t9-"}
    )

    assert conf["queues"] == ["t9-interactive", "t9-webhooks", "t9-sync", "t9-default"]
    assert conf["routes"]["connections.exchange"] == "t9-interactive"
    assert set(conf["routes"].values()) <= set(conf["queues"])
    assert conf["default_queue"] == "t9-default"


def _assert_no_double_delivery(conf: dict) -> None:
    # A sync task hands the rest of its run to a fresh task before the soft limit; the
    # hard limit ends it before Redis gives its unacknowledged message to another worker.
    assert conf["sync_budget"] < conf["soft_time_limit"] < conf["time_limit"]
    assert conf["visibility_timeout"] > conf["time_limit"]


def test_the_visibility_timeout_stays_above_the_task_time_limit():
    _assert_no_double_delivery(
        {
            "sync_budget": SYNC_TIME_BUDGET_SECONDS,
            "soft_time_limit": app.conf.task_soft_time_limit,
            "time_limit": app.conf.task_time_limit,
            "visibility_timeout": app.conf.broker_transport_options["visibility_timeout"],
        }
    )
    production = _celery_conf(PRODUCTION_ENV)
    _assert_no_double_delivery(production)
    assert production["queues"] == list(settings.QUEUE_NAMES)  # no prefix in production


def test_production_takes_the_visibility_timeout_it_is_given_and_refuses_a_short_one():
    """production.py used to hard-code 3600 s, so CELERY_VISIBILITY_TIMEOUT did nothing."""
    longer = _celery_conf({**PRODUCTION_ENV, "CELERY_VISIBILITY_TIMEOUT": "7200"})
    assert longer["visibility_timeout"] == 7200

    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    short = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, **PRODUCTION_ENV, "CELERY_VISIBILITY_TIMEOUT": "600"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert short.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT" in short.stderr
