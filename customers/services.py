from django.conf import settings
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.models import AbstractBaseUser, AbstractUser, AnonymousUser
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from audit.services import audit_record
from customers.models import Customer, Membership
from customers.permissions import PortalAction, membership_grant_check, role_can

# Who gives or takes access: a staff user in the admin (has_perm is asked).
Granter = AbstractUser | AnonymousUser


def portal_user_invite(
    *,
    customer: Customer,
    email: str,
    invited_by: Granter,
    username: str = "",
    role: str = Membership.Role.MEMBER,
) -> AbstractUser:
    """Give someone access to a customer's portal and email them a link to set a password.
    An existing user (same email) just gets the membership and the email.

    Giving access is adding a membership, so it takes that permission; making a new account
    takes "add user" too. An existing staff account is attached only by a superuser
    (membership_grant_check).

    Audited with the membership, in its transaction. A refusal is audited too, though the
    invite raises: a refused invite may be someone trying to reach a customer. Its entry is
    written after the invite's own transaction has rolled back, so it stays (unless the
    caller rolls back its own transaction for the error)."""
    try:
        return _portal_user_invite(
            customer=customer, email=email, invited_by=invited_by, username=username, role=role
        )
    except ValidationError as e:
        audit_record(
            actor=invited_by,
            action="customer.user_invite_refused",
            customer=customer,
            email=email,
            role=role,
            reason=" ".join(e.messages),
        )
        raise


def _portal_user_invite(
    *, customer: Customer, email: str, invited_by: Granter, username: str, role: str
) -> AbstractUser:
    User = get_user_model()
    _perm_check(invited_by, "add", "You may not give people access to customers.")
    _role_check(role)
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
        audit_record(
            actor=invited_by,
            action="customer.user_invited",
            customer=customer,
            user_id=user.pk,
            email=user.email,
            role=role,
        )
        # After the commit, and robust: a mail that fails does not undo the invite.
        transaction.on_commit(
            lambda: _send_invitation(user=user, customer=customer, role=role), robust=True
        )
    return user


# --- Memberships, as the admin edits them ----------------------------------------------------


@transaction.atomic
def membership_add(
    *, customer: Customer, user: AbstractBaseUser, role: str, added_by: Granter
) -> Membership:
    _perm_check(added_by, "add", "You may not give people access to customers.")
    _role_check(role)
    membership_grant_check(granted_by=added_by, user=user)
    _unique_check(user=user, customer=customer)
    membership = Membership.objects.create(user_id=user.pk, customer=customer, role=role)
    _audit_membership(membership, user=user, actor=added_by, action="customer.membership_added")
    return membership


@transaction.atomic
def membership_update(
    *,
    membership: Membership,
    changed_by: Granter,
    user: AbstractBaseUser | None = None,
    customer: Customer | None = None,
    role: str | None = None,
) -> Membership:
    """Change a membership's role, or move it to another account or customer (None keeps
    what it has). A move takes the access from one account and customer and gives it to
    another: it is audited so, as a removal and an addition, in each customer's log."""
    _perm_check(changed_by, "change", "You may not change people's access to customers.")
    before = (
        Membership.objects.select_for_update()
        .select_related("user", "customer")
        .get(pk=membership.pk)
    )
    user = user if user is not None else before.user
    customer = customer if customer is not None else before.customer
    role = role if role is not None else before.role
    _role_check(role)
    # Another account, or the same account at another customer, is a grant; a role is not.
    moved = user.pk != before.user_id or customer.pk != before.customer_id
    if moved:
        membership_grant_check(granted_by=changed_by, user=user)
    if moved:
        _unique_check(user=user, customer=customer)
    membership.user_id, membership.customer, membership.role = user.pk, customer, role
    membership.save()
    if moved:
        _audit_membership(
            before, user=before.user, actor=changed_by, action="customer.membership_removed"
        )
        _audit_membership(
            membership, user=user, actor=changed_by, action="customer.membership_added"
        )
    elif role != before.role:
        _audit_membership(
            membership,
            user=user,
            actor=changed_by,
            action="customer.membership_role_changed",
            old_role=before.role,
        )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, removed_by: Granter) -> None:
    _perm_check(removed_by, "delete", "You may not take people's access to customers.")
    _audit_membership(
        membership, user=membership.user, actor=removed_by, action="customer.membership_removed"
    )
    membership.delete()


def _unique_check(*, user: AbstractBaseUser, customer: Customer) -> None:
    if Membership.objects.filter(user_id=user.pk, customer=customer).exists():
        raise ValidationError(f"{user.get_username()} already has access to {customer.name}.")


def _audit_membership(
    membership: Membership, *, user: AbstractBaseUser, actor: Granter, action: str, **detail
) -> None:
    audit_record(
        actor=actor,
        action=action,
        customer=membership.customer,
        # The account as it was named: the entry outlives a renamed or deleted account.
        user_id=user.pk,
        username=user.get_username(),
        email=getattr(user, user.get_email_field_name(), ""),
        role=membership.role,
        **detail,
    )


def _role_check(role: str) -> None:
    if role not in Membership.Role.values:
        raise ValidationError("Pick the role: owner or member.")


def _perm_check(user: Granter, action: str, refusal: str) -> None:
    if not user.has_perm(_perm(action, Membership)):
        raise PermissionDenied(refusal)


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
        message=render_to_string("customers/invitation_email.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )
