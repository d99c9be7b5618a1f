"""docker-compose.yml validates and keeps the deployment's invariants."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_it_validates_docker_compose_yml():
    compose = _compose()
    if compose is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    result = subprocess.run([*compose, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "service_completed_successfully" in config
    assert "--maxmemory-policy" in config and "noeviction" in config and "--appendonly" in config


def test_it_runs_exactly_one_beat_and_a_one_shot_migrate():
    text = (ROOT / "docker-compose.yml").read_text()
    beat = text.split("\n  beat:\n", 1)[1].split("\n\n", 1)[0]
    assert "replicas: 1" in beat
    migrate = text.split("\n  migrate:\n", 1)[1].split("\n\n", 1)[0]
    assert 'restart: "no"' in migrate and "migrate" in migrate
