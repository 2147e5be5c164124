from django.db import IntegrityError

from customers.models import Membership
from tests.builders import make_customer


def test_customers_get_distinct_public_ids(db):
    first, second = make_customer(), make_customer()

    assert first.public_id.startswith("cus_")
    assert first.public_id != second.public_id


def test_a_user_has_one_membership_per_customer(portal_user, customer):
    import pytest

    with pytest.raises(IntegrityError):
        Membership.objects.create(user=portal_user, customer=customer)
