"""Stateless requests: a request's own messages fitted to the model's window.

A request that names no session is fitted with the machinery a session's window uses
(``workers.compressor.Compression``: the configured strategy and summarizer, then the
extractive summarizer, then the failsafe), down to the same target once it is over the hard
threshold. A summary made here is cached under the digest of the messages it stands for, so the
next request that starts with the same messages (the same conversation a turn later) reuses it
instead of summarizing again.

Cache: ``tw:stateless:summary:{digest}`` -> the summary text, kept
``TOKENWINDOW_STATELESS_SUMMARY_TTL_SECONDS`` (renewed on reuse). ``digest`` is the hex SHA-256
chain over the canonical JSON of each message of the summarized prefix, model-independent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import redis.asyncio

from strategies.summary import summary_message
from tokenwindow.constants import KEY_PREFIX
from tokenwindow.counting import counter_for
from tokenwindow.messages import Message
from tokenwindow.models import get_registry
from tokenwindow.settings import Settings
from tokenwindow.window import window_for
from workers.compressor import Compression


def summary_key(digest: str) -> str:
    """String: a summary of the messages whose prefix digest is ``digest``."""
    return f"{KEY_PREFIX}:stateless:summary:{digest}"


def prefix_digests(messages: list[Message]) -> list[str]:
    """``digests[i]`` identifies ``messages[: i + 1]``: each digest hashes the previous one."""
    digests, previous = [], b""
    for message in messages:
        canonical = json.dumps(message, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        previous = hashlib.sha256(previous + canonical.encode()).digest()
        digests.append(previous.hex())
    return digests


def leading_system(messages: list[Message]) -> list[Message]:
    head = []
    for message in messages:
        if message["role"] != "system":
            break
        head.append(message)
    return head


class StatelessFitter:
    """Fits stateless requests, reusing cached summaries of their prefixes."""

    def __init__(self, store: redis.asyncio.Redis, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def fit(self, model: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages as they are when under the hard threshold, else a fitted window."""
        spec = get_registry().get(model)
        counter = counter_for(spec)
        window = window_for(spec, self.settings)
        typed: list[Message] = messages  # type: ignore[assignment]
        # Counting and hashing a resent history of megabytes is CPU work: off the event loop.
        if await asyncio.to_thread(counter.count_messages, typed) <= window.hard:
            return messages
        digests = await asyncio.to_thread(prefix_digests, typed)
        found = await self.store.mget([summary_key(d) for d in digests])
        upto = max((i + 1 for i, text in enumerate(found) if text), default=0)
        working, offset = typed, 0
        if upto:
            head = leading_system(typed[:upto])
            working = [*head, summary_message(str(found[upto - 1])), *typed[upto:]]
            offset = upto - len(head) - 1
            await self.store.expire(summary_key(digests[upto - 1]), self.ttl)
            if await asyncio.to_thread(counter.count_messages, working) <= window.hard:
                return list(working)  # type: ignore[arg-type]
        compression = Compression(
            working,
            strategy=self.settings.default_strategy,
            budget=window.target,
            counter=counter,
            provider=spec.provider,
            settings=self.settings,
        )
        result = await asyncio.to_thread(compression.run)
        summarized = result.kept_from + offset
        if result.summary and not result.failsafe and 0 < summarized <= len(digests):
            await self.store.set(summary_key(digests[summarized - 1]), result.summary, ex=self.ttl)
        return list(result.messages)  # type: ignore[arg-type]

    @property
    def ttl(self) -> int:
        return self.settings.stateless_summary_ttl_seconds
