from django.contrib import admin
from django.urls import include, path

from . import views

admin.site.site_header = "Dockside staff"
admin.site.site_title = "Dockside"
admin.site.index_title = "Customers and their warehouse connections"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("portal/", include("connections.urls")),
]
