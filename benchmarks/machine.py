"""What machine the benchmark ran on, and how much of its CPU something else was using meanwhile.

Benchmarks on a shared 2-core machine are only as good as the machine was quiet: ``CpuMeter`` counts the
CPU time every process *outside* the benchmark used during a measurement (from /proc), so each result says
how contended it was, and ``wait_for_quiet`` holds a measurement back while something else is busy.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PACKAGES = ("naltrexone-cds", "flask", "werkzeug", "gunicorn", "durable-rules", "jsonschema", "flask-cors")


def describe_machine() -> dict[str, Any]:
    cpu_model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        cpu_model = match.group(1).strip() if match else ""
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.M)
        memory_gib = round(int(match.group(1)) / 1024 / 1024, 1) if match else None
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model or platform.processor(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "packages": versions,
        "wrk": wrk_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def source_state(root: Path | None = None) -> dict[str, Any]:
    """The commit measured, and which of the service's files differ from it (a shared tree moves)."""
    root = root or Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return {"commit": None, "modified": None}

    def run(*args: str) -> str:
        return subprocess.run([git, *args], cwd=root, capture_output=True, text=True, check=False).stdout

    status = run("status", "--porcelain", "--", "cds_service", "rules", "openapi.yaml", "pyproject.toml")
    return {
        "commit": run("rev-parse", "HEAD").strip() or None,
        "subject": run("log", "-1", "--format=%s").strip() or None,
        "modified": [line[3:] for line in status.splitlines() if line.strip()],
    }


def _os_name() -> str:
    release = Path("/etc/os-release")
    if release.exists():
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', release.read_text(), re.M)
        if match:
            return match.group(1)
    return platform.platform()


def wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    completed = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].strip() if first else "unknown"


@dataclass(frozen=True)
class _Sample:
    wall: float
    busy_ticks: int
    steal_ticks: int
    ours_ticks: int


class CpuMeter:
    """CPU used by the machine, by the benchmark's own processes, and so by everything else."""

    def __init__(self, own_process_groups: Iterable[int] = ()) -> None:
        self.groups = set(own_process_groups)
        self._start: _Sample | None = None

    def add_group(self, pgid: int) -> None:
        self.groups.add(pgid)

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU used since ``start`` as percent of the whole machine (100% = every core busy)."""
        if self._start is None:
            raise RuntimeError("CpuMeter.stop without start")
        end = self._sample()
        return _usage(self._start, end)

    def _sample(self) -> _Sample:
        busy, steal = _machine_ticks()
        return _Sample(time.perf_counter(), busy, steal, self._own_ticks())

    def _own_ticks(self) -> int:
        total = 0
        me = os.getpid()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(int(entry.name))
            if fields is None:
                continue
            pid, pgrp = int(entry.name), int(fields[2])
            if pid == me:
                # this process, and the children it has reaped (wrk runs are over by the next sample)
                total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            elif pgrp in self.groups or _is_child_of(fields, me):
                total += int(fields[11]) + int(fields[12])
        return total


def _is_child_of(fields: list[str], parent: int) -> bool:
    return int(fields[1]) == parent


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], pgrp [2], utime [11])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as handle:
        parts = handle.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return user + nice + system + irq + softirq + steal, steal


def _usage(start: _Sample, end: _Sample) -> dict[str, float]:
    capacity = (end.wall - start.wall) * (os.cpu_count() or 1) * _TICKS
    if capacity <= 0:
        return {"machine_pct": 0.0, "benchmark_pct": 0.0, "foreign_pct": 0.0, "steal_pct": 0.0}
    machine = (end.busy_ticks - start.busy_ticks) / capacity * 100
    ours = (end.ours_ticks - start.ours_ticks) / capacity * 100
    steal = (end.steal_ticks - start.steal_ticks) / capacity * 100
    return {
        "machine_pct": round(machine, 1),
        "benchmark_pct": round(ours, 1),
        "foreign_pct": round(max(0.0, machine - ours), 1),
        "steal_pct": round(steal, 1),
    }


def foreign_cpu_pct(meter: CpuMeter, seconds: float) -> float:
    meter.start()
    time.sleep(seconds)
    return meter.stop()["foreign_pct"]


def wait_for_quiet(meter: CpuMeter, *, threshold_pct: float, max_wait_s: float) -> dict[str, float]:
    """Wait (at most ``max_wait_s``) until other processes use under ``threshold_pct`` of the machine."""
    started = time.monotonic()
    level = foreign_cpu_pct(meter, 0.5)
    while level > threshold_pct and time.monotonic() - started < max_wait_s:
        level = foreign_cpu_pct(meter, 1.0)
    return {"foreign_pct_before": level, "waited_s": round(time.monotonic() - started, 1)}
