"""docker-compose for real: the image from a local base, every service healthy, a turn through
the gateway (official OpenAI SDK) and one through the client, Flower behind its password.

Skipped with the reason when no Docker engine answers. Every service runs on the host's network
(docker-compose.test.yml) at free loopback ports; everything is torn down afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.deploy.docker import ROOT, bridges, build_image, docker, unavailable
from tokenwindow.client import TokenManagementClient
from tokenwindow.models import OFFLINE_MODEL
from workers.embedded_redis import free_port

REASON = unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]
SERVICES = ("redis", "worker_fast", "worker_llm", "worker_summarize", "flower", "web")
HEALTHY_TIMEOUT_SECONDS = 300.0


@dataclass
class Compose:
    project: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 600) -> str:
        files = ["-f", "docker-compose.yml", "-f", "docker-compose.test.yml", "-p", self.project]
        result = subprocess.run(
            ["docker-compose", *files, *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def port(self, name: str) -> int:
        return int(self.env[name])

    def health(self) -> dict[str, str]:
        """Each service's health, from the engine (docker-compose itself costs half a CPU-second
        a call, and this is polled every 2 s)."""
        label = f"label=com.docker.compose.project={self.project}"
        ids = docker("ps", "--all", "--quiet", "--filter", label).split()
        states = json.loads(docker("inspect", *ids)) if ids else []
        return {
            s["Config"]["Labels"]["com.docker.compose.service"]: s["State"]
            .get("Health", {})
            .get("Status", s["State"]["Status"])
            for s in states
        }


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    image = build_image()
    env = {
        "TOKENWINDOW_IMAGE": image,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "WEB_PORT": str(free_port()),
        "FLOWER_LISTEN": "127.0.0.1",
        "WEB_LISTEN": "127.0.0.1",
        "FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(12)}",
        "TOKENWINDOW_GATEWAY_API_KEYS": secrets.token_urlsafe(16),
        "FAST_CONCURRENCY": "1",
        "LLM_CONCURRENCY": "2",
    }
    stack = Compose(f"twtest{uuid.uuid4().hex[:8]}", env)
    networks = docker("network", "ls", "-q")
    try:
        stack.run("up", "-d", "--no-build")
        deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
        while (health := stack.health()) != dict.fromkeys(SERVICES, "healthy"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"services not healthy: {health}\n{stack.run('logs')}")
            time.sleep(2)
        assert docker("network", "ls", "-q") == networks, "compose created a network"
        assert bridges() == [], "a bridge interface appeared"
        yield stack
    finally:
        stack.run("down", "-v", "--remove-orphans")


def test_every_service_is_healthy_on_the_host_network(compose: Compose) -> None:
    assert compose.health() == dict.fromkeys(SERVICES, "healthy")


def test_a_turn_through_the_gateway_with_the_openai_sdk(compose: Compose) -> None:
    key = compose.env["TOKENWINDOW_GATEWAY_API_KEYS"]
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{compose.port('WEB_PORT')}/v1", api_key=key, max_retries=0
    )
    reply = client.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[{"role": "user", "content": "Say something about containers."}],
        extra_headers={"X-Session-Id": f"compose-{uuid.uuid4().hex[:8]}"},
    )
    assert reply.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=client.base_url, api_key="wrong", max_retries=0
        ).chat.completions.create(model=OFFLINE_MODEL, messages=[{"role": "user", "content": "x"}])


def test_a_turn_through_the_client(compose: Compose) -> None:
    async def run() -> dict[str, object]:
        url = f"redis://127.0.0.1:{compose.port('REDIS_PORT')}/0"
        async with TokenManagementClient(url) as client:
            return await client.create_completion(
                f"compose-{uuid.uuid4().hex[:8]}",
                [{"role": "user", "content": "hello from the client"}],
                OFFLINE_MODEL,
                timeout=60,
            )

    assert asyncio.run(run())["content"]


def test_flower_asks_for_a_password(compose: Compose) -> None:
    url = f"http://127.0.0.1:{compose.port('FLOWER_PORT')}/"
    assert httpx.get(url, timeout=10).status_code == 401
    user, password = compose.env["FLOWER_BASIC_AUTH"].split(":", 1)
    assert httpx.get(url, auth=(user, password), timeout=10).status_code == 200
