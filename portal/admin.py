"""Failed logins (django-axes' records), with an audited Unlock and a slowdown lift."""

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from config.admin import CalendarSafeChangeList
from portal.logins.services import login_slowdown_lift, login_unlock
from portal.logins.slowdown import login_username


class LoginSlowdownForm(forms.Form):
    username = forms.CharField(max_length=254)

    def clean_username(self) -> str:
        # As the login form reads it (stripped, NFKC, case kept), so the count cleared is
        # the one logins add to; only a real account's, as only those can log in.
        username = login_username(self.cleaned_data["username"])
        user_model = get_user_model()
        if (
            username is None
            or not user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: username}
            ).exists()
        ):
            raise ValidationError("No user has this username.")
        return username


class LoginAttemptAdmin(AccessAttemptAdmin):
    """django-axes' failed-login records, with an audited Unlock, and a form to lift a
    username's slowdown, for staff who may delete them."""

    actions = [*AccessAttemptAdmin.actions, "unlock"]
    change_list_template = "admin/axes/accessattempt/change_list.html"

    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList

    @admin.action(description="Unlock these usernames from these addresses", permissions=["delete"])
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        # Per (username, address): a row of the attacker's, left unselected, keeps its
        # lockout when staff unlock the real user's address.
        pairs = sorted(
            {(a.username, a.ip_address) for a in queryset if a.username},
            key=lambda pair: (pair[0], pair[1] or ""),
        )
        for username, ip_address in pairs:
            login_unlock(username=username, ip_address=ip_address, actor=request.user)
        unlocked = ", ".join(f"{u} from {ip or 'an unknown address'}" for u, ip in pairs)
        self.message_user(request, f"Unlocked {unlocked or 'nobody'}.")

    def get_urls(self):
        return [
            path(
                "clear-slowdown/",
                self.admin_site.admin_view(self.clear_slowdown_view),
                name="axes_accessattempt_clear_slowdown",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        may = self.has_delete_permission(request)
        return super().changelist_view(
            request, {**(extra_context or {}), "may_clear_slowdown": may}
        )

    def clear_slowdown_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_delete_permission(request):
            raise PermissionDenied
        form = LoginSlowdownForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            username = form.cleaned_data["username"]
            failures = login_slowdown_lift(username=username, actor=request.user)
            self.message_user(
                request,
                f"Cleared the login slowdown for {username} ({failures} failed logins "
                "were counted). Lockouts from single addresses stay: Unlock those rows.",
            )
            return redirect("admin:axes_accessattempt_changelist")
        return TemplateResponse(
            request,
            "admin/connections/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Clear login slowdown for a username",
                "form": form,
                "submit_label": "Clear slowdown",
                "intro": "Failed logins for a username from any address slow down new "
                "browsers trying it, whether or not records remain below. This forgets "
                "them, for that username only.",
            },
        )


class CalendarSafeAccessLogAdmin(AccessLogAdmin):
    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList


class CalendarSafeAccessFailureLogAdmin(AccessFailureLogAdmin):
    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList


# axes registers its own (AXES_ENABLE_ADMIN); their date hierarchy overflowed (a 500).
for _axes_model, _axes_admin in (
    (AccessAttempt, LoginAttemptAdmin),
    (AccessLog, CalendarSafeAccessLogAdmin),
    (AccessFailureLog, CalendarSafeAccessFailureLogAdmin),
):
    if admin.site.is_registered(_axes_model):
        admin.site.unregister(_axes_model)
    admin.site.register(_axes_model, _axes_admin)
