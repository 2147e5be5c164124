"""The filters of the portal's data pages (inventory, orders), read from the query string.

A value that cannot be used is not applied and the page says why, next to the filter:
the rest of the filters still apply, and the list is never silently empty.
"""

from __future__ import annotations

from datetime import date

from django import forms
from django.utils.formats import date_format

from connections.models import Connection
from connections.selectors.records import ORDER_STATUSES

SEARCH_MAX_LENGTH = 100
# An earlier date is a typing slip, not a search (and year 1 is past what some time zones
# can turn into UTC).
FIRST_DAY = date(1900, 1, 1)


def _shown(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


class _RecordFilterForm(forms.Form):
    """q (contains-search) and connection (one of the customer's, by id)."""

    q = forms.CharField(required=False, strip=True)
    connection = forms.CharField(required=False, strip=True)
    # The query-string names the page reads.
    params: tuple[str, ...] = ("q", "connection")

    def __init__(self, data, *, connections: list[Connection]) -> None:
        super().__init__(data)
        self.connections = {str(connection.pk): connection for connection in connections}

    def clean_q(self) -> str:
        # Longer than anything worth searching for (and than the input lets one type).
        return self.cleaned_data["q"][:SEARCH_MAX_LENGTH]

    def clean_connection(self) -> Connection | None:
        value = self.cleaned_data["connection"]
        if not value:
            return None
        # Another customer's connection reads exactly as one that does not exist.
        if value not in self.connections:
            raise forms.ValidationError(
                "We could not find that connection, so the list shows all your connections."
            )
        return self.connections[value]

    def value_of(self, name: str):
        """The usable value of a filter (None or "" when absent or refused)."""
        if not hasattr(self, "cleaned_data"):
            self.is_valid()
        return self.cleaned_data.get(name)

    @property
    def active(self) -> bool:
        """Anything in the filters, usable or not: the page offers to clear them."""
        return any(str(self.data.get(name, "")).strip() for name in self.params)

    @property
    def problems(self) -> list[str]:
        return [str(message) for errors in self.errors.values() for message in errors]


class InventoryFilterForm(_RecordFilterForm):
    params = ("q", "sku", "connection")

    def __init__(self, data, *, connections: list[Connection]) -> None:
        if "sku" in data and "q" not in data:  # links from before the search took names
            data = data.copy()
            data["q"] = data["sku"]
        super().__init__(data, connections=connections)


class _DayField(forms.DateField):
    def __init__(self, label: str) -> None:
        super().__init__(
            required=False,
            input_formats=["%Y-%m-%d"],
            error_messages={"invalid": f"“{label}” needs a date like 2026-11-30."},
        )
        self.label = label

    def to_python(self, value):
        day = super().to_python(value)
        if day is not None and day < FIRST_DAY:
            raise forms.ValidationError(f"“{self.label}” needs a date after 1900.")
        return day


class OrderFilterForm(_RecordFilterForm):
    status = forms.CharField(required=False, strip=True)
    # The query string keeps the page's short names: ?from=…&to=…
    created_from = _DayField("From")
    created_to = _DayField("To")
    params = ("q", "connection", "status", "from", "to")

    def __init__(self, data, *, connections: list[Connection]) -> None:
        data = data.copy()
        for short, name in (("from", "created_from"), ("to", "created_to")):
            if short in data:
                data[name] = data[short]
        super().__init__(data, connections=connections)

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        if status and status not in ORDER_STATUSES:
            raise forms.ValidationError(
                f"“{_shown(status)}” is not an order status, so the list shows every status."
            )
        return status

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            # Neither bound is applied: either one alone would look like a wrong answer.
            del data["created_from"], data["created_to"]
            raise forms.ValidationError(
                f"“From” ({date_format(start)}) is after “To” ({date_format(end)}), so no "
                "date range is applied. Swap them to see the orders in between."
            )
        return data
