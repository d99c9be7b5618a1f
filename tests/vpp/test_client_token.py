"""Content token (.vpptoken) parsing in vpp.apple.token_file: valid forms and a table of malformed inputs.

(The settings page's token upload is tested in tests/vpp/test_token.py.)
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from tests.support.vpp_api import SECRET_INNER, b64, make_stoken
from vpp.apple.token_file import MAX_TOKEN_FILE_BYTES, TokenFileError, parse_content_token

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "exp",
    ["2030-11-08T22:33:22+0000", "2030-11-08T22:33:22+00:00", "2030-11-08T22:33:22Z", "2030-11-08T15:33:22-0700"],
)
def test_it_parses_expiry_in_every_offset_form(exp):
    token = parse_content_token(make_stoken(exp=exp), now=NOW)
    assert token.expires_at == datetime(2030, 11, 8, 22, 33, 22, tzinfo=UTC)
    assert token.org_name == "Example School"
    assert token.token == SECRET_INNER
    assert not token.expired


def test_it_strips_whitespace_newlines_and_bom_and_accepts_bytes():
    raw = make_stoken()
    wrapped = "\ufeff  " + raw[:20] + "\n" + raw[20:] + "\r\n\n"
    assert parse_content_token(wrapped, now=NOW).raw == raw
    assert parse_content_token(wrapped.encode("utf-8"), now=NOW).raw == raw


def test_it_ignores_unknown_json_fields():
    assert parse_content_token(make_stoken(extra_field={"a": 1}), now=NOW).org_name == "Example School"


def test_it_refuses_an_expired_token_unless_allowed():
    raw = make_stoken(exp="2026-01-01T00:00:00+0000", org="Old Org")
    with pytest.raises(TokenFileError) as info:
        parse_content_token(raw, now=NOW)
    assert "expired on 2026-01-01" in info.value.reason
    assert "Old Org" in info.value.reason
    token = parse_content_token(raw, now=NOW, allow_expired=True)
    assert token.expired


def _json_token(obj) -> str:
    return b64(json.dumps(obj))


VALID = make_stoken()
MALFORMED = [
    ("empty", "", "empty"),
    ("only whitespace", " \n\t ", "empty"),
    ("not base64", "this is not a token!", "not Base64"),
    ("truncated padding", VALID[:-3], "not Base64"),
    ("truncated on a 4-char boundary", VALID[: (len(VALID) // 2) // 4 * 4], "damaged or incomplete"),
    ("base64 of garbage bytes", b64(bytes(range(256))), "damaged or incomplete"),
    ("base64 of plain text", b64("hello world"), "damaged or incomplete"),
    ("json list", _json_token(["token", "expDate"]), "wrong format"),
    ("json string", _json_token("token"), "wrong format"),
    ("json number", _json_token(42), "wrong format"),
    ("missing token", _json_token({"expDate": "2030-01-01T00:00:00+0000", "orgName": "X"}), "no “token” field"),
    ("missing expDate", _json_token({"token": "t", "orgName": "X"}), "no “expDate” field"),
    ("missing orgName", _json_token({"token": "t", "expDate": "2030-01-01T00:00:00+0000"}), "no “orgName” field"),
    ("empty token", _json_token({"token": " ", "expDate": "2030-01-01T00:00:00+0000", "orgName": "X"}), "“token”"),
    ("numeric token", _json_token({"token": 5, "expDate": "2030-01-01T00:00:00+0000", "orgName": "X"}), "not text"),
    ("bad date", _json_token({"token": "t", "expDate": "next year", "orgName": "X"}), "expiry date"),
    ("date without offset", _json_token({"token": "t", "expDate": "2030-01-01T00:00:00", "orgName": "X"}), "expiry"),
    ("date as number", _json_token({"token": "t", "expDate": 1893456000, "orgName": "X"}), "“expDate”"),
    ("url-safe alphabet", base64.urlsafe_b64encode(b'{"token":"\xff\xfe"}').decode(), "not Base64"),
]


@pytest.mark.parametrize(("case", "data", "expected"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_it_rejects_malformed_tokens_with_a_specific_reason(case, data, expected):
    with pytest.raises(TokenFileError) as info:
        parse_content_token(data, now=NOW)
    assert expected in info.value.reason
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00binary", bytes([0xFF, 0xFE, 0x00, 0x41]) * 10],
    ids=["png", "utf16-ish"],
)
def test_it_rejects_binary_files(data):
    with pytest.raises(TokenFileError, match="binary"):
        parse_content_token(data, now=NOW)


@pytest.mark.parametrize("data", [b"A" * (MAX_TOKEN_FILE_BYTES + 1), "A" * (MAX_TOKEN_FILE_BYTES + 4)])
def test_it_rejects_huge_files_before_decoding(data):
    with pytest.raises(TokenFileError, match="too large"):
        parse_content_token(data, now=NOW)


def test_it_never_echoes_the_token_in_reasons_or_repr():
    raw = make_stoken(exp="2020-01-01T00:00:00+0000")
    with pytest.raises(TokenFileError) as info:
        parse_content_token(raw, now=NOW)
    assert raw not in info.value.reason and SECRET_INNER not in info.value.reason
    token = parse_content_token(raw, now=NOW, allow_expired=True)
    assert raw not in repr(token) and SECRET_INNER not in repr(token)
    for _case, data, _ in MALFORMED:
        try:
            parse_content_token(data, now=NOW)
        except TokenFileError as exc:
            assert not data.strip() or data.strip() not in exc.reason
