"""Pointing the console at the sandbox for the demo."""

from __future__ import annotations

import pytest
import requests

from vpp import secrets
from vpp.models import VppServerSetting
from vpp.sandbox.demo import demo_connect

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]


def test_it_stores_an_encrypted_demo_token_the_sandbox_accepts(vpp_sandbox):
    assert demo_connect(api_base_url=vpp_sandbox.base_url)
    setting = VppServerSetting.load()
    assert setting.api_base_url == vpp_sandbox.base_url
    token = secrets.decrypt(setting.content_token_encrypted)
    assert token not in setting.content_token_encrypted
    assert setting.token_org_name == "Demo Organisation"
    response = requests.get(
        vpp_sandbox.base_url + "/client/config", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200


def test_it_keeps_the_token_when_already_connected_to_the_same_sandbox(vpp_sandbox):
    demo_connect(api_base_url=vpp_sandbox.base_url)
    first = VppServerSetting.load().content_token_encrypted
    demo_connect(api_base_url=vpp_sandbox.base_url)
    assert VppServerSetting.load().content_token_encrypted == first


def test_it_never_replaces_a_real_token_unless_forced():
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt("real-token")
    setting.api_base_url = ""  # Apple production
    setting.save()
    assert not demo_connect(api_base_url="http://127.0.0.1:1/mdm/v2")
    assert secrets.decrypt(VppServerSetting.load().content_token_encrypted) == "real-token"
    assert demo_connect(api_base_url="http://127.0.0.1:1/mdm/v2", force=True)
    assert VppServerSetting.load().api_base_url == "http://127.0.0.1:1/mdm/v2"


def test_it_plans_the_sandbox_child_for_make_run(settings, tmp_path):
    from vpp.sandbox.demo import demo_sandbox_plan, port_or_free

    settings.VAR_DIR = tmp_path
    settings.VPP_SANDBOX_PORT = port_or_free(0)
    settings.VPP_SANDBOX_APNS_PORT = 0
    plan = demo_sandbox_plan(environ={})
    assert plan.api_base_url == f"http://127.0.0.1:{settings.VPP_SANDBOX_PORT}/mdm/v2"
    assert plan.argv[2:5] == ["vpp_sandbox", "--host", "127.0.0.1"]
    assert str(tmp_path / "sandbox.json") in plan.argv
    assert plan.env["APNS_HOST"] == plan.apns_url
    assert plan.env["VPP_EVENT_POLL_INTERVAL"] == "1"
    assert demo_sandbox_plan(environ={"APNS_HOST": "https://api.push.apple.com"}).env.get("APNS_HOST") is None


def test_it_moves_to_a_free_port_when_the_fixed_one_is_taken():
    import socket

    from vpp.sandbox.demo import port_or_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert port_or_free(taken) != taken


def test_it_leaves_the_sandbox_out_when_turned_off(settings):
    from vpp.sandbox.demo import demo_sandbox_plan

    settings.VPP_SANDBOX = False
    assert demo_sandbox_plan() is None


def test_it_runs_the_sandbox_in_docker_compose_only_under_the_demo_profile():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docker-compose.yml").read_text()
    block = text.split("\n  sandbox:\n", 1)[1].split("\n\n", 1)[0]
    assert 'profiles: ["demo"]' in block
    assert '"vpp.sandbox"' in block and "/app/var/sandbox.json" in block
    assert "sandbox-data:/app/var" in block
