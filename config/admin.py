"""Admin pieces every app's admin may use, in a module that registers nothing: importing it
imports no app's admin. (config is not an app, so admin autodiscovery never imports it.)"""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CalendarSafeChangeList(ChangeList):
    """Django's date hierarchy adds a year, a month or a day to the one chosen: past 9999,
    or for a year too big for an int, that raised (a 500). It is an invalid filter here, as
    Django treats any other: the list redirects to ?e=1."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as e:
            raise IncorrectLookupParameters(e) from e
