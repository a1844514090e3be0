"""The benchmarks' CPU account: JVM threads by role, and a measured process tree's Python."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.cpu import CpuAccount, _role, summed


def test_jvm_threads_are_counted_by_role():
    names = {
        "Executor task l": "tasks",
        "C2 CompilerThre": "jit",
        "C1 CompilerThre": "jit",
        "GC Thread#1": "gc",
        "G1 Conc#0": "gc",
        "VM Thread": "gc",
        "Thread-4": "driverCalls",
        "s0-io-1": "cassandraDriverIo",
        "dag-scheduler-e": "other",
    }
    assert {name: _role(name) for name in names} == names


def test_the_cpu_of_a_process_tree_is_accounted():
    busy = "import time\nend = time.process_time() + 3\nwhile time.process_time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    with CpuAccount(proc.pid) as cpu:
        proc.wait()
    assert cpu.figures["python"] >= 1.5  # sampled every second: the last second may be lost
    assert cpu.figures["jvm"]["total"] == 0 and cpu.figures["cores"] >= 1
    assert summed(cpu.figures, cpu.figures)["python"] == 2 * cpu.figures["python"]


def test_only_what_was_spent_after_enter_counts():
    busy = (
        "import sys, time\n"
        "end = time.process_time() + 2\n"
        "while time.process_time() < end: pass\n"
        "sys.stdin.readline()\n"  # idle until told to go on, then busy once more
        "end = time.process_time() + 1\n"
        "while time.process_time() < end: pass\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", busy], stdin=subprocess.PIPE)
    time.sleep(2.5)  # the first busy part is over: spent before the account starts
    with CpuAccount(proc.pid) as cpu:
        assert proc.stdin is not None
        proc.stdin.write(b"\n")
        proc.stdin.close()
        time.sleep(1.6)  # a reading of the second part is taken while the process runs
        proc.wait()
    assert 0.5 <= cpu.figures["python"] < 1.5
