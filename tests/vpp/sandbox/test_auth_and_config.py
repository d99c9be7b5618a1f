"""Service config (no auth), the Bearer sToken checks and the common response envelope."""

from __future__ import annotations

import base64
import json

import pytest

pytestmark = pytest.mark.sandbox


def test_it_serves_service_config_without_auth_with_all_urls_pointing_at_itself(api, vpp_sandbox):
    config = api.ok("GET", "/service/config", token=None)
    assert config["limits"]["maxUsers"] == 100
    assert config["limits"]["maxRequestPerSecond"] == 15
    assert {"USER_MANAGEMENT", "USER_ASSOCIATED", "ASSET_MANAGEMENT"} <= set(config["notificationTypes"])
    assert {e["errorNumber"] for e in config["errorCodes"]} >= {9601, 9716, 9722, 9646}
    urls = config["urls"]
    assert urls["getUsers"] == vpp_sandbox.base_url + "/users"
    assert urls["eventStatus"] == vpp_sandbox.base_url + "/status"
    assert all(url.startswith(vpp_sandbox.root_url) for url in urls.values())
    assert urls["invitationEmail"] == vpp_sandbox.root_url + "/invite?inviteCode=%25inviteCode%25"


def test_it_advertises_limits_changed_at_run_time(api, vpp_sandbox):
    vpp_sandbox.control(limits={"maxUsers": 7, "maxRequestPerSecond": 3})
    limits = api.ok("GET", "/service/config", token=None)["limits"]
    assert (limits["maxUsers"], limits["maxRequestPerSecond"], limits["maxRevokeClientUserIds"]) == (7, 3, 100)


def test_it_answers_a_missing_authorization_header_with_9601(api):
    api.error(api.get("/client/config", token=None), 9601, 401)


@pytest.mark.parametrize(
    "header",
    ["Basic abc", "Bearer", "Bearer not-base64!!", "Bearer " + base64.b64encode(b"[1, 2]").decode(), "bearer x"],
)
def test_it_answers_a_malformed_authorization_header_with_9722(api, header):
    api.error(api.get("/users", token=None, headers={"Authorization": header}), 9722, 401)


def test_it_rejects_a_token_missing_fields_with_9722(api):
    token = base64.b64encode(json.dumps({"token": "x", "orgName": "o"}).encode()).decode()
    api.error(api.get("/users", token=token), 9722, 401)


def test_it_answers_an_expired_token_with_9621(api, vpp_sandbox):
    api.error(api.get("/users", token=vpp_sandbox.mint_token(expired=True)), 9621, 401)


def test_it_expires_and_revokes_tokens_at_run_time(api, vpp_sandbox):
    other = vpp_sandbox.mint_token(expires_in_days=30)
    vpp_sandbox.expire_token()
    api.error(api.get("/users"), 9621, 401)
    vpp_sandbox.revoke_token(other)
    api.error(api.get("/users", token=other), 9625, 401)
    vpp_sandbox.reset()
    api.ok("GET", "/users")


def test_it_answers_errors_with_http_200_when_asked(api, vpp_sandbox):
    vpp_sandbox.control(errors_with_http_200=True)
    response = api.get("/users", token=None)
    assert (response.status_code, response.json()["errorNumber"]) == (200, 9601)


def test_it_puts_token_expiry_uid_and_mdm_info_in_responses(api, vpp_sandbox):
    token = vpp_sandbox.mint_token(expires_in_days=10)
    body = api.ok("GET", "/users", token=token)
    assert body["tokenExpirationDate"].endswith("+0000")
    assert body["uId"].isdigit()
    assert "mdmInfo" not in body
    mdm = {"id": "kmc-1", "name": "kmconsole", "metadata": "host=a"}
    api.ok("POST", "/client/config", {"mdmInfo": mdm}, token=token)
    assert api.ok("GET", "/status", params={"eventId": api.create({"clientUserId": "u1"})})["mdmInfo"] == mdm


def test_it_keeps_locations_apart_by_the_tokens_token_field(api, vpp_sandbox):
    api.create({"clientUserId": "only-here"})
    vpp_sandbox.advance()
    elsewhere = vpp_sandbox.mint_token(location="another-location", org="Other Org")
    first, second = api.ok("GET", "/users"), api.ok("GET", "/users", token=elsewhere)
    assert [u["clientUserId"] for u in first["users"]] == ["only-here"]
    assert second["users"] == []
    assert first["uId"] != second["uId"]


def test_it_answers_a_wrong_method_with_9726(api):
    response = api.call("DELETE", "/users")
    api.error(response, 9726, 405)
    assert response.headers["Allow"] == "GET"
    api.error(api.get("/users/create"), 9726, 405)


def test_it_answers_a_wrong_content_type_with_9727(api):
    response = api.call(
        "POST", "/users/create", data="users=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    api.error(response, 9727, 415)


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"users"'])
def test_it_answers_malformed_json_with_9602(api, body):
    response = api.call("POST", "/users/create", data=body, headers={"Content-Type": "application/json"})
    api.error(response, 9602, 400)


def test_it_reads_client_config(api):
    config = api.ok("GET", "/client/config")
    assert config["countryISO2ACode"] == "US"
    assert config["defaultPlatform"] == "volumestore"
    assert config["websiteURL"] == "business.apple.com"
    assert "Sandbox" in config["locationName"]
    assert "mdmInfo" not in config


@pytest.mark.parametrize(
    ("mdm", "number"),
    [
        ({"id": "a", "name": "b"}, 9723),
        ("not an object", 9723),
        ({"id": "a" * 101, "name": "b", "metadata": "c"}, 9724),
        ({"id": "a", "name": "b" * 101, "metadata": "c"}, 9725),
        ({"id": "a", "name": "b", "metadata": "c" * 256}, 9713),
    ],
)
def test_it_validates_mdm_info(api, mdm, number):
    api.error(api.post("/client/config", {"mdmInfo": mdm}), number, 400)
    assert "mdmInfo" not in api.ok("GET", "/client/config")


def test_it_sets_mdm_info_and_echoes_it(api):
    mdm = {"id": "kmc-1", "name": "kmconsole", "metadata": "{}"}
    assert api.ok("POST", "/client/config", {"mdmInfo": mdm})["mdmInfo"] == mdm
    assert api.ok("GET", "/users")["mdmInfo"] == mdm
