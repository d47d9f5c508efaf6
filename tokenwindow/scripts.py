"""Lua scripts called by SHA, alone or inside a pipeline, without extra round trips.

redis-py's ``Script`` asks ``SCRIPT EXISTS`` before every pipeline that holds one: a round trip
per pipeline. Here a script is loaded once; a ``NOSCRIPT`` reply (a restarted or flushed Redis)
loads it again and re-runs only the script. A Redis Cluster client refuses scripts inside a
pipeline: there the other commands go in their own pipeline and the script alone (and several
calls run concurrently).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

Along = Callable[[Any], None]
"""Adds other commands to a script's pipeline, to share its round trip: ``along`` ahead of the
script, ``then`` after it (sent again after a ``NOSCRIPT`` re-run, so they must be repeatable)."""
Args = Sequence[str | int | float]


def _is_noscript(result: object) -> bool:
    return isinstance(result, redis.exceptions.NoScriptError)


class SyncScript:
    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self._sha: str | None = None

    def _load(self) -> str:
        self._sha = str(self.client.script_load(self.source))
        return self._sha

    def __call__(
        self,
        keys: Sequence[str],
        args: Args,
        *,
        along: Along | None = None,
        then: Along | None = None,
    ) -> Any:
        sha = self._sha or self._load()
        if isinstance(self.client, redis.cluster.RedisCluster):
            self._pipelined(along)
            try:
                result = self.client.evalsha(sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                result = self.client.evalsha(self._load(), len(keys), *keys, *args)
            self._pipelined(then)
            return result
        pipe = self.client.pipeline(transaction=False)
        if along is not None:
            along(pipe)
        at = len(pipe)
        pipe.evalsha(sha, len(keys), *keys, *args)
        if then is not None:
            then(pipe)
        results = pipe.execute(raise_on_error=False)
        result = results[at]
        if _is_noscript(result):
            result = self.client.evalsha(self._load(), len(keys), *keys, *args)
            self._pipelined(then)
        if isinstance(result, Exception):
            raise result
        return result

    def many(self, calls: Sequence[tuple[Sequence[str], Args, Along | None]]) -> list[Any]:
        """Many calls, each after its own ``along`` commands, in one round trip (one per call
        on Redis Cluster). Results in order; a call that failed in Redis has its error in its
        place, so one bad key does not hide the other results. Connection errors are raised."""
        if isinstance(self.client, redis.cluster.RedisCluster):
            return [self._returning_error(keys, args, along) for keys, args, along in calls]
        sha = self._sha or self._load()
        pipe = self.client.pipeline(transaction=False)
        at: list[int] = []
        for keys, args, along in calls:
            if along is not None:
                along(pipe)
            at.append(len(pipe))
            pipe.evalsha(sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        results = [replies[i] for i in at]
        if missing := [n for n, result in enumerate(results) if _is_noscript(result)]:
            sha = self._load()
            pipe = self.client.pipeline(transaction=False)
            for n in missing:
                keys, args, _ = calls[n]
                pipe.evalsha(sha, len(keys), *keys, *args)
            for n, result in zip(missing, pipe.execute(raise_on_error=False), strict=True):
                results[n] = result
        return results

    def _returning_error(self, keys: Sequence[str], args: Args, along: Along | None) -> Any:
        try:
            return self(keys, args, along=along)
        except redis.exceptions.ResponseError as exc:
            return exc

    def _pipelined(self, commands: Along | None) -> None:
        if commands is not None:
            pipe = self.client.pipeline(transaction=False)
            commands(pipe)
            pipe.execute()


class AsyncScript:
    def __init__(self, client: redis.asyncio.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self._sha: str | None = None

    async def sha(self, *, reload: bool = False) -> str:
        if self._sha is None or reload:
            self._sha = str(await self.client.script_load(self.source))
        return self._sha

    async def __call__(self, keys: Sequence[str], args: Args) -> Any:
        try:
            return await self.client.evalsha(await self.sha(), len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await self.client.evalsha(await self.sha(reload=True), len(keys), *keys, *args)

    @property
    def on_cluster(self) -> bool:
        """True on Redis Cluster, where one call may only name keys of one slot."""
        return isinstance(self.client, redis.asyncio.cluster.RedisCluster)

    async def many(self, calls: Sequence[tuple[Sequence[str], Args]]) -> list[Any]:
        """One pipelined round trip of many calls; results in order, errors raised."""
        if self.on_cluster:
            return list(await asyncio.gather(*(self(keys, args) for keys, args in calls)))
        pending = list(range(len(calls)))
        results: list[Any] = [None] * len(calls)
        reload = False
        for _ in range(2):
            sha = await self.sha(reload=reload)
            pipe = self.client.pipeline(transaction=False)
            for i in pending:
                keys, args = calls[i]
                pipe.evalsha(sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            for i, reply in zip(pending, replies, strict=True):
                results[i] = reply
            pending = [i for i in pending if _is_noscript(results[i])]
            if not pending:
                break
            reload = True
        for reply in results:
            if isinstance(reply, Exception):
                raise reply
        return results
