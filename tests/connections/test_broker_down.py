"""Publishing while the broker is down: the row a sweep or poll reads again is the promise,
and after one failure this process stops paying the broker's timeout on every call."""

import pytest
from django.utils import timezone

from connections.health import services as health
from connections.link import adoption
from connections.models import Connection
from tests.builders import make_connection, make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down(published):
    published.refuse = 100
    return published


def test_a_health_check_asked_for_while_the_broker_is_down_is_left_to_the_poll(broker_down):
    connection = make_connection(customer=make_customer())
    Connection.objects.filter(pk=connection.pk).update(health_next_check_at=None)

    assert health.health_check_enqueue(connection_id=connection.pk) is False
    assert health.health_check_enqueue(connection_id=connection.pk) is False

    connection.refresh_from_db()
    assert connection.health_next_check_at <= timezone.now()  # due: the next poll checks it
    assert broker_down.attempts == 1  # the second call did not wait on the broker again


def test_check_trackstar_now_while_the_broker_is_down_says_so(broker_down):
    with pytest.raises(adoption.BrokerUnavailable):
        adoption.reconcile_enqueue()
    with pytest.raises(adoption.BrokerUnavailable):
        adoption.reconcile_enqueue()
    assert broker_down.attempts == 1
