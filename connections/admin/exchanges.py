"""Link auth-code exchanges, read-only."""

from django.contrib import admin

from config.admin import ReadOnlyAdmin
from connections.models import AuthCodeExchange


@admin.register(AuthCodeExchange)
class AuthCodeExchangeAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "customer",
        "integration_name",
        "source",
        "status",
        "attempts",
        "created_by",
        "created_at",
        "finished_at",
        "connection",
        "last_error",
    ]
    # "Refused delete: owed" lists the refused connections Trackstar still has to delete.
    list_filter = ["status", "source", "integration_name", "refused_delete"]
    search_fields = ["customer__name", "public_id", "refused_connection_id"]
    list_select_related = ["customer", "created_by", "connection"]
    exclude = ["auth_code", "auth_code_hash", "refused_access_token"]
