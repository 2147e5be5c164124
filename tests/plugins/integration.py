"""The `integration` marker, derived from the fixtures a test uses rather than placed by hand.

A test is an integration test when its fixture closure (item.fixturenames: the fixtures it
asks for and every fixture those ask for, autouse ones included) reaches one of
LIVE_ROOTS, the fixtures that start a real process. Every other live fixture depends on one
of them: worker_env (so every Celery worker fixture) on sandbox_server; trackstar, linked,
connect, live, … on sandbox. `live_server` and `httpserver` are threads in this process,
and the session's Redis is reached by every test through the cache: neither counts.

A hand-placed marker is accepted where a live fixture is used (tests/connections/sync/
still has some) and refused where none is, so the marker never claims what a test does not do.
"""

import pytest

LIVE_ROOTS = frozenset(
    {
        "sandbox_server",  # the Trackstar sandbox (plugins/sandbox.py); worker_env needs it
        "sandbox_process_factory",  # sandboxes of one test's own (plugins/sandbox.py)
        "browser",  # Chromium (plugins/browser.py)
        "private_redis",  # a redis-server of one test's own (plugins/redis_server.py)
    }
)


def uses_a_live_process(item: pytest.Item) -> bool:
    return not LIVE_ROOTS.isdisjoint(getattr(item, "fixturenames", ()))


# tryfirst: before pytest's own hook deselects by `-m`, which must see the added markers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrongly_marked = []
    for item in items:
        live = uses_a_live_process(item)
        marked = item.get_closest_marker("integration") is not None
        if live and not marked:
            item.add_marker(pytest.mark.integration)
        elif marked and not live:
            wrongly_marked.append(item.nodeid)
    if wrongly_marked:
        raise pytest.UsageError(
            "marked integration, but using none of the fixtures that start a real process "
            f"({', '.join(sorted(LIVE_ROOTS))}); drop the marker, it is derived "
            "(tests/plugins/integration.py):\n  " + "\n  ".join(wrongly_marked)
        )
