"""CPU time and memory of whole process trees, read from ``/proc`` while a benchmark runs.

A tree is every process in the session its root leads (the root was started with
``start_new_session``), so pool children forked later are counted too. CPU is utime + stime;
a process that exits between samples loses only its last interval. Memory is read two ways:
RSS summed counts a page shared by a prefork parent and its children once per process; PSS
(proportional set size) splits each shared page among its sharers, so its sum is what the
trees take of the machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
TICK_SECONDS = 1 / os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
SAMPLE_SECONDS = 0.2


def pss_bytes(pid: int) -> int:
    """The process's proportional set size (0 once it has exited)."""
    try:
        rollup = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0
    line = next(line for line in rollup.splitlines() if line.startswith("Pss:"))
    return int(line.split()[1]) * 1024


def sessions(leaders: Iterable[int]) -> dict[int, tuple[float, int]]:
    """``{pid: (cpu seconds, rss bytes)}`` of every process in the leaders' sessions."""
    wanted = set(leaders)
    found: dict[int, tuple[float, int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # Fields after the command name, which may itself hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) in wanted:
            cpu = (int(fields[11]) + int(fields[12])) * TICK_SECONDS
            found[int(entry.name)] = (cpu, int(fields[21]) * PAGE_BYTES)
    return found


def _memory(found: dict[int, tuple[float, int]]) -> tuple[int, int]:
    """(RSS, PSS) summed over the processes ``sessions`` found."""
    return sum(rss for _, rss in found.values()), sum(map(pss_bytes, found))


class TreeSampler:
    """``with TreeSampler(pids) as usage:`` then ``usage.cpu_seconds``, ``usage.peak_rss`` and
    ``usage.peak_pss``."""

    def __init__(self, leaders: Iterable[int]) -> None:
        self.leaders = list(leaders)
        self.cpu_seconds = 0.0
        self.peak_rss = 0
        self.peak_pss = 0
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def idle_memory(self) -> tuple[int, int]:
        """(RSS, PSS) bytes right now (before the load: what the trees hold at rest)."""
        return _memory(sessions(self.leaders))

    def _sample(self) -> None:
        found = sessions(self.leaders)
        rss, pss = _memory(found)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self._last.update({pid: cpu for pid, (cpu, _) in found.items()})

    def _run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> TreeSampler:
        self._start = {pid: cpu for pid, (cpu, _) in sessions(self.leaders).items()}
        self._last = dict(self._start)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()
        self._sample()
        self.cpu_seconds = sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())
