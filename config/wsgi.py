from django.core.wsgi import get_wsgi_application

from config.settings import settings_module_select

# The same rule as manage.py and Celery (config/__init__.py has applied it already): a
# deployment must name config.settings.production; it never falls back to local settings.
settings_module_select()
application = get_wsgi_application()
