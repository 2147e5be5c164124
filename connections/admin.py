from django.contrib import admin

from .models import Connection


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = [
        "trackstar_connection_id", "customer", "integration_name", "status", "source",
        "connected_at", "updated_at",
    ]
    list_filter = ["status", "integration_name", "source", "integration_type"]
    search_fields = ["trackstar_connection_id", "customer__name", "integration_name"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    # The token itself is never rendered: not in the form, not in the list.
    exclude = ["access_token"]
    readonly_fields = [
        "access_token_masked", "available_actions", "created_by", "connected_at",
        "disconnected_at", "created_at", "updated_at",
    ]

    @admin.display(description="Access token")
    def access_token_masked(self, obj: Connection) -> str:
        return obj.access_token_masked or "—"
