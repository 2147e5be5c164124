from django.contrib.auth import views as auth_views
from django.urls import path

from connections import login_views, views

app_name = "portal"

urlpatterns = [
    path("", views.portal_index, name="index"),
    path("login/", login_views.PortalLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("choose/", views.choose_customer, name="choose_customer"),
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
    path("inventory/", views.portal_inventory, name="inventory"),
    path("orders/", views.portal_orders, name="orders"),
    path("orders/<int:pk>/", views.portal_order_detail, name="order_detail"),
    path("connections/table", views.portal_connections_table, name="connections_table"),
    path("connections/status.json", views.portal_connections_status, name="connections_status"),
    path("connections/<int:pk>/disconnect", views.connection_disconnect, name="disconnect"),
    path("connections/<int:pk>/rename", views.connection_rename, name="rename"),
    path("get-link-token", views.portal_link.get_link_token, name="get_link_token"),
    path("store-token", views.portal_link.store_token, name="store_token"),
    path("exchanges/<uuid:public_id>", views.portal_link.exchange_status, name="exchange_status"),
]
