from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

from config import views
from connections.webhooks import receiver as webhook_receiver
from portal.views import connect as connect_views

admin.site.site_header = "Dockside staff"
admin.site.site_title = "Dockside"
admin.site.index_title = "Customers and their warehouse connections"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:index", permanent=False)),
    # The audit log's addresses before it became its own app: staff bookmarks keep working.
    path(
        "admin/connections/auditentry/<path:rest>",
        RedirectView.as_view(url="/admin/audit/auditentry/%(rest)s", query_string=True),
    ),
    path(
        "admin/connections/auditentry/",
        RedirectView.as_view(pattern_name="admin:audit_auditentry_changelist", query_string=True),
    ),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("livez", views.livez, name="livez"),
    # Browsers ask for it on every page; answer without a 404 in the logs.
    path("favicon.ico", lambda request: HttpResponse(status=204)),
    path("portal/", include("portal.urls")),
    path("connect/<str:token>/", connect_views.connect_page, name="connect"),
    # Where the token URL sends the browser once the session holds the link's grant.
    path("connect/", connect_views.connect_granted_page, name="connect_granted"),
    path("webhooks/trackstar/", webhook_receiver.trackstar_webhook, name="trackstar_webhook"),
]
