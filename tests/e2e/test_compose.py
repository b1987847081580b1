"""docker-compose.yml is valid, and the image it builds serves the demo page.

``docker compose config`` (the v2 plugin) when the docker CLI has it, else Debian's
``docker-compose`` (v1.29, installed by scripts/ensure-e2e-deps.sh); neither needs a
Docker daemon to validate and normalise the file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import ROOT

STATIC_IN_IMAGE = "/usr/share/stomp-gateway/static"


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def compose(*args: str, file: str = "docker-compose.yml") -> str:
    """``docker compose -f FILE ARGS`` in the project root; its stdout (skips without
    a compose command, fails on a non-zero exit)."""
    command = compose_command()
    if command is None:
        pytest.skip(
            "E2E SKIPPED: neither `docker compose` nor `docker-compose` is installed "
            "(Debian package docker-compose): run scripts/ensure-e2e-deps.sh"
        )
    result = subprocess.run(
        [*command, "-f", file, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)} {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_docker_compose_config_is_valid() -> None:
    assert set(compose("config", "--services").split()) == {"rabbitmq", "gateway"}
    normalised = compose("config")
    assert re.search(r"published: \"?15674\"?", normalised), normalised
    assert re.search(r"published: \"?15672\"?", normalised), normalised
    assert "GATEWAY_AMQP_URL: amqp://rabbitmq:5672/" in normalised
    assert "condition: service_healthy" in normalised
    assert f"{ROOT}/config/gateway.toml:/etc/stomp-gateway/gateway.toml:ro" in normalised


def test_image_ships_the_demo() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"COPY static {STATIC_IN_IMAGE}\n" in dockerfile
    assert f"ENV GATEWAY_STATIC_DIR={STATIC_IN_IMAGE}\n" in dockerfile
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not {"static", "static/", "static/**", "**/static"} & set(ignored)


async def test_gateway_serves_the_directory_named_by_static_dir(
    gateway_factory: object, tmp_path: Path
) -> None:
    """What the image relies on: GATEWAY_STATIC_DIR points the gateway at the demo."""
    from gateway.settings import Settings

    assert "static_dir" in Settings.model_fields, (
        "gateway/settings.py has no static_dir setting: the image's GATEWAY_STATIC_DIR "
        "would be ignored and / would answer 404 (installed wheels have no static/)"
    )
    (tmp_path / "index.html").write_text("<p>image demo</p>")
    handle = await gateway_factory(static_dir=str(tmp_path))  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{handle.port}", timeout=5) as c:
        page = await c.get("/")
        repo_demo = await c.get("/app.js")  # the repository's static/ is not served
    assert (page.status_code, page.text) == (200, "<p>image demo</p>")
    assert repo_demo.status_code == 404
