from __future__ import annotations

import pytest
import requests


class Api:
    """Tiny raw-HTTP helper: the sandbox's own tests don't use our client (it is tested against this)."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.http = requests.Session()

    def call(self, method: str, path: str, *, token: str | None = "default", **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token == "default":
            token = self.sandbox.token
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        return self.http.request(method, self.sandbox.base_url + path, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def ok(self, method: str, path: str, body=None, **kwargs) -> dict:
        response = (
            self.call(method, path, json=body, **kwargs) if body is not None else self.call(method, path, **kwargs)
        )
        assert response.status_code == 200, response.text
        data = response.json()
        assert "errorNumber" not in data, data
        return data

    def error(self, response: requests.Response, number: int, status: int) -> dict:
        assert (response.status_code, response.json().get("errorNumber")) == (status, number), response.text
        return response.json()

    def create(self, *users: dict, path: str = "/users/create") -> str:
        return self.ok("POST", path, {"users": list(users)})["eventId"]

    def finished(self, event_id: str, **kwargs) -> dict:
        """The event's status once it left PENDING (the fixture's sandbox finishes events at once)."""
        self.sandbox.advance()
        status = self.ok("GET", "/status", params={"eventId": event_id}, **kwargs)
        assert status["eventStatus"] != "PENDING"
        return status


@pytest.fixture
def api(vpp_sandbox) -> Api:
    return Api(vpp_sandbox)
