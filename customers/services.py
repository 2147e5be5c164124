from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .models import Customer, Membership


def portal_user_invite(
    *, customer: Customer, email: str, username: str = "", role: str = Membership.Role.MEMBER
):
    """Give someone access to a customer's portal and email them a link to set a password.
    An existing user (same email) just gets the membership and the email."""
    User = get_user_model()
    email = User.objects.normalize_email(email).strip()
    if not email:
        raise ValidationError("An email address is needed to send the invitation.")
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
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
        transaction.on_commit(lambda: _send_invitation(user=user, customer=customer), robust=True)
    return user


def invitation_url(user) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("portal:password_set", args=[uid, token])
    return settings.DOCKSIDE_BASE_URL.rstrip("/") + path


def _send_invitation(*, user, customer: Customer) -> None:
    context = {
        "user": user,
        "customer": customer,
        "url": invitation_url(user),
        "product": settings.DOCKSIDE_PRODUCT_NAME,
    }
    send_mail(
        subject=f"You're invited to {customer.name} on {settings.DOCKSIDE_PRODUCT_NAME}",
        message=render_to_string("portal/invitation_email.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )
