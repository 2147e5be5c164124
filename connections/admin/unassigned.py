"""Connections Trackstar has and no customer of ours does: assign them or delete them."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from config.admin import ReadOnlyAdmin
from connections.forms import UnassignedAssignForm, UnassignedDeleteForm
from connections.integrations import connection_label
from connections.link import adoption as adoption_service
from connections.models import TrackstarAccount, UnassignedConnection


class OpenFilter(admin.SimpleListFilter):
    """By default the list shows what needs a person; "Handled" and "All" show the rest."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("resolved", "Handled"), ("all", "All")]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "display": "Waiting",
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
        }
        for value, title in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "display": title,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
            }

    def queryset(self, request, queryset):
        if self.value() == "resolved":
            return queryset.exclude(resolution="")
        if self.value() == "all":
            return queryset
        return queryset.filter(resolution="")


@admin.register(UnassignedConnection)
class UnassignedConnectionAdmin(ReadOnlyAdmin):
    """Connections Trackstar has and Dockside does not, until staff assign or delete them."""

    list_display = [
        "trackstar_connection_id",
        "integration_name",
        "trackstar_created_at",
        "trackstar_customer_id",
        "has_token",
        "seen_via",
        "first_seen_at",
        "resolution",
        "held_reason",
    ]
    list_filter = [OpenFilter, "integration_name", "seen_via"]
    search_fields = ["trackstar_connection_id", "trackstar_customer_id"]
    exclude = ["access_token"]
    change_list_template = "admin/connections/unassignedconnection/change_list.html"
    change_form_template = "admin/connections/unassignedconnection/change_form.html"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("connections.view_connection")

    def _may_act(self, request) -> bool:
        return request.user.has_perm("connections.add_connection") and request.user.has_perm(
            "connections.change_connection"
        )

    @admin.display(description="Token", boolean=True)
    def has_token(self, obj: UnassignedConnection) -> bool:
        return bool(obj.access_token)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "reconcile/",
                wrap(self.reconcile_view),
                name="connections_unassignedconnection_reconcile",
            ),
            path(
                "<int:pk>/assign/",
                wrap(self.assign_view),
                name="connections_unassignedconnection_assign",
            ),
            path(
                "<int:pk>/delete-at-trackstar/",
                wrap(self.delete_view_at_trackstar),
                name="connections_unassignedconnection_delete_at_trackstar",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        account = TrackstarAccount.objects.filter(pk=1).first()
        return super().changelist_view(
            request,
            {**(extra_context or {}), "account": account, "may_act": self._may_act(request)},
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(
            request,
            object_id,
            form_url,
            {**(extra_context or {}), "may_act": self._may_act(request)},
        )

    def reconcile_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not self._may_act(request):
            raise PermissionDenied
        try:
            adoption_service.reconcile_enqueue()
        except adoption_service.BrokerUnavailable:
            messages.error(
                request, "The task queue is not reachable; the hourly check runs when it is back."
            )
        else:
            messages.success(request, "Checking Trackstar now; this list updates in a minute.")
        return redirect("admin:connections_unassignedconnection_changelist")

    def _act(self, request, pk: int, form_class, title: str, submit: str, action):
        if not self._may_act(request):
            raise PermissionDenied
        unassigned = get_object_or_404(UnassignedConnection, pk=pk)
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = action(unassigned, form.cleaned_data)
            except ValidationError as e:
                form.add_error(None, e)
            else:
                messages.success(request, message)
                return redirect("admin:connections_unassignedconnection_changelist")
        return TemplateResponse(
            request,
            "admin/connections/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{title}: {unassigned}",
                "form": form,
                "submit_label": submit,
                "intro": "Trackstar has this connection; Dockside has no customer for it."
                + (
                    ""
                    if unassigned.access_token
                    else " Its access token never reached Dockside "
                    "(the connection.created webhook was missed): paste it from Trackstar's "
                    "dashboard."
                ),
            },
        )

    @method_decorator(sensitive_post_parameters("access_token"))
    def assign_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def assign(unassigned, data):
            connection = adoption_service.unassigned_assign(
                unassigned=unassigned,
                customer=data["customer"],
                access_token=data["access_token"],
                actor=request.user,
            )
            return (
                f"{connection_label(connection)} now belongs to {data['customer'].name} "
                "and is syncing."
            )

        return self._act(
            request, pk, UnassignedAssignForm, "Assign to a customer", "Assign", assign
        )

    @method_decorator(sensitive_post_parameters("access_token"))
    def delete_view_at_trackstar(self, request: HttpRequest, pk: int) -> HttpResponse:
        def delete(unassigned, data):
            adoption_service.unassigned_delete(
                unassigned=unassigned, access_token=data["access_token"], actor=request.user
            )
            return f"Deleted {unassigned} at Trackstar."

        return self._act(request, pk, UnassignedDeleteForm, "Delete at Trackstar", "Delete", delete)
