"""The portal's login, and "Forgot your password?": Django's auth views, with the tries left
before a lockout, and a reset that tells no one whether an address has an account."""

from __future__ import annotations

import math
from typing import Any

from axes.helpers import get_credentials, get_failure_limit
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.tokens import default_token_generator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.utils.http import base36_to_int
from django.views.generic.edit import FormView

from portal.logins.slowdown import password_reset_address_wait, password_reset_email_allowed

# Below this many tries left, the login form says how many (axes' AXES_FAILURE_LIMIT).
TRIES_LEFT_WARNING = 3


class PortalLoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["tries_left"] = self._tries_left()
        context["cool_off_minutes"] = max(
            1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
        )
        return context

    def _tries_left(self) -> int | None:
        """After a wrong password: how many more this username may have from this address
        before axes pauses it, when that is few (else None)."""
        failures = getattr(self.request, "axes_failures_since_start", None)
        if not getattr(settings, "AXES_ENABLED", True) or not failures:
            return None  # no password was checked and found wrong
        username = self.request.POST.get("username", "")
        left = get_failure_limit(self.request, get_credentials(username)) - failures
        return left if 0 < left <= TRIES_LEFT_WARNING else None


class PortalPasswordResetForm(PasswordResetForm):
    def get_users(self, email: str):
        """Active portal users with that email, whether or not they have set a password yet
        (an invitation that ran out is followed by a reset). Never staff: their passwords
        are not reset from an email link on the customer portal."""
        email_field = get_user_model().get_email_field_name()
        users = get_user_model()._default_manager.filter(
            **{f"{email_field}__iexact": email},
            is_active=True,
            is_staff=False,
            is_superuser=False,
        )
        return (u for u in users if getattr(u, email_field).casefold() == email.casefold())


class PortalPasswordResetView(auth_views.PasswordResetView):
    form_class = PortalPasswordResetForm
    template_name = "portal/password_reset.html"
    email_template_name = "portal/password_reset_email.txt"
    subject_template_name = "portal/password_reset_subject.txt"
    success_url = reverse_lazy("portal:password_reset_sent")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = password_reset_address_wait(request)
        if wait:
            minutes = max(1, math.ceil(wait / 60))
            response = render(
                request, "portal/password_reset_slowed.html", {"minutes": minutes}, status=429
            )
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        # Past the email address's budget nothing is sent, and the page is the same: the
        # answer never says whether an account has the address.
        if password_reset_email_allowed(form.cleaned_data["email"]):
            form.save(
                token_generator=self.token_generator,
                email_template_name=self.email_template_name,
                subject_template_name=self.subject_template_name,
                request=self.request,
                extra_email_context={
                    # Links point at our public address, never at the request's Host.
                    "base_url": settings.DOCKSIDE_BASE_URL.rstrip("/"),
                    "product": settings.DOCKSIDE_PRODUCT_NAME,
                    "valid_days": str(_valid_days()),
                    "contact": settings.DOCKSIDE_SUPPORT_EMAIL,
                },
            )
        return FormView.form_valid(self, form)  # PasswordResetView's would send it always


class PortalPasswordResetSentView(auth_views.PasswordResetDoneView):
    template_name = "portal/password_reset_sent.html"
    extra_context = {"contact": settings.DOCKSIDE_SUPPORT_EMAIL}


class PortalSetPasswordView(auth_views.PasswordResetConfirmView):
    """An invitation's or a reset's link: choose a password, and land in the portal logged
    in. A link that no longer works says why: already used or ended by a login since (the
    two look the same), or out of date."""

    template_name = "portal/password_set.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("portal:index")
    kind = "invitation"  # or "reset": the words on the page

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["kind"] = self.kind
        context["login_url"] = reverse("portal:login")
        context["password_reset_url"] = reverse("portal:password_reset")
        context["valid_days"] = _valid_days()
        context["contact"] = settings.DOCKSIDE_SUPPORT_EMAIL
        if not self.validlink:
            token = self.kwargs.get("token", "")
            if token == self.reset_url_token:  # the link's token was kept in the session
                token = self.request.session.get(auth_views.INTERNAL_RESET_SESSION_TOKEN) or ""
            context["link_state"] = link_state(self.user, token)
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        if not self.validlink:
            kwargs["status"] = 404 if context.get("link_state") == "invalid" else 410
        return super().render_to_response(context, **kwargs)


def _valid_days() -> int:
    return max(1, math.ceil(settings.PASSWORD_RESET_TIMEOUT / 86400))


def link_state(user: Any, token: str) -> str:
    """Why a password link that failed Django's check fails: "expired" (older than
    PASSWORD_RESET_TIMEOUT), "used" (recent, but the user has logged in since it was made:
    setting the password logs in, and any login or password change ends a link), or
    "invalid" (no such user, a mangled token)."""
    if user is None:
        return "invalid"
    try:
        made_b36, _ = token.split("-")
        made = base36_to_int(made_b36)
    except ValueError:
        return "invalid"
    # The generator's own clock and epoch (naive datetimes, as its tokens hold).
    generator = default_token_generator
    now = generator._num_seconds(generator._now())  # type: ignore[attr-defined]
    if now - made > settings.PASSWORD_RESET_TIMEOUT:
        return "expired"
    last_login = user.last_login
    if last_login is not None:
        logged_in = generator._num_seconds(  # type: ignore[attr-defined]
            last_login.replace(microsecond=0, tzinfo=None)
        )
        if logged_in >= made:
            return "used"
    return "invalid"
