"""Admission on this machine: never more sessions at once than the host can hold.

A run holds up to ``subcalls.max_depth`` sandboxes at once (a child RLM per level), each with
``limits.memory_mb`` of memory (swap is set equal, so that is a ceiling the kernel enforces) and
``limits.cpus`` of CPU. A batch admits a task only while the memory of every admitted run fits in
the host's RAM less a reserve for the host itself, and the CPUs in its cores; ``--concurrency N``
caps the count lower. A task whose one run cannot fit at all is refused with the reason.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ..policy import Policy

HOST_RESERVE = 0.25  # of RAM kept for the host: Docker, the driver, the model server, the page cache
MIN_RESERVE_MB = 1024


def host_memory_mb() -> int:
    """This machine's RAM in MiB (``/proc/meminfo``'s MemTotal, else sysconf)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def host_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) or os.cpu_count() or 1


@dataclass(frozen=True)
class Need:
    """What one run of a policy may hold at once."""

    memory_mb: int
    cpus: float

    @classmethod
    def of(cls, policy: Policy) -> Need:
        depth = max(1, policy.subcalls.max_depth)
        return cls(policy.limits.memory_mb * depth, policy.limits.cpus * depth)


class Admission:
    """A gate for runs: ``admit(need)`` waits until the run fits beside those already admitted."""

    def __init__(self, *, concurrency: int | None = None, memory_mb: int | None = None,
                 cores: int | None = None) -> None:
        total = memory_mb if memory_mb is not None else host_memory_mb()
        self.memory_mb = max(0, total - max(MIN_RESERVE_MB, int(total * HOST_RESERVE)))
        self.cpus = float(cores if cores is not None else host_cores())
        self.concurrency = concurrency
        self._used_mb = 0
        self._used_cpus = 0.0
        self._running = 0
        self._cond = threading.Condition()

    def refusal(self, need: Need) -> str | None:
        """Why a run of this need can never be admitted here, or None."""
        if need.memory_mb > self.memory_mb:
            return (f"a run of this policy may hold {need.memory_mb:,} MiB (limits.memory_mb x subcalls.max_depth), "
                    f"more than the {self.memory_mb:,} MiB this host can give sessions")
        return None

    def slots(self, need: Need) -> int:
        """How many runs of this need fit at once."""
        by_memory = self.memory_mb // need.memory_mb if need.memory_mb else 1
        by_cpu = int(self.cpus // need.cpus) if need.cpus else 1
        fits = max(1, min(by_memory, max(1, by_cpu)))
        return min(fits, self.concurrency) if self.concurrency else fits

    def admit(self, need: Need, stop: threading.Event) -> bool:
        """Wait until ``need`` fits (or ``stop`` is set: False); the caller must ``release`` it."""
        with self._cond:
            while not stop.is_set():
                if self._fits(need):
                    self._used_mb += need.memory_mb
                    self._used_cpus += need.cpus
                    self._running += 1
                    return True
                self._cond.wait(0.5)
            return False

    def release(self, need: Need) -> None:
        with self._cond:
            self._used_mb -= need.memory_mb
            self._used_cpus -= need.cpus
            self._running -= 1
            self._cond.notify_all()

    def _fits(self, need: Need) -> bool:
        if self._running == 0:
            return True  # one run always goes, or nothing would (refusal() has ruled out the impossible)
        if self.concurrency is not None and self._running >= self.concurrency:
            return False
        cpu_ok = self._used_cpus + need.cpus <= self.cpus + 1e-9
        return self._used_mb + need.memory_mb <= self.memory_mb and cpu_ok
