"""Connections for the deployment's topology: standalone Redis, Redis Cluster or Sentinel.

Every Redis client and every Celery broker or result-backend address is built here from the
settings, so a process follows the topology the operator chose without knowing which one it is.

- Standalone: ``REDIS_URL``.
- Redis Cluster (``TOKENWINDOW_REDIS_CLUSTER=true``): ``REDIS_URL`` names any node; the client
  discovers the others and routes each key to its slot. Celery's broker and results stay off the
  cluster (``BROKER_URL``: RabbitMQ or a plain Redis).
- Sentinel (``TOKENWINDOW_SENTINELS``, ``TOKENWINDOW_SENTINEL_MASTER``): clients ask the
  sentinels for the current master and ask again after a failover; ``REDIS_URL`` still gives the
  database number and the master's password. A Redis broker uses kombu's ``sentinel://``
  transport with ``master_name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from kombu.entity import Exchange, Queue

from tokenwindow.constants import QUEUES
from tokenwindow.settings import Settings

SENTINEL_SOCKET_TIMEOUT_SECONDS = 0.5
"""How long one sentinel may take to answer before the next one is asked."""
QUORUM = {"x-queue-type": "quorum"}
"""RabbitMQ queue arguments of a quorum (replicated, Raft) queue."""


@dataclass(frozen=True)
class CeleryEndpoint:
    """A kombu connection: its URL and the transport options that go with it."""

    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)


def _master_options(url: str) -> dict[str, Any]:
    """Database, user and password of the master, taken from ``REDIS_URL``."""
    parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call,unused-ignore]
    return {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS}
    if settings.sentinel_password is not None:
        options["password"] = settings.sentinel_password.get_secret_value()
    return options


def sync_redis(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client for session state; ``options`` go to every connection.

    A cluster client is typed as ``redis.Redis``: it offers the same commands, routed by slot.
    """
    url = settings.redis_url
    if settings.sentinels:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            settings.sentinels, sentinel_kwargs=_sentinel_options(settings)
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
            str(settings.sentinel_master), **_master_options(url), **options
        )
        return master
    if settings.redis_cluster:
        return cast(redis.Redis, redis.cluster.RedisCluster.from_url(url, **options))
    return redis.Redis.from_url(url, **options)


def async_redis(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`sync_redis`."""
    url = settings.redis_url
    if settings.sentinels:
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            settings.sentinels, sentinel_kwargs=_sentinel_options(settings)
        )
        master: redis.asyncio.Redis = sentinel.master_for(
            str(settings.sentinel_master), **_master_options(url), **options
        )
        return master
    if settings.redis_cluster:
        client = redis.asyncio.cluster.RedisCluster.from_url(url, **options)
        return cast(redis.asyncio.Redis, client)
    return redis.asyncio.Redis.from_url(url, **options)


def _sentinel_url(settings: Settings) -> str:
    """kombu's form: one ``sentinel://`` URL per sentinel, joined by ``;``."""
    master = _master_options(settings.redis_url)
    auth = ""
    if "password" in master:
        auth = f"{quote(master.get('username', ''))}:{quote(master['password'])}@"
    db = master.get("db", 0)
    return ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in settings.sentinels)


def _sentinel_transport(settings: Settings) -> dict[str, Any]:
    return {
        "master_name": settings.sentinel_master,
        "sentinel_kwargs": _sentinel_options(settings),
    }


def celery_broker(settings: Settings) -> CeleryEndpoint:
    """Where tasks are sent: ``BROKER_URL``, else the Sentinel master, else ``REDIS_URL``."""
    if settings.broker_url:
        options = {"confirm_publish": True} if settings.broker_quorum_queues else {}
        if urlsplit(settings.broker_url).scheme == "sentinel":
            options |= _sentinel_transport(settings)
        return CeleryEndpoint(settings.broker_url, options)
    if settings.sentinels:
        return CeleryEndpoint(_sentinel_url(settings), _sentinel_transport(settings))
    return CeleryEndpoint(settings.redis_url)


def celery_result_backend(settings: Settings) -> CeleryEndpoint:
    """Where task results go: never a cluster (Celery's Redis backend needs one node)."""
    if settings.result_backend:
        url = settings.result_backend
    elif settings.sentinels:
        url = _sentinel_url(settings)
    elif settings.redis_cluster:
        # Settings validation guarantees a Redis broker here.
        url = str(settings.broker_url)
    else:
        url = settings.redis_url
    options = _sentinel_transport(settings) if urlsplit(url).scheme == "sentinel" else {}
    return CeleryEndpoint(url, options)


def celery_queues(settings: Settings) -> list[Queue]:
    """The task queues, declared alike by workers and producers (RabbitMQ refuses a mismatch).

    Quorum queues get topic exchanges: Celery's native delayed delivery (how countdowns work
    on quorum queues) cannot route through direct ones.
    """
    if not settings.broker_quorum_queues:
        return [Queue(name) for name in QUEUES]  # type: ignore[no-untyped-call,unused-ignore]
    return [
        Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments=QUORUM)  # type: ignore[no-untyped-call,unused-ignore]
        for name in QUEUES
    ]
