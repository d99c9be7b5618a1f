"""Assets, licence counts, associate/disassociate/revoke and assignments."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.sandbox

PAGES, NUMBERS, OUTLOOK, BOOK = "361309726", "361304891", "1274495053", "1459887391"


def asset(api, adam_id: str) -> dict:
    (found,) = api.ok("GET", "/assets", params={"adamId": adam_id})["assets"]
    return found


def users(api, *cuids: str) -> None:
    api.finished(api.create(*({"clientUserId": c} for c in cuids)))


def associate(api, adam_ids, cuids=(), serials=(), path="/assets/associate") -> dict:
    body = {"assets": [{"adamId": a, "pricingParam": "STDQ"} for a in adam_ids]}
    if cuids:
        body["clientUserIds"] = list(cuids)
    if serials:
        body["serialNumbers"] = list(serials)
    return api.finished(api.ok("POST", path, body)["eventId"])


def test_it_lists_a_catalogue_of_apps_and_a_book_with_counts(api):
    body = api.ok("GET", "/assets")
    assert body["versionId"] and body["totalPages"] == 1
    book = next(a for a in body["assets"] if a["productType"] == "Book")
    assert (book["revocable"], book["deviceAssignable"]) == (False, False)
    pages = asset(api, PAGES)
    assert (pages["pricingParam"], pages["productType"], pages["revocable"]) == ("STDQ", "App", True)
    assert pages["assignedCount"] == 0
    assert pages["availableCount"] == pages["totalCount"]
    assert "iOS" in pages["supportedPlatforms"]
    assert [a["adamId"] for a in api.ok("GET", "/assets", params={"productType": "Book"})["assets"]] == [BOOK]
    assert all(a["revocable"] for a in api.ok("GET", "/assets", params={"revocable": "true"})["assets"])


def test_it_associates_licences_and_counts_them(api):
    users(api, "u1", "u2")
    status = associate(api, [PAGES, NUMBERS], cuids=["u1", "u2"], serials=["SER1"])
    # Tasks = assets x targets (Apple's example: 2 assets x 8 targets = 16).
    assert (status["eventType"], status["numRequested"], status["numCompleted"]) == ("ASSOCIATE", 6, 6)
    assert status["eventStatus"] == "COMPLETE"
    assert asset(api, PAGES)["assignedCount"] == 3
    assert asset(api, PAGES)["availableCount"] == asset(api, PAGES)["totalCount"] - 3
    again = associate(api, [PAGES], cuids=["u1"])  # already assigned: nothing to do, no error
    assert again["eventStatus"] == "COMPLETE"
    assert asset(api, PAGES)["assignedCount"] == 3


def test_it_refuses_device_assignment_of_a_book_synchronously_with_9707(api):
    users(api, "u1")
    body = {"assets": [{"adamId": BOOK}], "serialNumbers": ["SER1"]}
    api.error(api.post("/assets/associate", body), 9707, 400)


def test_it_fails_associating_unknown_users_with_9609_and_short_licences_with_9709(api):
    users(api, "u1", "u2", "u3", "u4")
    status = associate(api, [OUTLOOK], cuids=["u1", "u2", "u3", "u4", "ghost"])  # Outlook has 3 licences
    assert (status["numRequested"], status["numCompleted"]) == (5, 3)
    failures = {f["errorNumber"]: f["errorInfo"]["clientUserIds"] for f in status["failures"]}
    assert failures == {9709: ["u4"], 9609: ["ghost"]}
    assert asset(api, OUTLOOK)["availableCount"] == 0


def test_it_lists_assignments_with_filters_and_user_state(api, vpp_sandbox):
    users(api, "u1", "u2")
    associate(api, [PAGES, BOOK], cuids=["u1", "u2"])
    rows = api.ok("GET", "/assignments", params={"clientUserId": "u1"})["assignments"]
    assert sorted(r["adamId"] for r in rows) == sorted([PAGES, BOOK])
    assert all(r["pricingParam"] == "STDQ" and "userStatus" not in r for r in rows)
    vpp_sandbox.accept_invitation(vpp_sandbox.users()[0]["inviteCode"])
    with_state = api.ok("GET", "/assignments", params={"adamId": BOOK, "includeUserState": "true"})["assignments"]
    assert sorted((r["clientUserId"], r["userStatus"], "idHash" in r) for r in with_state) == [
        ("u1", "Associated", True),
        ("u2", "Registered", False),
    ]


def test_it_revokes_all_revocable_licences_of_users_but_keeps_books(api):
    users(api, "u1", "u2")
    associate(api, [PAGES, OUTLOOK, BOOK], cuids=["u1", "u2"])
    status = api.finished(api.ok("POST", "/assets/revoke", {"clientUserIds": ["u1"]})["eventId"])
    assert (status["eventType"], status["eventStatus"], status["numRequested"], status["numCompleted"]) == (
        "REVOKE",
        "COMPLETE",
        1,
        1,
    )
    left = api.ok("GET", "/assignments", params={"clientUserId": "u1"})["assignments"]
    assert [r["adamId"] for r in left] == [BOOK]
    assert asset(api, PAGES)["assignedCount"] == 1


def test_it_fails_revoking_a_never_known_user_with_9609(api):
    status = api.finished(api.ok("POST", "/assets/revoke", {"clientUserIds": ["ghost"]})["eventId"])
    assert status["failures"][0]["errorNumber"] == 9609


def test_it_keeps_assignments_of_retired_users_until_revoked(api):
    users(api, "u1")
    associate(api, [PAGES], cuids=["u1"])
    api.finished(api.create({"clientUserId": "u1"}, path="/users/retire"))
    assert len(api.ok("GET", "/assignments")["assignments"]) == 1
    assert api.ok("GET", "/assignments", params={"excludeInactiveUsers": "true"})["assignments"] == []
    api.finished(api.ok("POST", "/assets/revoke", {"clientUserIds": ["u1"]})["eventId"])
    assert api.ok("GET", "/assignments")["assignments"] == []


def test_it_disassociates_and_refuses_irrevocable_assets_with_9706(api):
    users(api, "u1")
    associate(api, [PAGES], cuids=["u1"])
    status = associate(api, [PAGES], cuids=["u1"], path="/assets/disassociate")
    assert (status["eventType"], status["eventStatus"]) == ("DISASSOCIATE", "COMPLETE")
    assert asset(api, PAGES)["assignedCount"] == 0
    api.error(api.post("/assets/disassociate", {"assets": [{"adamId": BOOK}], "clientUserIds": ["u1"]}), 9706, 400)


def test_it_serves_assignment_deltas(api):
    users(api, "u1", "u2")
    associate(api, [PAGES], cuids=["u1"])
    version = api.ok("GET", "/assignments")["versionId"]
    associate(api, [PAGES], cuids=["u2"])
    delta = api.ok("GET", "/assignments", params={"sinceVersionId": version})["assignments"]
    assert [r["clientUserId"] for r in delta] == ["u2"]
    api.error(api.get("/assignments", params={"sinceVersionId": "x"}), 9721, 400)


def test_it_sends_asset_management_notifications(api, vpp_sandbox, receiver):
    api.ok("POST", "/client/config", {"notificationUrl": receiver.url, "notificationAuthToken": "t"})
    users(api, "u1")
    associate(api, [PAGES], cuids=["u1"])
    ((_headers, body),) = vpp_sandbox.wait_for(lambda: receiver.of_type("ASSET_MANAGEMENT"))
    note = body["notification"]
    assert (note["type"], note["result"]) == ("ASSOCIATE", "SUCCESS")
    assert note["assignments"] == [{"adamId": PAGES, "pricingParam": "STDQ", "clientUserId": "u1"}]


@pytest.mark.parametrize(
    ("path", "body", "number"),
    [
        ("/assets/associate", {"clientUserIds": ["u1"]}, 9718),
        ("/assets/associate", {"assets": [{"adamId": PAGES}]}, 9719),
        ("/assets/associate", {"assets": [{"adamId": PAGES}] * 2, "clientUserIds": ["u1"]}, 9703),
        ("/assets/associate", {"assets": [{"adamId": str(i)} for i in range(26)], "clientUserIds": ["u1"]}, 9700),
        ("/assets/associate", {"assets": [{"adamId": PAGES}], "clientUserIds": ["u1", "u1"]}, 9704),
        ("/assets/associate", {"assets": [{"adamId": PAGES}], "serialNumbers": ["S", "S"]}, 9705),
        ("/assets/associate", {"assets": [{"adamId": PAGES}], "clientUserIds": [f"u{i}" for i in range(1001)]}, 9701),
        ("/assets/associate", {"assets": [{"adamId": PAGES}], "serialNumbers": [f"s{i}" for i in range(1001)]}, 9702),
        ("/assets/associate", {"assets": [{"adamId": "000"}], "clientUserIds": ["u1"]}, 9602),
        ("/assets/associate", {"assets": "x", "clientUserIds": ["u1"]}, 9602),
        ("/assets/revoke", {}, 9719),
        ("/assets/revoke", {"clientUserIds": [f"u{i}" for i in range(101)]}, 9701),
        ("/assets/revoke", {"serialNumbers": [f"s{i}" for i in range(101)]}, 9702),
        ("/assets/revoke", {"clientUserIds": ["a", "a"]}, 9704),
        ("/assets/revoke", {"clientUserIds": "a"}, 9602),
    ],
)
def test_it_validates_asset_requests_synchronously(api, vpp_sandbox, path, body, number):
    api.error(api.post(path, body), number, 400)
    assert vpp_sandbox.state("events") == []


def test_it_honours_a_changed_max_revoke(api, vpp_sandbox):
    vpp_sandbox.control(limits={"maxRevokeClientUserIds": 2})
    api.error(api.post("/assets/revoke", {"clientUserIds": ["a", "b", "c"]}), 9701, 400)


def test_it_simulates_a_purchase_with_an_asset_count_notification(api, vpp_sandbox, receiver):
    api.ok("POST", "/client/config", {"notificationUrl": receiver.url, "notificationAuthToken": "t"})
    total = asset(api, OUTLOOK)["totalCount"]
    vpp_sandbox._call("POST", "assets/count", {"location": vpp_sandbox.location, "adamId": OUTLOOK, "countDelta": 5})
    assert asset(api, OUTLOOK)["totalCount"] == total + 5
    ((_headers, body),) = vpp_sandbox.wait_for(lambda: receiver.of_type("ASSET_COUNT"))
    assert body["notification"] == {"adamId": OUTLOOK, "pricingParam": "STDQ", "countDelta": 5}


def test_it_names_failed_devices_as_serial_numbers(api, vpp_sandbox):
    vpp_sandbox.control(async_failure_share=1.0)
    status = associate(api, [PAGES, NUMBERS], serials=["SER1"])
    (failure,) = status["failures"]
    assert failure["errorInfo"] == {"serialNumbers": ["SER1"]}
    assert (status["numRequested"], status["numCompleted"]) == (2, 0)
