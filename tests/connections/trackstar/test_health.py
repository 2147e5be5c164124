"""Reading Trackstar's errors[] in both documented shapes (API.md §10)."""

import pytest

from connections.trackstar.health import parse_health

ALL_ENDPOINTS = [
    {"endpoint": f"GET /wms/{p}", "preventing_sync": True}
    for p in ("orders", "inventory", "returns", "products")
]


def health(*errors, **details):
    return parse_health({"errors": list(errors), **details})


@pytest.mark.parametrize(
    "entry",
    [
        {"error_type": "invalid_credentials", "resource": None, "message": "Bad password."},
        {
            "error_type": "invalid_credentials",
            "resource": None,
            "message": "Bad password.",
            "error_message": "Bad password.",
            "affected_endpoints": ALL_ENDPOINTS,
        },
    ],
    ids=["doc", "both"],
)
def test_invalid_credentials_are_blocking(entry):
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
            "error_type": "missing_permission",
            "message": "No access to returns data.",
            "error_message": "No access to returns data.",
            "affected_endpoints": [{"endpoint": "GET /wms/returns", "preventing_sync": True}],
        },
    ],
    ids=["doc", "both-without-resource"],
)
def test_a_missing_permission_names_only_its_resource(entry):
    parsed = health(entry)

    assert parsed.blocking is None
    assert parsed.missing_permissions == {"returns": "No access to returns data."}


@pytest.mark.parametrize(
    "endpoints",
    [
        ALL_ENDPOINTS,
        [{"endpoint": "GET /wms/returns", "preventing_sync": True}],
        [{**e, "preventing_sync": False} for e in ALL_ENDPOINTS],
    ],
    ids=["all-endpoints", "one-endpoint", "not-preventing"],
)
def test_an_entry_that_does_not_say_its_kind_is_for_staff_only(endpoints):
    """The OAS shape has no error_type: a timeout on every endpoint looks like broken
    credentials. No customer is emailed, and no resource stops syncing, on a guess."""
    parsed = health({"error_message": "WMS API timed out", "affected_endpoints": endpoints})

    assert parsed.blocking is None
    assert parsed.missing_permissions == {}
    assert parsed.unclassified == ["WMS API timed out"]


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
