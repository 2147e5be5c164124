import logging

from django.utils import timezone

from ..clients import trackstar_client
from ..models import Connection
from ..trackstar import TrackstarAuthError, TrackstarNotFound

logger = logging.getLogger(__name__)



def connection_disconnect(*, connection: Connection) -> Connection:
    """Delete the connection at Trackstar, then mark it disconnected and forget its token.
    A Trackstar outage leaves it untouched (the caller shows the error)."""
    if connection.status == Connection.Status.DISCONNECTED:
        return connection
    if connection.access_token:
        try:
            trackstar_client().delete_connection(access_token=connection.access_token)
        except (TrackstarAuthError, TrackstarNotFound):
            # Already gone or its token is dead at Trackstar: nothing left to delete there.
            pass
    connection.status = Connection.Status.DISCONNECTED
    connection.access_token = ""
    connection.disconnected_at = timezone.now()
    connection.save(update_fields=["status", "access_token", "disconnected_at", "updated_at"])
    logger.info("Connection disconnected",
                extra={"customer_id": connection.customer_id,
                       "connection_id": connection.trackstar_connection_id})
    return connection
