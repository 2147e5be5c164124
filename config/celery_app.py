from celery import Celery

from config.settings import settings_module_select

# Before the app is built: Celery's Django fixup reads DJANGO_SETTINGS_MODULE then.
settings_module_select()

app = Celery("dockside")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each domain package keeps its tasks in its own tasks.py (tests/test_celery_routing.py
# fails on one left out).
TASK_PACKAGES = [
    "connections.health",
    "connections.link",
    "connections.sync",
    "connections.webhooks",
]
app.autodiscover_tasks(TASK_PACKAGES)
