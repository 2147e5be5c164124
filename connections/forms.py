from datetime import UTC, datetime, time, timedelta

from django import forms
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from connections.integrations import connection_label, integration_catalog
from connections.link.magic_links import DEFAULT_EXPIRY_DAYS, MAX_EXPIRY_DAYS
from connections.models import Connection
from connections.models.sync import resource_label
from connections.services import LABEL_MAX_LENGTH
from connections.sync.backfills import backfill_resources
from customers.models import Customer, Membership


def _integration_choices() -> list[tuple[str, str]]:
    catalog = integration_catalog()
    return sorted(
        ((slug, info.get("display_name") or slug) for slug, info in catalog.items()),
        key=lambda choice: choice[1].lower(),
    )


def reconnect_label(connection: Connection) -> str:
    """ "ShipBob 2", or "ShipBob 2 (needs reconnect)" when it is not active."""
    words = connection_label(connection)
    if connection.status != Connection.Status.ACTIVE:
        words += f" ({connection.get_status_display().lower()})"
    return words


class ReconnectChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return reconnect_label(obj)


def reconnect_choices(customer_id) -> "QuerySet[Connection]":
    """The connections a magic link for this customer may reconnect: its own, live ones."""
    return (
        Connection.objects.filter(customer_id=customer_id)
        .exclude(status=Connection.Status.DISCONNECTED)
        .order_by("created_at", "pk")
    )


def pk_or_none(value) -> int | None:
    # isascii too: "²".isdigit() is true, and an id lookup of it fails (a 500).
    text = str(value or "")
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    return None


class MagicLinkIssueForm(forms.Form):
    customer = forms.ModelChoiceField(queryset=Customer.objects.filter(is_active=True))
    expires_in_days = forms.IntegerField(
        label="Valid for (days)",
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        initial=DEFAULT_EXPIRY_DAYS,
    )
    max_uses = forms.IntegerField(label="Maximum uses", min_value=1, max_value=100, initial=1)
    allowed_integrations = forms.MultipleChoiceField(
        label="WMSes offered",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to offer every WMS.",
    )
    reinstall_connection = ReconnectChoiceField(
        label="Reconnect an existing connection",
        queryset=Connection.objects.none(),
        required=False,
        empty_label="No: connect a new WMS",
        help_text="Pick one of the customer's connections to have the link reconnect it "
        "(it keeps its id and history) instead of adding a new one.",
    )
    send_email = forms.BooleanField(
        required=False,
        label="Email the link to the customer's contact",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_integrations"].choices = _integration_choices()
        customer_pk = pk_or_none(self.data.get("customer") or self.initial.get("customer"))
        if customer_pk is None and not self.is_bound:
            # Opened from a connection ("?reinstall_connection=…"): its customer.
            reinstall_pk = pk_or_none(self.initial.get("reinstall_connection"))
            if reinstall_pk is not None:
                connection = Connection.objects.filter(pk=reinstall_pk).first()
                if connection is not None:
                    customer_pk = connection.customer_id
                    self.initial["customer"] = customer_pk
        # Only the chosen customer's connections: another customer's is "not one of the
        # choices", whatever the browser sends (and the service refuses it too).
        if customer_pk is not None:
            self.fields["reinstall_connection"].queryset = reconnect_choices(customer_pk)
        self.fields["customer"].widget.attrs["data-reconnect-choices-url"] = reverse(
            "admin:connections_magiclink_reconnect_choices"
        )

    def clean(self):
        data = super().clean()
        customer = data.get("customer")
        if data.get("send_email") and customer is not None and not customer.contact_email:
            self.add_error("send_email", "This customer has no contact email.")
        return data


class TokenImportForm(forms.Form):
    access_token = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        strip=True,
        max_length=2048,
        help_text="From the connection's page in Trackstar's dashboard. Stored encrypted.",
    )


class PortalUserInviteForm(forms.Form):
    email = forms.EmailField()
    username = forms.CharField(
        required=False, max_length=150, help_text="Defaults to the email address."
    )
    role = forms.ChoiceField(
        choices=Membership.Role.choices,
        initial=Membership.Role.MEMBER,
        required=False,
        help_text="Owners connect, reconnect and disconnect WMSes; members see the data "
        "(and connect, if the customer allows members to).",
    )

    def clean_role(self) -> str:
        return self.cleaned_data["role"] or Membership.Role.MEMBER


class BackfillForm(forms.Form):
    resource = forms.ChoiceField()
    start_time = forms.DateField(
        label="From (UTC day)", widget=forms.DateInput(attrs={"type": "date"})
    )
    end_time = forms.DateField(
        label="To (UTC day, included)", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["resource"].choices = [(r, resource_label(r)) for r in backfill_resources()]

    def clean(self):
        data = super().clean()
        start, end = data.get("start_time"), data.get("end_time")
        if start and end:
            today = timezone.now().date()
            if start > end:
                raise forms.ValidationError("The start day must not be after the end day.")
            if start >= today:
                raise forms.ValidationError("A backfill covers days in the past.")
            data["start_time"] = datetime.combine(start, time.min, tzinfo=UTC)
            # Up to the end of that day, or now for today and later (never a date past the
            # calendar's end: 9999-12-31 + 1 day does not exist).
            data["end_time"] = (
                datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
                if end < today
                else timezone.now()
            )
        return data


class ConnectionRenameForm(forms.Form):
    # Django's CharField already refuses NUL (PostgreSQL cannot store it); other control
    # characters are refused here. Length and blank names are the service's rule.
    label = forms.CharField(
        label="Name",
        max_length=LABEL_MAX_LENGTH,
        required=False,
        error_messages={"max_length": f"Keep the name under {LABEL_MAX_LENGTH} characters."},
    )

    def clean_label(self) -> str:
        label = self.cleaned_data["label"]
        if any(ord(ch) < 32 and ch not in "\t\n\r" or ord(ch) == 127 for ch in label):
            raise forms.ValidationError("Use letters, digits, spaces and punctuation only.")
        return label


class UnassignedAssignForm(forms.Form):
    customer = forms.ModelChoiceField(queryset=Customer.objects.filter(is_active=True))
    access_token = forms.CharField(
        required=False,
        strip=True,
        max_length=2048,
        widget=forms.PasswordInput(render_value=False),
        help_text="Only if Dockside has none yet (the connection.created webhook was missed): "
        "from the connection's page in Trackstar's dashboard. Stored encrypted.",
    )


class UnassignedDeleteForm(forms.Form):
    access_token = forms.CharField(
        required=False,
        strip=True,
        max_length=2048,
        widget=forms.PasswordInput(render_value=False),
        help_text="Only if Dockside has none yet. Deleting at Trackstar cannot be undone.",
    )
    confirm = forms.BooleanField(label="Yes, delete this connection at Trackstar")
