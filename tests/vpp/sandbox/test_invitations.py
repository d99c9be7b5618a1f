"""The sandbox's invitation page (what urls.invitationEmail points at)."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.sandbox


def invited(api, cuid="u1", **extra) -> dict:
    api.finished(api.create({"clientUserId": cuid, **extra}))
    return next(u for u in api.ok("GET", "/users")["users"] if u["clientUserId"] == cuid)


def invitation_url(api, code: str) -> str:
    template = api.ok("GET", "/service/config", token=None)["urls"]["invitationEmail"]
    return template.replace("%25inviteCode%25", code)


def test_it_shows_the_invitation_with_the_org_name_and_an_accept_button(api, vpp_sandbox):
    user = invited(api)
    page = requests.get(invitation_url(api, user["inviteCode"]), timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert vpp_sandbox.org in page.text
    assert "Accept invitation" in page.text
    assert f'action="/invite/{user["inviteCode"]}"' in page.text


def test_it_answers_an_unknown_code_with_404(vpp_sandbox):
    page = requests.get(vpp_sandbox.root_url + "/invite/0123", timeout=10)
    assert page.status_code == 404
    assert "not valid" in page.text


def test_it_associates_the_user_on_accept_and_notifies_the_console(api, vpp_sandbox, receiver):
    api.ok("POST", "/client/config", {"notificationUrl": receiver.url, "notificationAuthToken": "s3"})
    user = invited(api)
    page = requests.post(
        vpp_sandbox.root_url + f"/invite/{user['inviteCode']}", data={"appleAccount": "me@icloud.com"}, timeout=10
    )
    assert page.status_code == 200
    assert "Invitation accepted" in page.text
    (after,) = api.ok("GET", "/users")["users"]
    assert after["status"] == "Associated"
    # Apple's idHash is base64 (44 characters for a SHA-256, with "=" padding), not hex.
    assert len(after["idHash"]) == 44 and after["idHash"].endswith("=")
    notes = vpp_sandbox.wait_for(lambda: receiver.of_type("USER_ASSOCIATED"))
    ((headers, body),) = notes
    assert headers["Authorization"] == "Bearer s3"
    (associated,) = body["notification"]["associatedUsers"]
    assert (associated["clientUserId"], associated["status"], associated["idHash"]) == (
        "u1",
        "Associated",
        after["idHash"],
    )


def test_it_gives_the_default_app_to_a_user_who_accepts(api, vpp_sandbox):
    user = invited(api)
    vpp_sandbox.accept_invitation(user["inviteCode"])
    (assignment,) = api.ok("GET", "/assignments", params={"clientUserId": "u1"})["assignments"]
    assert assignment["adamId"] == vpp_sandbox.faults()["auto_associate_adam_id"]


def test_it_can_be_told_not_to_assign_an_app_on_accept(api, vpp_sandbox):
    vpp_sandbox.control(auto_associate_adam_id="")
    vpp_sandbox.accept_invitation(invited(api)["inviteCode"])
    assert api.ok("GET", "/assignments")["assignments"] == []


def test_it_refuses_a_second_acceptance_and_a_retired_invitation(api, vpp_sandbox):
    first = invited(api, "u1")
    assert vpp_sandbox.accept_invitation(first["inviteCode"])["outcome"] == "accepted"
    assert vpp_sandbox.accept_invitation(first["inviteCode"])["outcome"] == "already"
    second = invited(api, "u2")
    api.finished(api.create({"clientUserId": "u2"}, path="/users/retire"))
    page = requests.post(vpp_sandbox.root_url + f"/invite/{second['inviteCode']}", timeout=10)
    assert page.status_code == 409
    assert "withdrawn" in page.text
    assert requests.get(vpp_sandbox.root_url + f"/invite/{second['inviteCode']}", timeout=10).status_code == 410


def test_it_refuses_an_apple_account_already_used_by_another_user(api, vpp_sandbox):
    vpp_sandbox.accept_invitation(invited(api, "u1")["inviteCode"], "same@icloud.com")
    outcome = vpp_sandbox.accept_invitation(invited(api, "u2")["inviteCode"], "same@icloud.com")
    assert outcome["outcome"] == "taken"


def test_it_escapes_the_org_name(api, vpp_sandbox):
    token = vpp_sandbox.mint_token(org="<b>Evil</b>", location="evil")
    api.finished(api.create({"clientUserId": "u1"}, token=token), token=token)
    code = api.ok("GET", "/users", token=token)["users"][0]["inviteCode"]
    page = requests.get(vpp_sandbox.root_url + f"/invite?inviteCode={code}", timeout=10)
    assert "<b>Evil</b>" not in page.text
    assert "&lt;b&gt;Evil&lt;/b&gt;" in page.text
