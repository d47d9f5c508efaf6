"""CPU time and memory of whole process trees, read from ``/proc`` while a benchmark runs.

A tree is every process in the session its root leads (the root was started with
``start_new_session``), so pool children forked later are counted too. CPU is utime + stime;
a process that exits between samples loses only its last interval. Memory is read two ways:
RSS summed counts a page shared by a prefork parent and its children once per process; PSS
(proportional set size) splits each shared page among its sharers, so its sum is what the
trees take of the machine.

Sampling shares the two cores with the service it measures, so it is kept light: CPU and RSS
of the known processes every 0.2 s (``/proc/PID/stat``: about 0.3 ms), and only every second a
scan of ``/proc`` for new processes and the PSS, which the kernel adds up page table by page
table (``smaps_rollup``: 22 ms of CPU for the Procfile workers). Doing both every 0.2 s took
the benchmark about an eighth of a core, beside the workers under test.

One named thread's CPU (the stream loop, ``workers.engine.LOOP_THREAD_NAME``) is read apart, from
the scheduler's own clock (``/proc/PID/task/TID/schedstat``, nanoseconds); utime and stime are
sampled by the tick and charged whole to whichever thread is running, which blurs threads that
take turns on one interpreter lock.
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
SCAN_EVERY = 5
"""Samples between two scans of ``/proc`` (new processes) and of PSS."""


def pss_bytes(pid: int) -> int:
    """The process's proportional set size (0 once it has exited)."""
    try:
        rollup = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0
    line = next(line for line in rollup.splitlines() if line.startswith("Pss:"))
    return int(line.split()[1]) * 1024


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(session id, cpu seconds, rss bytes) of a process, None once it has exited."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may itself hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) * TICK_SECONDS
    return int(fields[3]), cpu, int(fields[21]) * PAGE_BYTES


def sessions(leaders: Iterable[int]) -> dict[int, tuple[int, float, int]]:
    """``{pid: (leader, cpu seconds, rss bytes)}`` of every process in the leaders' sessions."""
    wanted = set(leaders)
    found: dict[int, tuple[int, float, int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] in wanted:
            found[int(entry.name)] = stat
    return found


def known(pids: Iterable[int]) -> dict[int, tuple[int, float, int]]:
    """The same for processes already found (those still running)."""
    return {pid: stat for pid in pids if (stat := _stat(pid))}


def named_thread_cpu(pids: Iterable[int], name: str) -> dict[int, float]:
    """``{thread id: cpu seconds}`` of the threads called ``name`` in these processes."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            tasks = list((PROC / str(pid) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                if (task / "comm").read_text().strip() == name:
                    found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
            except OSError:
                continue
    return found


def _memory(found: dict[int, tuple[int, float, int]]) -> tuple[int, int]:
    """(RSS, PSS) summed over the processes ``sessions`` found."""
    return sum(rss for _, _, rss in found.values()), sum(map(pss_bytes, found))


class TreeSampler:
    """``with TreeSampler(pids) as usage:`` then ``usage.cpu_seconds`` (and per tree,
    ``usage.cpu_by_leader``), ``usage.peak_rss`` and ``usage.peak_pss``; with ``thread``,
    ``usage.thread_cpu_seconds`` of the threads of that name."""

    def __init__(self, leaders: Iterable[int], *, thread: str | None = None) -> None:
        self.leaders = list(leaders)
        self.thread = thread
        self.thread_cpu_seconds = 0.0
        self._thread_start: dict[int, float] = {}
        self._thread_last: dict[int, float] = {}
        self.cpu_seconds = 0.0
        self.cpu_by_leader: dict[int, float] = {}
        self.peak_rss = 0
        self.peak_pss = 0
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._leader: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def idle_memory(self) -> tuple[int, int]:
        """(RSS, PSS) bytes right now (before the load: what the trees hold at rest)."""
        return _memory(sessions(self.leaders))

    def _sample(self, scan: bool) -> None:
        """CPU and RSS of the known processes; with ``scan``, new processes and PSS too."""
        if scan:
            found = sessions(self.leaders)
            rss, pss = _memory(found)
            self.peak_pss = max(self.peak_pss, pss)
            self._read_thread(found)
        else:
            found = known(self._last)
            rss = sum(rss for _, _, rss in found.values())
        self.peak_rss = max(self.peak_rss, rss)
        self._last.update({pid: cpu for pid, (_, cpu, _) in found.items()})
        self._leader.update({pid: leader for pid, (leader, _, _) in found.items()})

    def _read_thread(self, found: Iterable[int]) -> None:
        """The named threads' CPU now (a thread that ends keeps its last reading)."""
        if self.thread is not None:
            self._thread_last.update(named_thread_cpu(found, self.thread))

    def _run(self) -> None:
        samples = 0
        while not self._done.wait(SAMPLE_SECONDS):
            samples += 1
            self._sample(scan=samples % SCAN_EVERY == 0)

    def __enter__(self) -> TreeSampler:
        found = sessions(self.leaders)
        self._start = {pid: cpu for pid, (_, cpu, _) in found.items()}
        self._leader = {pid: leader for pid, (leader, _, _) in found.items()}
        self._last = dict(self._start)
        self._read_thread(found)
        self._thread_start = dict(self._thread_last)
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
        self._sample(scan=True)
        for pid, cpu in self._last.items():
            leader = self._leader[pid]
            spent = cpu - self._start.get(pid, 0.0)
            self.cpu_by_leader[leader] = self.cpu_by_leader.get(leader, 0.0) + spent
        self.cpu_seconds = sum(self.cpu_by_leader.values())
        self.thread_cpu_seconds = sum(
            cpu - self._thread_start.get(tid, 0.0) for tid, cpu in self._thread_last.items()
        )
