from django.contrib.auth import views as auth_views
from django.urls import path

from portal.logins import views as login_views
from portal.views import dashboard, data

app_name = "portal"

urlpatterns = [
    path("", dashboard.portal_index, name="index"),
    path("login/", login_views.PortalLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("choose/", dashboard.choose_customer, name="choose_customer"),
    path(
        "welcome/<uidb64>/<token>/",
        login_views.PortalSetPasswordView.as_view(kind="invitation"),
        name="password_set",
    ),
    path("password-reset/", login_views.PortalPasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        login_views.PortalPasswordResetSentView.as_view(),
        name="password_reset_sent",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        login_views.PortalSetPasswordView.as_view(kind="reset"),
        name="password_reset_confirm",
    ),
    path("inventory/", data.portal_inventory, name="inventory"),
    path("orders/", data.portal_orders, name="orders"),
    path("orders/<int:pk>/", data.portal_order_detail, name="order_detail"),
    path("connections/table", dashboard.portal_connections_table, name="connections_table"),
    path("connections/status.json", dashboard.portal_connections_status, name="connections_status"),
    path("connections/<int:pk>/disconnect", dashboard.connection_disconnect, name="disconnect"),
    path("connections/<int:pk>/rename", dashboard.connection_rename, name="rename"),
    path("get-link-token", dashboard.portal_link.get_link_token, name="get_link_token"),
    path("store-token", dashboard.portal_link.store_token, name="store_token"),
    path(
        "exchanges/<uuid:public_id>", dashboard.portal_link.exchange_status, name="exchange_status"
    ),
]
