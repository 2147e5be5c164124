"""Filters of the portal's data pages: counts, money, order status colours."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.utils.formats import number_format

from portal.templatetags.portal import status_label

register = template.Library()

# What an order's status means to its customer, as a colour (static/portal/data.css).
ORDER_TONES = {
    "fulfilled": "ok",
    "shipped": "ok",  # a shipment's status
    "partially_fulfilled": "progress",
    "open": "progress",
    "confirmed": "progress",
    "processing": "progress",
    "picked": "progress",
    "packed": "progress",
    "backordered": "warn",
    "exception": "bad",
    "cancelled": "muted",
}

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥"}
# ISO 4217 currencies without minor units, among those the WMSs report.
ZERO_DECIMAL = {"JPY", "KRW", "CLP", "VND", "ISK"}


@register.filter
def order_tone(status: str) -> str:
    return ORDER_TONES.get(status or "", "neutral")


@register.filter
def order_status_words(status: str, raw_status: str = "") -> str:
    """An order's status as words: "partially_fulfilled" -> "Partially fulfilled". Trackstar's
    `other` means "see raw_status" (API.md, Orders), so the WMS's own word follows it,
    "Other: ON HOLD", unless that word only says "other" again."""
    words = status_label(status) or "Unknown"
    raw_words = (raw_status or "").strip()
    if status == "other" and raw_words and _plain(raw_words) != _plain(status):
        return f"{words}: {raw_words}"
    return words


def _plain(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())


@register.filter
def count(value) -> str:
    """12345 -> "12,345"; None -> "—"."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "—" if value is None or value == "" else str(value)
    return number_format(value, force_grouping=True)


@register.filter
def money(amount: Decimal | None, currency: str = "") -> str:
    """Decimal("1234.5"), "USD" -> "$1,234.50"; another code -> "1,234.50 SEK"."""
    if amount is None:
        return "—"
    places = 0 if currency in ZERO_DECIMAL else 2
    try:
        rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than a Decimal context holds: not a real price
        return "—"
    text = number_format(abs(rounded), decimal_pos=places, force_grouping=True)
    sign = "−" if rounded < 0 else ""
    if currency in CURRENCY_SYMBOLS:
        return f"{sign}{CURRENCY_SYMBOLS[currency]}{text}"
    return f"{sign}{text} {currency}".strip()
