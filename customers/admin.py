from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from customers.models import Customer, Membership
from customers.permissions import membership_grant_check
from customers.services import membership_add, membership_remove, membership_update


class MembershipForm(forms.ModelForm):
    """Refuses, as invitations do, a staff account to anyone but a superuser."""

    granted_by = None  # the admin's request user, set by membership_form()

    def clean(self):
        data = super().clean()
        user = data.get("user")
        # Moving a staff account's access to another customer gives it that customer too.
        granting = {"user", "customer"} & set(self.changed_data)
        if user is not None and (self.instance._state.adding or granting):
            try:
                membership_grant_check(granted_by=self.granted_by, user=user)
            except forms.ValidationError as e:
                self.add_error("user", e)
        return data


def membership_form(request: HttpRequest) -> type[MembershipForm]:
    return type("MembershipForm", (MembershipForm,), {"granted_by": request.user})


# Memberships are written by customers.services, which check the rules the forms show and
# audit, whichever page saves them: the customer's inline or the membership admin.


def membership_save(request: HttpRequest, membership: Membership, *, change: bool) -> None:
    if change:
        membership_update(
            membership=membership,
            changed_by=request.user,
            user=membership.user,
            customer=membership.customer,
            role=membership.role,
        )
        return
    added = membership_add(
        customer=membership.customer,
        user=membership.user,
        role=membership.role,
        added_by=request.user,
    )
    # The admin goes on with the form's instance (its messages, log and redirect).
    membership.pk, membership.created_at = added.pk, added.created_at
    membership._state.adding = False


@transaction.atomic
def memberships_remove(request: HttpRequest, memberships: QuerySet[Membership]) -> None:
    for membership in memberships.select_related("user", "customer"):
        membership_remove(membership=membership, removed_by=request.user)


class MembershipInline(admin.TabularInline):
    # Django asks the inline's own model for permission: without customers.add_membership
    # the rows a change-customer user posts are ignored (tests/customers/test_admin.py).
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]

    def get_formset(self, request, obj=None, **kwargs):
        kwargs["form"] = membership_form(request)
        return super().get_formset(request, obj, **kwargs)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "public_id", "contact_email", "is_active", "created_at"]
    list_filter = ["is_active", "members_can_connect", "created_at"]
    search_fields = ["name", "slug", "public_id", "contact_email"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["public_id", "created_at"]
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # fills new_objects, changed_objects, deleted_objects
        for membership in formset.deleted_objects:
            membership_remove(membership=membership, removed_by=request.user)
        for membership, _ in formset.changed_objects:
            membership_save(request, membership, change=True)
        for membership in formset.new_objects:
            membership_save(request, membership, change=False)
        formset.save_m2m()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "customer", "role", "created_at"]
    # Staff accounts that are also a customer's members read that customer's data: only a
    # superuser makes one now, but the filter finds any made before that rule.
    list_filter = ["role", ("user__is_staff", admin.BooleanFieldListFilter)]
    search_fields = ["user__username", "user__email", "customer__name"]
    autocomplete_fields = ["user", "customer"]
    list_select_related = ["user", "customer"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = membership_form(request)
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        membership_save(request, obj, change=change)

    def delete_model(self, request, obj):
        membership_remove(membership=obj, removed_by=request.user)

    def delete_queryset(self, request, queryset):
        memberships_remove(request, queryset)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        # ?customer=<id> preselects; the autocomplete widget looks the value up as an id,
        # so anything else (?customer=abc) would be a 500. It is dropped instead.
        initial = super().get_changeform_initial_data(request)
        return {
            name: value
            for name, value in initial.items()
            if name not in self.autocomplete_fields
            or (isinstance(value, str) and value.isascii() and value.isdigit())
        }
