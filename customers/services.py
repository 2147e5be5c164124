from django.conf import settings
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from customers.models import Customer, Membership
from customers.permissions import PortalAction, membership_grant_check, role_can


def portal_user_invite(
    *,
    customer: Customer,
    email: str,
    invited_by: AbstractUser | AnonymousUser,
    username: str = "",
    role: str = Membership.Role.MEMBER,
):
    """Give someone access to a customer's portal and email them a link to set a password.
    An existing user (same email) just gets the membership and the email.

    Giving access is adding a membership, so it takes that permission; making a new account
    takes "add user" too. An existing staff account is attached only by a superuser
    (membership_grant_check)."""
    User = get_user_model()
    if not invited_by.has_perm(_perm("add", Membership)):
        raise PermissionDenied("You may not give people access to customers.")
    if role not in Membership.Role.values:
        raise ValidationError("Pick the role: owner or member.")
    email = User.objects.normalize_email(email).strip()
    if not email:
        raise ValidationError("An email address is needed to send the invitation.")
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is not None:
            membership_grant_check(granted_by=invited_by, user=user)
        elif not invited_by.has_perm(_perm("add", User)):
            raise ValidationError(
                "No account has that email, and you may not create accounts. Ask someone "
                "who may add users."
            )
        else:
            username = username.strip() or email
            if User.objects.filter(username__iexact=username).exists():
                raise ValidationError(f"The username '{username}' is taken.")
            user = User.objects.create_user(username=username, email=email)
            user.set_unusable_password()
            user.save(update_fields=["password"])
        _, created = Membership.objects.get_or_create(
            user=user, customer=customer, defaults={"role": role}
        )
        if not created:
            raise ValidationError(f"{email} already has access to {customer.name}.")
        transaction.on_commit(
            lambda: _send_invitation(user=user, customer=customer, role=role), robust=True
        )
    return user


def _perm(action: str, model) -> str:
    opts = model._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def invitation_url(user) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("portal:password_set", args=[uid, token])
    return settings.DOCKSIDE_BASE_URL.rstrip("/") + path


def _send_invitation(*, user, customer: Customer, role: str) -> None:
    context = {
        "user": user,
        "customer": customer,
        # The email promises what the role allows: a member reads, unless members connect.
        "can_connect": role_can(role=role, customer=customer, action=PortalAction.CONNECT),
        "url": invitation_url(user),
        "product": settings.DOCKSIDE_PRODUCT_NAME,
    }
    send_mail(
        subject=f"You're invited to {customer.name} on {settings.DOCKSIDE_PRODUCT_NAME}",
        message=render_to_string("portal/invitation_email.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )
