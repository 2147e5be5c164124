"""Webhook events from Trackstar, read-only but for retrying the failed ones."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.admin import ReadOnlyAdmin
from connections.models import WebhookEvent
from connections.webhooks import services as webhook_service


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    exclude = ["access_token"]  # decrypted on load: never rendered
    list_display = [
        "received_at",
        "event_type",
        "connection",
        "status",
        "attempts",
        "svix_id",
        "error_short",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["svix_id", "trackstar_connection_id", "event_type"]
    list_select_related = ["connection"]
    actions = ["retry"]

    @admin.display(description="Error")
    def error_short(self, obj: WebhookEvent) -> str:
        return obj.error[:100]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and request.user.has_perm("connections.change_connection")

    @admin.action(description="Retry failed events", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        count = 0
        for event in queryset.filter(status=WebhookEvent.Status.FAILED):
            count += webhook_service.webhook_retry(event=event, actor=request.user)
        messages.success(request, f"Queued {count} event(s) again.")
