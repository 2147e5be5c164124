from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.portal_index, name="index"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="portal/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("choose/", views.choose_customer, name="choose_customer"),
    path(
        "welcome/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/password_set.html",
            post_reset_login=True,
            post_reset_login_backend="django.contrib.auth.backends.ModelBackend",
            success_url="/portal/",
        ),
        name="password_set",
    ),
    path("inventory/", views.portal_inventory, name="inventory"),
    path("orders/", views.portal_orders, name="orders"),
    path("connections/table", views.portal_connections_table, name="connections_table"),
    path("connections/<int:pk>/disconnect", views.connection_disconnect, name="disconnect"),
    path("connections/<int:pk>/rename", views.connection_rename, name="rename"),
    path("get-link-token", views.portal_link.get_link_token, name="get_link_token"),
    path("store-token", views.portal_link.store_token, name="store_token"),
    path("exchanges/<uuid:public_id>", views.portal_link.exchange_status, name="exchange_status"),
]
