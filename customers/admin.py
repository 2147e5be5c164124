from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from connections.models import Connection

from .models import Customer, Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = [
        "name", "slug", "public_id", "contact_email", "is_active",
        "active_connections", "attention_connections", "created_at",
    ]
    list_filter = ["is_active", "created_at"]
    search_fields = ["name", "slug", "public_id", "contact_email"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["public_id", "created_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        # Counted in the list query itself: one query whatever the number of customers.
        return super().get_queryset(request).annotate(
            n_active=Count("connections", filter=Q(connections__status=Connection.Status.ACTIVE)),
            n_attention=Count(
                "connections",
                filter=Q(connections__status__in=[
                    Connection.Status.NEEDS_RECONNECT, Connection.Status.ERROR,
                ]),
            ),
        )

    @admin.display(description="Active", ordering="n_active")
    def active_connections(self, obj: Customer) -> int:
        return obj.n_active

    @admin.display(description="Need attention", ordering="n_attention")
    def attention_connections(self, obj: Customer) -> int:
        return obj.n_attention


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "customer", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "customer__name"]
    autocomplete_fields = ["user", "customer"]
    list_select_related = ["user", "customer"]
