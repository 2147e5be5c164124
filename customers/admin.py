from django import forms
from django.contrib import admin
from django.http import HttpRequest

from customers.models import Customer, Membership
from customers.permissions import membership_grant_check


class MembershipForm(forms.ModelForm):
    """Refuses, as invitations do, a staff account to anyone but a superuser."""

    granted_by = None  # the admin's request user, set by membership_form()

    def clean(self):
        data = super().clean()
        user = data.get("user")
        if user is not None and (self.instance._state.adding or "user" in self.changed_data):
            try:
                membership_grant_check(granted_by=self.granted_by, user=user)
            except forms.ValidationError as e:
                self.add_error("user", e)
        return data


def membership_form(request: HttpRequest) -> type[MembershipForm]:
    return type("MembershipForm", (MembershipForm,), {"granted_by": request.user})


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
