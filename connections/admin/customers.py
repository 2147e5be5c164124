"""The customer's page, with what staff do for a customer: connect a WMS through Link,
import an access token, invite a portal user."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.debug import sensitive_post_parameters

from connections import services
from connections.forms import PortalUserInviteForm, TokenImportForm
from connections.integrations import connection_label
from connections.link.endpoints import LinkEndpoints, link_config
from connections.link.services import LinkActor
from connections.models import Connection
from customers.admin import CustomerAdmin
from customers.models import Customer
from customers.services import portal_user_invite


class ConnectionInline(admin.TabularInline):
    model = Connection
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "name",
        "status",
        "source",
        "trackstar_connection_id",
        "connected_at",
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Name")
    def name(self, obj: Connection) -> str:
        return connection_label(obj)


def _staff_actor(request: HttpRequest, customer_pk: int, allow_spent: bool = False) -> LinkActor:
    if not request.user.has_perm("connections.add_connection"):
        raise PermissionDenied
    customer = get_object_or_404(Customer, pk=customer_pk, is_active=True)
    return LinkActor(customer=customer, source=Connection.Source.STAFF, user=request.user)


staff_link = LinkEndpoints(
    resolve_actor=_staff_actor,
    status_url=lambda exchange, customer_pk: reverse(
        "admin:customers_customer_connect_exchange", args=[customer_pk, exchange.public_id]
    ),
)


class ConnectionsCustomerAdmin(CustomerAdmin):
    inlines = [*CustomerAdmin.inlines, ConnectionInline]
    list_display = [
        *list(CustomerAdmin.list_display)[:5],
        "active_connections",
        "attention_connections",
        "created_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        # Counted in the list query itself: one query whatever the number of customers.
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_active=Count(
                    "connections", filter=Q(connections__status=Connection.Status.ACTIVE)
                ),
                n_attention=Count(
                    "connections",
                    filter=Q(
                        connections__status__in=[
                            Connection.Status.NEEDS_RECONNECT,
                            Connection.Status.ERROR,
                        ]
                    ),
                ),
            )
            # Meta.ordering does not apply to a GROUP BY query: the autocomplete's pages
            # (which use this queryset as it is) would come in no stable order.
            .order_by("name", "pk")
        )

    @admin.display(description="Active", ordering="n_active")
    def active_connections(self, obj: Customer) -> int:
        return obj.n_active  # type: ignore[attr-defined]  # annotated in get_queryset

    @admin.display(description="Need attention", ordering="n_attention")
    def attention_connections(self, obj: Customer) -> int:
        return obj.n_attention  # type: ignore[attr-defined]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:customer_pk>/connect/",
                wrap(self.connect_view),
                name="customers_customer_connect",
            ),
            path(
                "<int:customer_pk>/connect/get-link-token",
                wrap(staff_link.get_link_token),
                name="customers_customer_connect_link_token",
            ),
            path(
                "<int:customer_pk>/connect/store-token",
                wrap(staff_link.store_token),
                name="customers_customer_connect_store_token",
            ),
            path(
                "<int:customer_pk>/connect/exchanges/<uuid:public_id>",
                wrap(staff_link.exchange_status),
                name="customers_customer_connect_exchange",
            ),
            path(
                "<int:customer_pk>/import-token/",
                wrap(sensitive_post_parameters("access_token")(self.import_token_view)),
                name="customers_customer_import_token",
            ),
            path(
                "<int:customer_pk>/invite/",
                wrap(self.invite_view),
                name="customers_customer_invite",
            ),
            *super().get_urls(),
        ]

    def _customer_or_deny(self, request: HttpRequest, customer_pk: int, perm: str) -> Customer:
        if not request.user.has_perm(perm):
            raise PermissionDenied
        return get_object_or_404(Customer, pk=customer_pk)

    def _page(self, request, customer, template, **context) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "customer": customer,
                "original": customer,
                **context,
            },
        )

    def connect_view(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        customer = self._customer_or_deny(request, customer_pk, "connections.add_connection")
        config = link_config(
            request,
            customer=customer,
            get_link_token_url=reverse(
                "admin:customers_customer_connect_link_token", args=[customer.pk]
            ),
            store_token_url=reverse(
                "admin:customers_customer_connect_store_token", args=[customer.pk]
            ),
        )
        return self._page(
            request,
            customer,
            "admin/connections/connect.html",
            title=f"Connect a WMS for {customer.name}",
            link_config=config,
            connections=customer.connections.all(),
        )

    def import_token_view(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        customer = self._customer_or_deny(request, customer_pk, "connections.add_connection")
        form = TokenImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                connection = services.connection_import(
                    customer=customer,
                    access_token=form.cleaned_data["access_token"],
                    actor=request.user,
                )
            except ValidationError as e:
                form.add_error("access_token", e)
            else:
                messages.success(request, f"Imported {connection}.")
                return redirect("admin:connections_connection_change", connection.pk)
        return self._page(
            request,
            customer,
            "admin/connections/form_page.html",
            form=form,
            title=f"Import an access token for {customer.name}",
            submit_label="Check with Trackstar and import",
        )

    def invite_view(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        # Inviting gives access to the customer's data: it is adding a membership. The
        # service also wants "add user" for a new account, refuses a staff account to
        # anyone but a superuser, and audits the invite or its refusal.
        customer = self._customer_or_deny(request, customer_pk, "customers.add_membership")
        form = PortalUserInviteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                user = portal_user_invite(
                    customer=customer,
                    email=form.cleaned_data["email"],
                    username=form.cleaned_data["username"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,
                )
            except ValidationError as e:
                form.add_error(None, e)
            else:
                messages.success(
                    request, f"Invited {user.email}: they got an email to set their password."
                )
                return redirect("admin:customers_customer_change", customer.pk)
        return self._page(
            request,
            customer,
            "admin/connections/form_page.html",
            form=form,
            title=f"Invite a portal user to {customer.name}",
            submit_label="Create the user and send the invitation",
        )


admin.site.unregister(Customer)
admin.site.register(Customer, ConnectionsCustomerAdmin)
