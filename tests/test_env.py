import pytest
from django.core.exceptions import ImproperlyConfigured

from kmconsole import env


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("", False)],
)
def test_it_parses_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("KM_FLAG", raw)
    assert env.env_bool("KM_FLAG") is expected


def test_it_rejects_a_bad_boolean_naming_the_variable(monkeypatch):
    monkeypatch.setenv("KM_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="KM_FLAG"):
        env.env_bool("KM_FLAG")


def test_it_rejects_a_bad_int_and_bounds(monkeypatch):
    monkeypatch.setenv("KM_N", "ten")
    with pytest.raises(ImproperlyConfigured, match="KM_N must be a whole number"):
        env.env_int("KM_N", 1)
    monkeypatch.setenv("KM_N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.env_int("KM_N", 5, minimum=1)


def test_it_reads_file_secrets(monkeypatch, tmp_path):
    secret = tmp_path / "s"
    secret.write_text("hunter2\n")
    monkeypatch.setenv("KM_SECRET_FILE", str(secret))
    assert env.env_str("KM_SECRET") == "hunter2"


def test_it_rejects_a_url_without_echoing_it(monkeypatch):
    monkeypatch.setenv("KM_URL", "not a url with password")
    with pytest.raises(ImproperlyConfigured) as info:
        env.env_url("KM_URL")
    assert "password" not in str(info.value)


def test_it_parses_lists(monkeypatch):
    monkeypatch.setenv("KM_HOSTS", " a.example , b.example,,")
    assert env.env_list("KM_HOSTS") == ["a.example", "b.example"]
