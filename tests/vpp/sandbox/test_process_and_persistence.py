"""The sandbox as its own process: state file kept across a restart, reachable from other processes."""

from __future__ import annotations

import json

import pytest
import requests

pytestmark = pytest.mark.sandbox


def test_it_keeps_its_state_across_a_restart(vpp_sandbox_factory, tmp_path):
    state = tmp_path / "sandbox.json"
    first = vpp_sandbox_factory(subprocess=True, state_path=str(state))
    auth = {"Authorization": f"Bearer {first.token}"}
    response = requests.post(
        first.base_url + "/users/create", json={"users": [{"clientUserId": "kept"}]}, headers=auth, timeout=10
    )
    event_id = response.json()["eventId"]
    first.advance()
    before = requests.get(first.base_url + "/users", headers=auth, timeout=10).json()
    first.stop()
    assert json.loads(state.read_text())["schema"] == 1

    second = vpp_sandbox_factory(subprocess=True, state_path=str(state))
    after = requests.get(second.base_url + "/users", headers=auth, timeout=10).json()
    assert after["users"] == before["users"]
    assert after["versionId"] == before["versionId"]
    status = requests.get(second.base_url + "/status", params={"eventId": event_id}, headers=auth, timeout=10).json()
    assert status["eventStatus"] == "COMPLETE"


def test_it_leaves_no_temporary_files_next_to_the_state(vpp_sandbox_factory, tmp_path):
    state = tmp_path / "sandbox.json"
    sandbox = vpp_sandbox_factory(state_path=str(state))
    sandbox.control(page_size=3)  # options are not state: nothing to write
    requests.get(sandbox.base_url + "/users", headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=10)
    sandbox.stop()
    assert [p.name for p in tmp_path.iterdir()] == ["sandbox.json"]


def test_it_takes_start_up_options(vpp_sandbox_factory):
    sandbox = vpp_sandbox_factory(page_size=7, limits={"maxUsers": 5})
    assert sandbox.faults()["page_size"] == 7
    config = requests.get(sandbox.base_url + "/service/config", timeout=10).json()
    assert config["limits"]["maxUsers"] == 5
    sandbox.control(page_size=1)
    sandbox.reset()
    assert sandbox.faults()["page_size"] == 7


def test_it_serves_two_processes_at_once(vpp_sandbox):
    """Another process (as a Celery worker would) and this one create users concurrently."""
    import subprocess
    import sys
    import threading

    script = (
        "import requests, sys\n"
        "url, token = sys.argv[1], sys.argv[2]\n"
        "s = requests.Session()\n"
        "for i in range(40):\n"
        "    r = s.post(url + '/users/create', json={'users': [{'clientUserId': f'p{i}'}]},\n"
        "               headers={'Authorization': 'Bearer ' + token}, timeout=10)\n"
        "    assert r.status_code == 200, r.text\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, vpp_sandbox.base_url, vpp_sandbox.token])
    session = requests.Session()
    auth = {"Authorization": f"Bearer {vpp_sandbox.token}"}

    def here():
        for i in range(40):
            body = {"users": [{"clientUserId": f"t{i}"}]}
            assert session.post(vpp_sandbox.base_url + "/users/create", json=body, headers=auth, timeout=10).ok

    thread = threading.Thread(target=here)
    thread.start()
    thread.join()
    assert child.wait(timeout=60) == 0
    vpp_sandbox.advance()
    counters = vpp_sandbox.counters()
    assert (counters["create_calls"], counters["users_created"]) == (80, 80)
    assert len({u["clientUserId"] for u in vpp_sandbox.users()}) == 80
