"""The audit log, read-only."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditEntry
from audit.sentences import audit_sentence
from config.admin import CalendarSafeChangeList, ReadOnlyAdmin
from connections.integrations import connection_label
from connections.models import Connection


class AuditActorKindFilter(admin.SimpleListFilter):
    title = "who"
    parameter_name = "by"

    def lookups(self, request, model_admin):
        return AuditEntry.ActorKind.choices

    def queryset(self, request, queryset):
        kind = self.value()
        if kind not in AuditEntry.ActorKind.values:
            return queryset
        # Entries from before the kind was written: told apart as AuditEntry.actor_kind does.
        unwritten = ~Q(detail__has_key="by")
        older = {
            AuditEntry.ActorKind.STAFF: Q(actor__is_staff=True),
            AuditEntry.ActorKind.CUSTOMER: Q(actor__isnull=False, actor__is_staff=False),
            AuditEntry.ActorKind.TRACKSTAR: Q(
                actor__isnull=True, action__in=AuditEntry.TRACKSTAR_ACTIONS
            ),
            AuditEntry.ActorKind.SYSTEM: Q(actor__isnull=True)
            & ~Q(action__in=AuditEntry.TRACKSTAR_ACTIONS),
        }[kind]
        return queryset.filter(Q(detail__by=kind) | (unwritten & older))


class AuditConnectionFilter(admin.SimpleListFilter):
    """The chosen customer's connections (or the one a link chose): never every connection
    of every customer in the sidebar."""

    title = "connection"
    parameter_name = "connection__id__exact"

    def lookups(self, request, model_admin):
        customer_id = request.GET.get("customer__id__exact", "")
        chosen = self.value() or ""
        wanted = Q(pk=int(chosen)) if chosen.isdigit() else Q(pk__in=[])
        if customer_id.isdigit():
            wanted |= Q(customer_id=int(customer_id))
        connections = Connection.objects.filter(wanted).select_related("customer")
        return [(str(c.pk), f"{connection_label(c)} of {c.customer.name}") for c in connections]

    def has_output(self) -> bool:
        # Shown (and so applied) whenever one is chosen, even one with nothing to list.
        return self.value() is not None or super().has_output()

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"Not a connection: {value!r}")
        return queryset.filter(connection_id=int(value))


AUDIT_FIELDS = (
    "sentence",
    "created_at",
    "actor",
    "actor_kind",
    "customer",
    "connection",
    "action",
    "detail",
)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Read-only: no add, change or delete, so no Save button on an entry's page."""

    list_display = ["sentence", "created_at", "actor_kind", "action", "detail_short"]
    list_display_links = ["sentence"]
    list_filter = [
        ("customer", admin.RelatedOnlyFieldListFilter),
        AuditConnectionFilter,
        AuditActorKindFilter,
        "action",
        "created_at",
    ]
    search_fields = [
        "action",
        "customer__name",
        "actor__username",
        "actor__first_name",
        "actor__last_name",
        "connection__label",
        "connection__integration_name",
        "connection__trackstar_connection_id",
    ]
    list_select_related = ["actor", "customer", "connection"]
    date_hierarchy = "created_at"
    fields = readonly_fields = AUDIT_FIELDS

    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        # The entry's own page names its customer and connection too.
        return super().get_queryset(request).select_related("actor", "customer", "connection")

    @admin.display(description="What happened")
    def sentence(self, obj: AuditEntry) -> str:
        return audit_sentence(obj)

    @admin.display(description="Who")
    def actor_kind(self, obj: AuditEntry) -> str:
        return AuditEntry.ActorKind(obj.actor_kind).label

    @admin.display(description="Detail")
    def detail_short(self, obj: AuditEntry) -> str:
        return format_html("<code>{}</code>", str(obj.detail)[:120])
