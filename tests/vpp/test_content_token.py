"""vpp.content_token: the one client factory, the one "no token" signal, the one health writer."""

from __future__ import annotations

import pytest

from tests.support.redis_db import rate_limiter
from vpp.apple.errors import InvalidRequestError, error_for
from vpp.content_token import NoContentToken, token_health_record_error, vpp_client
from vpp.models import TokenHealth, VppServerSetting
from vpp.secrets import encrypt

TOKEN = "c2VjcmV0LXRva2Vu"


def test_the_client_decrypts_the_token_and_uses_the_override_url(db, settings):
    setting = VppServerSetting.load()
    with pytest.raises(NoContentToken, match="No content token is uploaded yet"):
        vpp_client(setting)
    setting.content_token_encrypted = encrypt(TOKEN)
    setting.api_base_url = "http://127.0.0.1:1234/mdm/v2/"
    client = vpp_client(setting, rate_limiter=rate_limiter())
    assert client.base_url == "http://127.0.0.1:1234/mdm/v2"
    setting.api_base_url = ""
    settings.VPP_API_BASE_URL = "http://127.0.0.1:4321/mdm/v2"
    assert vpp_client(setting, rate_limiter=rate_limiter()).base_url == settings.VPP_API_BASE_URL


@pytest.mark.parametrize(
    ("number", "health", "says"),
    [
        (9621, TokenHealth.EXPIRED, "expired (error 9621)"),
        (9625, TokenHealth.REVOKED, "revoked (error 9625)"),
        (9722, TokenHealth.INVALID, "does not accept this token (error 9722)"),
    ],
)
def test_one_writer_words_each_token_error_the_same_way(db, number, health, says):
    check = token_health_record_error(error_for(http_status=401, error_number=number))
    setting = VppServerSetting.load()
    assert (check.health, setting.token_health) == (health, health)
    assert says in setting.token_health_detail == check.detail


def test_errors_that_say_nothing_about_the_token_change_nothing(db):
    assert token_health_record_error(InvalidRequestError("bad request", error_number=9602)) is None
    assert VppServerSetting.load().token_health == TokenHealth.MISSING
