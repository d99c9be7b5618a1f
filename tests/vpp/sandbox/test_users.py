"""Users: create/update/retire (async events), listing, paging and deltas."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.sandbox


def users_of(api, **params) -> list[dict]:
    return api.ok("GET", "/users", params=params)["users"]


def test_it_creates_users_asynchronously_with_an_invite_code(api, vpp_sandbox):
    vpp_sandbox.control(pending_seconds=3600)
    event_id = api.create({"clientUserId": "u1", "email": "u1@example.com"}, {"clientUserId": "u2"})
    pending = api.ok("GET", "/status", params={"eventId": event_id})
    assert (pending["eventStatus"], pending["eventType"], pending["numRequested"]) == ("PENDING", "CREATE", 2)
    assert users_of(api) == []
    status = api.finished(event_id)
    assert (status["eventStatus"], status["numCompleted"]) == ("COMPLETE", 2)
    assert "failures" not in status
    users = users_of(api)
    assert [(u["clientUserId"], u["status"]) for u in users] == [("u1", "Registered"), ("u2", "Registered")]
    assert users[0]["email"] == "u1@example.com"
    assert all(re.fullmatch(r"[0-9a-f]{32}", u["inviteCode"]) for u in users)
    assert "idHash" not in users[0]


def test_it_finishes_events_after_the_pending_time_by_itself(api, vpp_sandbox):
    vpp_sandbox.control(pending_seconds=0.2)
    event_id = api.create({"clientUserId": "u1"})
    done = vpp_sandbox.wait_for(
        lambda: api.ok("GET", "/status", params={"eventId": event_id})["eventStatus"] == "COMPLETE"
    )
    assert done


def test_it_associates_a_managed_apple_id_at_once(api):
    api.finished(api.create({"clientUserId": "m1", "managedAppleId": "m1@corp.appleid.com"}))
    (user,) = users_of(api)
    assert user["status"] == "Associated"
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", user["idHash"])  # base64, as Apple sends it


def test_it_fails_creating_an_active_client_user_id_with_9716_asynchronously(api):
    api.finished(api.create({"clientUserId": "u1"}))
    status = api.finished(api.create({"clientUserId": "u1"}, {"clientUserId": "u2"}))
    assert (status["eventStatus"], status["numRequested"], status["numCompleted"]) == ("FAILED", 2, 1)
    (failure,) = status["failures"]
    assert failure["errorNumber"] == 9716
    assert failure["errorInfo"] == {"clientUserIds": ["u1"]}
    assert len(users_of(api, clientUserId="u1")) == 1


def test_it_retires_users_and_keeps_history_when_recreated(api, vpp_sandbox):
    api.finished(api.create({"clientUserId": "u1"}))
    first_code = users_of(api)[0]["inviteCode"]
    status = api.finished(api.create({"clientUserId": "u1"}, path="/users/retire"))
    assert (status["eventType"], status["eventStatus"]) == ("RETIRE", "COMPLETE")
    assert [u["status"] for u in users_of(api)] == ["Retired"]
    api.finished(api.create({"clientUserId": "u1"}))
    rows = users_of(api, clientUserId="u1")
    assert [u["status"] for u in rows] == ["Retired", "Registered"]
    assert rows[1]["inviteCode"] != first_code
    # As Apple's answers show, activeOnly may still carry the retired record of a user active again
    assert [u["status"] for u in users_of(api, activeOnly="true")] == ["Retired", "Registered"]
    vpp_sandbox.control(retired_in_active_only=False)
    assert [u["status"] for u in users_of(api, activeOnly="true")] == ["Registered"]
    assert [u["status"] for u in users_of(api, retiredOnly="true")] == ["Retired"]
    assert len({u["recordId"] for u in vpp_sandbox.users()}) == 2


def test_it_fails_update_and_retire_of_unknown_users_with_9609(api):
    for path in ("/users/update", "/users/retire"):
        status = api.finished(api.create({"clientUserId": "ghost"}, path=path))
        assert status["eventStatus"] == "FAILED"
        assert [(f["errorNumber"], f["errorInfo"]["clientUserIds"]) for f in status["failures"]] == [(9609, ["ghost"])]


def test_it_updates_email_and_managed_apple_id(api):
    api.finished(api.create({"clientUserId": "u1", "email": "old@example.com"}))
    api.finished(api.create({"clientUserId": "u1", "email": "new@example.com"}, path="/users/update"))
    assert users_of(api)[0]["email"] == "new@example.com"
    api.finished(api.create({"clientUserId": "u1", "managedAppleId": "u1@corp.example"}, path="/users/update"))
    assert users_of(api)[0]["status"] == "Associated"


def test_it_refuses_an_account_outside_the_tokens_organisation_with_9635_and_keeps_no_record(api):
    status = api.finished(api.create({"clientUserId": "o1", "managedAppleId": "o1@elsewhere.example"}))
    assert status["failures"][0]["errorNumber"] == 9635
    assert users_of(api) == []


def test_an_update_refused_with_9635_leaves_the_invited_user_as_it_was(api):
    api.finished(api.create({"clientUserId": "u1", "email": "u1@example.com"}))
    before = users_of(api)[0]
    status = api.finished(
        api.create({"clientUserId": "u1", "managedAppleId": "u1@elsewhere.example"}, path="/users/update")
    )
    assert status["failures"][0]["errorNumber"] == 9635
    after = users_of(api)[0]
    assert (after["status"], after["inviteCode"]) == ("Registered", before["inviteCode"])


def test_the_organisations_domains_are_an_option(api):
    api.sandbox.control(org_domains={"Sandbox Organisation": ["elsewhere.example"]})
    status = api.finished(api.create({"clientUserId": "o1", "managedAppleId": "o1@elsewhere.example"}))
    assert status["numCompleted"] == 1
    record = users_of(api)[0]
    assert record["status"] == "Associated" and "inviteCode" not in record


def test_it_fails_a_managed_apple_id_already_used_by_another_user_with_9641(api):
    api.finished(api.create({"clientUserId": "u1", "managedAppleId": "same@corp.example"}))
    status = api.finished(api.create({"clientUserId": "u2", "managedAppleId": "same@corp.example"}))
    assert status["failures"][0]["errorNumber"] == 9641


@pytest.mark.parametrize(
    ("body", "number"),
    [
        ({}, 9720),
        ({"users": []}, 9720),
        ({"users": "u1"}, 9602),
        ({"users": [{"email": "a@b.co"}]}, 9602),
        ({"users": [{"clientUserId": 5}]}, 9602),
        ({"users": [{"clientUserId": "a"}, {"clientUserId": "a"}]}, 9715),
        ({"users": [{"clientUserId": "a", "email": "not-an-email"}]}, 9717),
        ({"users": [{"clientUserId": f"u{i}"} for i in range(101)]}, 9714),
    ],
)
def test_it_validates_user_requests_synchronously(api, vpp_sandbox, body, number):
    api.error(api.post("/users/create", body), number, 400)
    assert vpp_sandbox.state("events") == []


def test_it_names_duplicates_and_bad_emails_in_error_info(api):
    body = api.error(api.post("/users/create", {"users": [{"clientUserId": "a"}, {"clientUserId": "a"}]}), 9715, 400)
    assert body["errorInfo"]["clientUserIds"] == ["a"]


def test_it_honours_a_changed_max_users(api, vpp_sandbox):
    vpp_sandbox.control(limits={"maxUsers": 2})
    api.error(api.post("/users/create", {"users": [{"clientUserId": c} for c in "abc"]}), 9714, 400)
    api.create({"clientUserId": "a"}, {"clientUserId": "b"})


def test_it_answers_an_unknown_event_id_with_9708(api):
    api.error(api.get("/status", params={"eventId": "nope"}), 9708, 400)
    api.error(api.get("/status"), 9708, 400)


def test_it_does_not_show_one_locations_events_to_another(api, vpp_sandbox):
    event_id = api.create({"clientUserId": "u1"})
    api.error(api.get("/status", params={"eventId": event_id}, token=vpp_sandbox.mint_token(location="x")), 9708, 400)


def test_it_pages_users_with_zero_based_indexes(api, vpp_sandbox):
    vpp_sandbox.control(page_size=2)
    api.finished(api.create(*({"clientUserId": f"u{i}"} for i in range(5))))
    first = api.ok("GET", "/users")
    assert (first["currentPageIndex"], first["nextPageIndex"], first["totalPages"], first["size"]) == (0, 1, 3, 2)
    last = api.ok("GET", "/users", params={"pageIndex": 2})
    assert (last["currentPageIndex"], last["size"], "nextPageIndex" in last) == (2, 1, False)
    assert [u["clientUserId"] for u in last["users"]] == ["u4"]
    for bad in ("3", "-1", "x"):
        api.error(api.get("/users", params={"pageIndex": bad}), 9650, 400)


def test_it_answers_an_empty_list_as_one_empty_page(api):
    body = api.ok("GET", "/users")
    assert (body["users"], body["size"], body["totalPages"], "nextPageIndex" in body) == ([], 0, 1, False)


def test_it_bumps_version_id_on_every_write_and_serves_deltas(api):
    api.finished(api.create({"clientUserId": "u1"}, {"clientUserId": "u2"}))
    version = api.ok("GET", "/users")["versionId"]
    assert api.ok("GET", "/users", params={"sinceVersionId": version})["users"] == []
    api.finished(api.create({"clientUserId": "u2"}, path="/users/retire"))
    delta = api.ok("GET", "/users", params={"sinceVersionId": version})
    assert [(u["clientUserId"], u["status"]) for u in delta["users"]] == [("u2", "Retired")]
    assert int(delta["versionId"]) > int(version)


@pytest.mark.parametrize("version", ["abc", "999999", "0"])
def test_it_answers_a_bad_version_id_with_9721(api, version):
    api.error(api.get("/users", params={"sinceVersionId": version}), 9721, 400)


def test_it_rejects_a_bad_boolean_filter(api):
    api.error(api.get("/users", params={"activeOnly": "maybe"}), 9602, 400)


def test_it_marks_a_retired_row_deleted_when_its_apple_account_joins_a_new_row(api, vpp_sandbox):
    api.finished(api.create({"clientUserId": "u1"}))
    vpp_sandbox.accept_invitation(users_of(api)[0]["inviteCode"], "same@icloud.com")
    api.finished(api.create({"clientUserId": "u1"}, path="/users/retire"))
    api.finished(api.create({"clientUserId": "u1"}))
    (new_code,) = [u["inviteCode"] for u in users_of(api, activeOnly="true") if u["status"] == "Registered"]
    assert [u["status"] for u in users_of(api)] == ["Retired", "Registered"]
    vpp_sandbox.accept_invitation(new_code, "same@icloud.com")
    assert [u["status"] for u in users_of(api)] == ["Deleted", "Associated"]
    assert [u["status"] for u in users_of(api, retiredOnly="true")] == ["Deleted"]
