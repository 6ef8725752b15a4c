"""Per-learner limits (memory, processes, CPU) and the usage they let us measure.

A learner's server, kernels, terminals and every lab process they start (etcd, flanneld,
docker's stand-in, shells) are one group of processes: the learner's cgroup, which the hub's
spawner puts the server into before it drops to the learner's uid. Children stay in it, so the
limit holds for the whole lab, and the cgroup's counters give memory and CPU per learner.

Which mechanism, in order:
- ``systemd``: systemd is PID 1 and owns the cgroup tree; writing into it behind systemd's back
  is not allowed, so labkit does not: use SystemdSpawner (README: classroom) which puts each
  server in a transient unit with ``MemoryMax=`` and ``TasksMax=``.
- ``cgroup2``: a unified hierarchy at /sys/fs/cgroup: ``labkit-learners/USER`` with
  ``memory.max``, ``pids.max``, ``cpu.max``.
- ``cgroup1``: the memory, pids and cpu(acct) hierarchies: ``labkit-learners/USER`` in each,
  ``memory.limit_in_bytes``, ``pids.max``, ``cpu.cfs_quota_us``.
- ``none``: no writable cgroups (a container without them): no limits; said at hub start.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import LabError

CGROOT = "/sys/fs/cgroup"
PARENT = "labkit-learners"
_SIZE = re.compile(r"^(\d+)([KMG]?)$")


@dataclass(frozen=True)
class Limits:
    memory: int | None = 2 << 30   # bytes
    tasks: int | None = 1024        # processes and threads
    cpus: float | None = None       # CPUs' worth of time, e.g. 1.0


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1048576``: bytes (binary units, as systemd's MemoryMax=)."""
    m = _SIZE.match(text.strip().upper())
    if not m:
        raise LabError(f"bad memory size {text!r}: a number with K, M or G (e.g. 2G)", field="memory")
    n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]
    if n < 64 << 20:
        raise LabError(f"memory limit {text} is below 64M: a Jupyter server alone needs more", field="memory")
    return n


def _writable(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


def mechanism() -> tuple[str, str]:
    """(name, why) for this host."""
    try:
        with open("/proc/1/comm") as f:
            pid1 = f.read().strip()
    except OSError:
        pid1 = "?"
    if pid1 == "systemd" and os.path.isdir("/run/systemd/system"):
        return "systemd", "systemd is PID 1: use SystemdSpawner's MemoryMax=/TasksMax= (README: classroom)"
    if os.path.exists(f"{CGROOT}/cgroup.controllers"):
        if _writable(CGROOT):
            return "cgroup2", f"cgroup v2 at {CGROOT}"
        return "none", f"cgroup v2 at {CGROOT} is not writable here: no per-learner limits"
    if _writable(f"{CGROOT}/memory") and _writable(f"{CGROOT}/pids"):
        return "cgroup1", f"cgroup v1 memory and pids hierarchies at {CGROOT}"
    return "none", f"no writable cgroups at {CGROOT} (PID 1 is {pid1}): no per-learner limits"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _v1_dirs(user: str) -> dict[str, str]:
    out = {c: f"{CGROOT}/{c}/{PARENT}/{user}" for c in ("memory", "pids")}
    for c in ("cpu,cpuacct", "cpu"):  # joined or separate mounts
        if _writable(f"{CGROOT}/{c}"):
            out["cpu"] = f"{CGROOT}/{c}/{PARENT}/{user}"
            break
    if _writable(f"{CGROOT}/cpuacct") and "cpuacct" not in out.get("cpu", ""):
        out["cpuacct"] = f"{CGROOT}/cpuacct/{PARENT}/{user}"
    return out


def prepare(user: str, limits: Limits) -> list[str]:
    """Make the learner's cgroup(s) and set the limits; returns the ``cgroup.procs`` files the
    server's process must write itself into (empty where there is no mechanism). Runs as root."""
    kind, _ = mechanism()
    if kind == "cgroup2":
        parent = f"{CGROOT}/{PARENT}"
        os.makedirs(parent, exist_ok=True)
        with open(f"{CGROOT}/cgroup.subtree_control") as f:
            on = f.read().split()
        with open(f"{CGROOT}/cgroup.controllers") as f:
            have = f.read().split()
        want = [c for c in ("memory", "pids", "cpu") if c in have]
        for at in (CGROOT, parent):
            for c in want:
                if at != CGROOT or c not in on:
                    _write(f"{at}/cgroup.subtree_control", f"+{c}")
        d = f"{parent}/{user}"
        os.makedirs(d, exist_ok=True)
        if limits.memory and "memory" in want:
            _write(f"{d}/memory.max", str(limits.memory))
        if limits.tasks and "pids" in want:
            _write(f"{d}/pids.max", str(limits.tasks))
        if limits.cpus and "cpu" in want:
            _write(f"{d}/cpu.max", f"{int(limits.cpus * 100000)} 100000")
        return [f"{d}/cgroup.procs"]
    if kind == "cgroup1":
        dirs = _v1_dirs(user)
        for d in dirs.values():
            os.makedirs(d, exist_ok=True)
        if limits.memory:
            _write(f"{dirs['memory']}/memory.limit_in_bytes", str(limits.memory))
        if limits.tasks:
            _write(f"{dirs['pids']}/pids.max", str(limits.tasks))
        if limits.cpus and "cpu" in dirs:
            _write(f"{dirs['cpu']}/cpu.cfs_period_us", "100000")
            _write(f"{dirs['cpu']}/cpu.cfs_quota_us", str(int(limits.cpus * 100000)))
        return [f"{d}/cgroup.procs" for d in dirs.values()]
    return []


def join(procs_files: list[str]) -> None:
    """Put the calling process into the learner's cgroup(s): run in the server's child, before exec."""
    for path in procs_files:
        _write(path, str(os.getpid()))


def release(user: str) -> None:
    """Remove the learner's cgroup(s) once no process is left in them, and the parent once it
    is empty (best effort)."""
    paths = [f"{CGROOT}/{PARENT}/{user}", *_v1_dirs(user).values()]
    for path in paths + sorted({os.path.dirname(p) for p in paths}):
        try:
            os.rmdir(path)
        except OSError:
            pass


@dataclass
class Usage:
    memory_now: int | None      # bytes
    memory_peak: int | None     # bytes, since the cgroup was made (or reset)
    cpu_seconds: float | None   # user + system
    tasks: int | None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def usage(user: str) -> Usage:
    """What the learner's cgroup counted: the measurement behind the README's per-learner figures."""
    kind, _ = mechanism()
    if kind == "cgroup2":
        d = f"{CGROOT}/{PARENT}/{user}"
        cpu = None
        try:
            with open(f"{d}/cpu.stat") as f:
                stat = dict(line.split() for line in f if line.strip())
            cpu = int(stat["usage_usec"]) / 1e6
        except (OSError, KeyError, ValueError):
            pass
        return Usage(_read_int(f"{d}/memory.current"), _read_int(f"{d}/memory.peak"), cpu,
                     _read_int(f"{d}/pids.current"))
    if kind == "cgroup1":
        dirs = _v1_dirs(user)
        acct = dirs.get("cpuacct") or dirs.get("cpu")
        ns = _read_int(f"{acct}/cpuacct.usage") if acct else None
        return Usage(_read_int(f"{dirs['memory']}/memory.usage_in_bytes"),
                     _read_int(f"{dirs['memory']}/memory.max_usage_in_bytes"),
                     ns / 1e9 if ns is not None else None, _read_int(f"{dirs['pids']}/pids.current"))
    return Usage(None, None, None, None)
