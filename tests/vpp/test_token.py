"""Content token: upload (good and bad files), health states from the sandbox, takeover, removal."""

from __future__ import annotations

import base64
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from vpp import secrets as vault
from vpp.apple.client import VppClient
from vpp.apple.types import MdmInfo
from vpp.models import AuditEvent, TokenHealth, VppServerSetting
from vpp.services import setting as setting_service

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]
URL = reverse("vpp:server-setting")


@pytest.fixture
def sandbox_setting(vpp_sandbox):
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    return setting


def upload(client, content: bytes, name="org.vpptoken"):
    return client.post(URL, {"section": "token", "token_file": SimpleUploadedFile(name, content)})


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


BAD_FILES = [
    ("not Base64", b"this is not base64 at all!", "not Base64"),
    ("bad JSON", b64("{not json"), "damaged or incomplete"),
    ("missing fields", b64('{"token": "abc", "orgName": "Org"}'), "no “expDate” field"),
    ("empty field", b64('{"token": "", "expDate": "2030-01-01T00:00:00+0000", "orgName": "Org"}'), "empty"),
    ("no offset", b64('{"token": "a", "expDate": "2030-01-01T00:00:00", "orgName": "Org"}'), "cannot be read"),
    ("huge", b"QUFB" * 10_000, "too large"),
    ("binary", bytes(range(256)) * 4, "binary"),
    ("empty", b"", "Choose a .vpptoken file"),
]


@pytest.mark.parametrize(("label", "content", "reason"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_it_refuses_bad_token_files_and_stores_nothing(client, admin, sandbox_setting, label, content, reason):
    response = upload(client, content)
    assert response.status_code == 422, label
    assert reason in response.content.decode()
    setting = VppServerSetting.load()
    assert not setting.has_token and setting.token_health == TokenHealth.MISSING


def test_it_refuses_an_expired_token_file(client, admin, sandbox_setting, vpp_sandbox):
    response = upload(client, vpp_sandbox.mint_token(expired=True).encode())
    assert response.status_code == 422
    assert "expired on" in response.content.decode()
    assert not VppServerSetting.load().has_token


def test_it_refuses_a_token_apple_revoked(client, admin, sandbox_setting, vpp_sandbox):
    vpp_sandbox.revoke_token()
    response = upload(client, vpp_sandbox.token.encode())
    assert response.status_code == 422
    assert "revoked (error 9625)" in response.content.decode()
    assert not VppServerSetting.load().has_token


def test_it_stores_a_good_token_encrypted_claims_the_location_and_never_shows_it(
    client, admin, sandbox_setting, vpp_sandbox, caplog
):
    with caplog.at_level(logging.DEBUG):
        response = upload(client, (vpp_sandbox.token + "\n").encode())
    assert response.status_code == 302
    setting = VppServerSetting.load()
    assert setting.token_health == TokenHealth.VALID
    assert vault.decrypt(setting.content_token_encrypted) == vpp_sandbox.token
    assert vpp_sandbox.token not in setting.content_token_encrypted
    assert setting.token_org_name == vpp_sandbox.org and setting.location_name
    assert setting.mdm_claimed_at is not None
    config = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url).client_config()
    assert config.mdm_info.id == str(setting.mdm_id) and config.mdm_info.name == "kmconsole"
    html = client.get(URL).content.decode()
    assert vpp_sandbox.org in html and setting.location_name in html
    assert vpp_sandbox.token not in html and vpp_sandbox.token not in caplog.text
    assert AuditEvent.objects.filter(action="vpp.token_uploaded").exists()


def test_it_accepts_pasted_token_text_and_replaces_in_place(client, admin, sandbox_setting, vpp_sandbox):
    upload(client, vpp_sandbox.token.encode())
    first = VppServerSetting.load()
    newer = vpp_sandbox.mint_token(expires_in_days=200)
    response = client.post(URL, {"section": "token", "token_text": newer})
    assert response.status_code == 302
    setting = VppServerSetting.load()
    assert vault.decrypt(setting.content_token_encrypted) == newer
    assert setting.mdm_id == first.mdm_id and setting.token_expires_at < first.token_expires_at
    assert AuditEvent.objects.filter(action="vpp.token_replaced").exists()


def _store(vpp_sandbox, token=None):
    setting = VppServerSetting.load()
    setting_service.token_upload(data=token or vpp_sandbox.token, actor=None)
    return setting


@pytest.mark.parametrize(
    ("make", "health", "text"),
    [
        (lambda sb: None, TokenHealth.VALID, ""),
        (lambda sb: sb.expire_token(), TokenHealth.EXPIRED, "9621"),
        (lambda sb: sb.revoke_token(), TokenHealth.REVOKED, "9625"),
    ],
    ids=["valid", "expired", "revoked"],
)
def test_it_checks_each_health_state_with_apple(sandbox_setting, vpp_sandbox, make, health, text):
    _store(vpp_sandbox)
    make(vpp_sandbox)
    check = setting_service.token_check_health()
    setting = VppServerSetting.load()
    assert (check.health, setting.token_health) == (health, health)
    assert text in setting.token_health_detail


def test_it_reports_a_token_expiring_within_30_days(sandbox_setting, vpp_sandbox):
    _store(vpp_sandbox, vpp_sandbox.mint_token(expires_in_days=12))
    assert VppServerSetting.load().token_health == TokenHealth.EXPIRING
    assert setting_service.token_check_health().health == TokenHealth.EXPIRING
    assert "expires in 1" in VppServerSetting.load().token_health_detail


def test_it_reports_an_invalid_stored_token(sandbox_setting, vpp_sandbox):
    VppServerSetting.objects.filter(pk=1).update(
        content_token_encrypted=vault.encrypt("bm90LWEtdG9rZW4="), token_health=TokenHealth.VALID
    )
    assert setting_service.token_check_health().health == TokenHealth.INVALID


def test_it_runs_the_daily_health_check_task(sandbox_setting, vpp_sandbox):
    from vpp.tasks import token_health_check

    _store(vpp_sandbox)
    vpp_sandbox.revoke_token()
    assert token_health_check() == TokenHealth.REVOKED


def _other_mdm_claims(vpp_sandbox):
    other = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    other.update_client_config(mdm_info=MdmInfo(id="other-mdm-id", name="Other MDM", metadata="elsewhere"))


def test_it_asks_before_taking_over_a_location_another_mdm_holds(client, admin, sandbox_setting, vpp_sandbox):
    _other_mdm_claims(vpp_sandbox)
    assert upload(client, vpp_sandbox.token.encode()).status_code == 302
    setting = VppServerSetting.load()
    assert setting.token_health == TokenHealth.OTHER_MDM and setting.other_mdm_name == "Other MDM"
    html = client.get(URL).content.decode()
    assert "managed by Other MDM" in html and 'id="takeover-button"' in html
    assert "must stop using this token" in html
    # Not confirmed: nothing changes at Apple.
    assert client.post(URL, {"section": "takeover"}).status_code == 422
    check = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url).client_config()
    assert check.mdm_info.id == "other-mdm-id"
    # Confirmed: kmconsole claims the location.
    assert client.post(URL, {"section": "takeover", "understood": "on"}).status_code == 302
    setting = VppServerSetting.load()
    assert setting.token_health == TokenHealth.VALID and setting.other_mdm_name == ""
    check = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url).client_config()
    assert check.mdm_info.id == str(setting.mdm_id)
    assert AuditEvent.objects.filter(action="vpp.location_taken_over").exists()


def test_it_shows_apples_refusal_of_a_takeover(client, admin, sandbox_setting, vpp_sandbox):
    _other_mdm_claims(vpp_sandbox)
    assert upload(client, vpp_sandbox.token.encode()).status_code == 302
    vpp_sandbox.revoke_token()  # revoked between the upload and the confirmed takeover
    response = client.post(URL, {"section": "takeover", "understood": "on"})
    assert response.status_code == 422
    assert "Apple refused the takeover: The content token was revoked" in response.content.decode()
    setting = VppServerSetting.load()
    assert setting.token_health == TokenHealth.OTHER_MDM and setting.mdm_claimed_at is None
    assert not AuditEvent.objects.filter(action="vpp.location_taken_over").exists()
    with pytest.raises(setting_service.TakeoverRefused):
        setting_service.token_takeover(actor=admin)


def test_it_needs_a_token_to_take_over(client, admin, sandbox_setting):
    response = client.post(URL, {"section": "takeover", "understood": "on"})
    assert response.status_code == 422
    assert "No content token is uploaded yet" in response.content.decode()


def test_it_notices_another_mdm_taking_the_location_later(sandbox_setting, vpp_sandbox):
    _store(vpp_sandbox)
    _other_mdm_claims(vpp_sandbox)
    assert setting_service.token_check_health().health == TokenHealth.OTHER_MDM


def test_it_removes_the_token(client, admin, sandbox_setting, vpp_sandbox):
    upload(client, vpp_sandbox.token.encode())
    assert client.post(URL, {"section": "token_remove"}).status_code == 302
    setting = VppServerSetting.load()
    assert not setting.has_token and setting.token_health == TokenHealth.MISSING and setting.location_name == ""
    assert "No content token yet" in client.get(URL).content.decode()
    assert AuditEvent.objects.filter(action="vpp.token_removed").exists()


def test_a_rejected_pasted_token_is_never_rendered_back(client, admin, sandbox_setting, vpp_sandbox):
    expired = vpp_sandbox.mint_token(expired=True)
    response = client.post(URL, {"section": "token", "token_text": expired})
    html = response.content.decode()
    assert response.status_code == 422 and "expired" in html  # the reason is shown...
    assert expired not in html  # ...the secret is not
    assert not VppServerSetting.load().has_token
