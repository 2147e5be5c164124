"""Reading Trackstar's errors[] in both documented shapes (API.md §10)."""

import pytest

from connections.trackstar.health import parse_health

SYNCED = ["orders", "inventory", "returns", "products"]
ALL_ENDPOINTS = [
    {"endpoint": f"GET /wms/{p}", "preventing_sync": True}
    for p in ("orders", "inventory", "returns", "products")
]


def health(*errors, **details):
    return parse_health({"errors": list(errors), **details}, synced=SYNCED)


@pytest.mark.parametrize(
    "entry",
    [
        {"error_type": "invalid_credentials", "resource": None, "message": "Bad password."},
        {
            "error_message": "Bad password.",
            "affected_endpoints": ALL_ENDPOINTS,
            "first_seen": "2026-11-30T10:00:00Z",
            "last_seen": "2026-11-30T11:00:00Z",
        },
        {
            "error_type": "invalid_credentials",
            "resource": None,
            "message": "Bad password.",
            "error_message": "Bad password.",
            "affected_endpoints": ALL_ENDPOINTS,
        },
    ],
    ids=["doc", "oas", "both"],
)
def test_invalid_credentials_are_blocking_in_either_shape(entry):
    parsed = health(entry)

    assert parsed.blocking is not None
    assert parsed.blocking.message == "Bad password."
    assert parsed.missing_permissions == {}


@pytest.mark.parametrize(
    "entry",
    [
        {
            "error_type": "missing_permission",
            "resource": "returns",
            "message": "No access to returns data.",
        },
        {
            "error_message": "No access to returns data.",
            "affected_endpoints": [{"endpoint": "GET /wms/returns", "preventing_sync": True}],
        },
        {
            "error_type": "missing_permission",
            "resource": "returns",
            "message": "No access to returns data.",
            "error_message": "No access to returns data.",
            "affected_endpoints": [{"endpoint": "GET /wms/returns", "preventing_sync": True}],
        },
    ],
    ids=["doc", "oas", "both"],
)
def test_a_missing_permission_names_only_its_resource(entry):
    parsed = health(entry)

    assert parsed.blocking is None
    assert parsed.missing_permissions == {"returns": "No access to returns data."}


def test_several_errors_at_once_and_spellings_of_a_resource():
    parsed = health(
        {"error_type": "missing_permission", "resource": "inbound-shipments", "message": "a"},
        {"error_type": "missing_permission", "resource": "get_returns", "message": ""},
    )

    assert parsed.missing_permissions == {
        "inbound_shipments": "a",
        "returns": "No access to returns.",
    }


def test_an_error_we_cannot_classify_blocks_nothing_and_emails_nobody():
    parsed = health(
        {"error_message": "Something odd.", "affected_endpoints": []},
        {"error_type": "missing_permission", "resource": "unicorns"},
    )

    assert parsed.blocking is None
    assert parsed.missing_permissions == {}
    assert parsed.unclassified == ["Something odd.", "A permission is missing."]


def test_the_historical_sync_map_and_its_absence():
    parsed = health(
        historical_sync_completed={"get_orders": True, "get_returns": False, "get_unknown": True}
    )
    assert parsed.history_completed == {"orders": True, "returns": False}
    assert health().history_completed is None
    assert health().errors == ()
