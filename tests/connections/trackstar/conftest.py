import threading
import time

import pytest
from werkzeug import Response

from connections.trackstar import TrackstarClient

API_KEY = "sk_live_apikey_5f2d9c1e8b7a"
ACCESS_TOKEN = "trackstar_accesstoken_9a8b7c6d"


@pytest.fixture
def client(httpserver):
    with TrackstarClient(httpserver.url_for(""), API_KEY, timeout=(1.0, 2.0)) as client:
        yield client


@pytest.fixture
def slow_response(httpserver):
    """A handler that answers only after the client has given up waiting.

    It is released when the test ends and the test waits for it, so the late request
    never lands in the next test's request log.
    """
    release = threading.Event()

    def handler(request):
        release.wait(timeout=5)
        return Response("{}", content_type="application/json")

    yield handler
    release.set()
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:
        time.sleep(0.01)
