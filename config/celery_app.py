from celery import Celery

from config.settings import settings_module_select

# Before the app is built: Celery's Django fixup reads DJANGO_SETTINGS_MODULE then.
settings_module_select()

app = Celery("dockside")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
