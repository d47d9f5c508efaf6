"""The benchmark's reading of one named thread's CPU (the stream loop's, in a worker)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from bench.proctree import named_thread_cpu
from workers.engine import name_native_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and thread names: Linux")

BURN_SECONDS = 0.05


def test_the_cpu_of_a_named_thread_is_read_apart_from_the_other_threads() -> None:
    named = threading.Event()
    finish = threading.Event()

    def burn() -> None:
        name_native_thread("bench-burn")
        start = time.thread_time()
        while time.thread_time() - start < BURN_SECONDS:
            pass
        named.set()
        finish.wait()

    thread = threading.Thread(target=burn)
    thread.start()
    try:
        assert named.wait(10)
        readings = named_thread_cpu([os.getpid()], "bench-burn")
    finally:
        finish.set()
        thread.join()
    assert list(readings) == [thread.native_id]
    assert BURN_SECONDS <= readings[thread.native_id] < BURN_SECONDS + 1.0
    assert named_thread_cpu([os.getpid()], "no-such-thread") == {}
