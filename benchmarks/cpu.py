"""Where a process's CPU goes, beside the stack's servers: the figure that says what bounds a
run on a machine whose cores are all busy.

Over the life of a measured process tree: the CPU-seconds of each thread of its JVM by role (the
tasks, the JIT compilers, the garbage collector, the driver's calls from Python, the Cassandra
driver's I/O), of its Python processes, of the local Cassandra and Kafka servers, and the
machine's idle CPU-seconds. Linux only (``/proc``); threads are sampled every second and each
keeps its last reading, so a thread that ended between two samples loses at most a second.

Example::

    with CpuAccount(proc.pid) as cpu:
        proc.wait()
    cpu.figures  # {"jvm": {"tasks": 91.6, "jit": 53.3, ...}, "cassandra": 139.0, "idle": 17.0}
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import psutil

from devkit.paths import STACK_DIR

TICKS = os.sysconf("SC_CLK_TCK")
# JVM thread names (as /proc shows them, 15 characters) by role
ROLES = [
    ("tasks", re.compile(r"^Executor task")),
    ("jit", re.compile(r"^C\d CompilerThre")),
    ("gc", re.compile(r"^(GC Thread|G1 |VM Thread|ParGC|PSYoung|VM Periodic)")),
    ("driverCalls", re.compile(r"^Thread-\d+")),  # py4j: Python's calls, planning included
    ("cassandraDriverIo", re.compile(r"^s\d+-(io|admin|timer)")),
]


def _role(name: str) -> str:
    return next((role for role, pattern in ROLES if pattern.search(name)), "other")


def _server_pid(name: str) -> int | None:
    pid_file = STACK_DIR / "run" / f"{name}.pid"  # written by stack/stack.sh
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _process_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _idle_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / TICKS  # idle + iowait, every core


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    seen: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seen[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return seen


class CpuAccount:
    """CPU-seconds of a process tree's JVM threads by role and of its Python processes, of the
    stack's Cassandra and Kafka, and the machine's idle, from ``__enter__`` to ``__exit__``."""

    def __init__(self, root: int) -> None:
        self._root = root
        self._jvm_threads: dict[int, tuple[str, float]] = {}
        self._python: dict[int, float] = {}
        self._servers = {name: _server_pid(name) for name in ("cassandra", "kafka")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.figures: dict[str, Any] = {}

    def _sample(self) -> None:
        try:
            tree = [psutil.Process(self._root), *psutil.Process(self._root).children(True)]
        except psutil.Error:
            return
        for proc in tree:
            try:
                name = proc.name()
                if "java" in name:
                    self._jvm_threads.update(_threads(proc.pid))
                elif "python" in name:
                    times = proc.cpu_times()
                    self._python[proc.pid] = times.user + times.system
            except (psutil.Error, OSError):
                continue

    def _since_enter(self) -> tuple[dict[str, float], float]:
        """JVM CPU by role and Python CPU spent after ``__enter__`` (readings are totals since
        each thread or process started)."""
        jvm: dict[str, float] = {role: 0.0 for role, _ in ROLES} | {"other": 0.0}
        for tid, (name, seconds) in self._jvm_threads.items():
            jvm[_role(name)] += seconds - self._jvm_base.get(tid, 0.0)
        jvm["total"] = sum(jvm.values())
        python = sum(s - self._python_base.get(pid, 0.0) for pid, s in self._python.items())
        return jvm, python

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def __enter__(self) -> CpuAccount:
        self._start = {name: _process_seconds(pid) for name, pid in self._servers.items()}
        self._idle = _idle_seconds()
        self._sample()  # what the tree had spent before: subtracted at the end
        self._jvm_base = {tid: seconds for tid, (_, seconds) in self._jvm_threads.items()}
        self._python_base = dict(self._python)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the last reading of a tree still running (an in-process account)
        jvm, python = self._since_enter()
        self.figures = {
            "jvm": {role: round(seconds, 1) for role, seconds in jvm.items()},
            "python": round(python, 1),
            **{
                name: round(_process_seconds(pid) - self._start[name], 1)
                for name, pid in self._servers.items()
            },
            "idle": round(_idle_seconds() - self._idle, 1),
            "cores": psutil.cpu_count(),
        }


def summed(*accounts: dict[str, Any]) -> dict[str, Any]:
    """The figures of several accounts of one process, added up (e.g. two timed parts)."""
    total: dict[str, Any] = {}
    for figures in accounts:
        for key, value in figures.items():
            if isinstance(value, dict):
                total[key] = summed(total.get(key, {}), value)
            elif key == "cores":
                total[key] = value
            else:
                total[key] = round(total.get(key, 0.0) + value, 1)
    return total
