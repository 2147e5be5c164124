"""Which customer a portal request acts for: the logged-in user's membership, and the one
they picked when they belong to several. Never taken from the request body."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from customers.models import Customer
from customers.selectors import customer_list_for_user

SESSION_KEY = "dockside_customer_id"


class CustomerRequest(HttpRequest):
    """A portal request after customer_required: it knows its customer."""

    customer: Customer


def request_customer(request: HttpRequest) -> Customer | None:
    customers = customer_list_for_user(user=request.user)
    chosen = request.session.get(SESSION_KEY)
    if chosen is not None:
        customer = customers.filter(pk=chosen).first()
        if customer is not None:
            return customer
    # Without a (valid) choice, a user with exactly one customer acts for it.
    only = list(customers[:2])
    return only[0] if len(only) == 1 else None


def customer_choose(request: HttpRequest, *, customer: Customer) -> None:
    request.session[SESSION_KEY] = customer.pk


def customer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For portal pages: log in, then pick a customer if the user has several."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        customer = request_customer(request)
        if customer is None:
            return redirect("portal:choose_customer")
        request.customer = customer  # type: ignore[attr-defined]  # see CustomerRequest
        return view(request, *args, **kwargs)

    return wrapper
