"""The lab's state folder: its spec, the record of what it created, and per-node files.

Layout (``/run/labkit/<lab>/``; tmpfs, so it goes away with a reboot exactly like the
namespaces it describes; ``LABKIT_RUN_DIR`` moves it; where /run is not a tmpfs, as in
some containers and VMs, `up` mounts one on the lab's folder: :meth:`LabState.mount_tmpfs`)::

    spec.json                   the LabSpec the lab was built from
    owner.json                  who built it: pid, its start time, "labkit up" / "notebook kernel"
    owned                       one line per created namespace, written *before* creating it
    etcd/                       etcd's data dir, a tmpfs of its own (etcd.DATA_DIR_SIZE); etcd:2379
                                is its unix socket for the lab process
    nodes/<node>/run/flannel/   bind-mounted on /run/flannel inside the node
    nodes/<node>/log/<svc>.log  service logs (`labkit logs`, `journalctl -u`)
    nodes/<node>/pid/<svc>.pid  service pids

The record is what makes cleanup safe after a crash: `clean` removes what is listed
here plus namespaces carrying the lab's prefix, and nothing else.

Beside the folder, ``/run/labkit/.<lab>.lock`` exists while a process builds or removes
the lab: an flock held for the whole of `up`, `down` and `clean` (see :func:`lab_lock`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import NamedTuple, TypedDict

from . import netns
from .errors import LabError
from .nsexec import unescape
from .spec import LabSpec, check_lab_name

DEFAULT_BASE = "/run/labkit"


class Owner(TypedDict):
    """owner.json, and whether that process still runs (see :meth:`LabState.owner`)."""
    pid: int
    start: str | None
    by: str
    alive: bool


class Leftovers(TypedDict):
    """What of a lab still exists (see :func:`leftovers`): each kind, what of it is left."""
    netns: list[str]
    state: list[str]
    lock: list[str]
    mounts: list[str]
    processes: list[str]


def base_dir() -> str:
    return os.environ.get("LABKIT_RUN_DIR", DEFAULT_BASE)


class LabState:
    def __init__(self, name: str, base: str | None = None) -> None:
        self.name = check_lab_name(name)
        self.dir = os.path.join(base or base_dir(), name)

    # -- paths -------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Every namespace of this lab starts with this (lab names have no dash)."""
        return f"{self.name}-"

    def netns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def node_dir(self, node: str, *parts: str) -> str:
        return self.path("nodes", node, *parts)

    @property
    def etcd_socket(self) -> str:
        """etcd listens on unix://etcd:2379 relative to the state dir (its cwd)."""
        return self.path("etcd:2379")

    # -- lifecycle ---------------------------------------------------------------
    def exists(self) -> bool:
        return os.path.exists(self.path("spec.json"))

    def mount_tmpfs(self) -> bool:
        """Where the state folder would live on a disk file system (/run is one in some
        containers and VMs, a tmpfs on a systemd host), mount a tmpfs of its own on it,
        as on /run: gone at a reboot like the namespaces, and quick. Measured on ext4 here,
        whose inode allocator skips recently freed inodes one by one (labs free thousands):
        0.5-1 ms per file or folder made, against 10-60 us; a 100-node bring-up makes
        thousands (node folders, each node command's /etc overlay work dir, logs, pid
        files): 10.6-11.8 s against 7.8-10.7 s with the tmpfs (three interleaved pairs).
        Returns whether it mounted one. `clean` unmounts it with every mount below the
        folder (after reading the record in it)."""
        if fs_type(self.dir) == "tmpfs" or self.dir in mounts_under(self.dir):
            return False
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=20%", f"labkit-{self.name}-state",
                            self.dir], capture_output=True, text=True)
        if r.returncode != 0:  # only slower without it: the lab is built on the disk
            return False
        self.record("mount", self.dir)
        return True

    def create(self, spec: LabSpec) -> None:
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        self._write_json("spec.json", spec.to_dict())

    def spec(self) -> LabSpec:
        with open(self.path("spec.json")) as f:
            return LabSpec.from_dict(json.load(f))

    def record(self, kind: str, name: str) -> None:
        """Append to the ownership record and flush it to disk before creation."""
        os.makedirs(self.dir, exist_ok=True)
        with open(self.path("owned"), "a") as f:
            f.write(f"{kind} {name}\n")
            f.flush()
            os.fsync(f.fileno())

    def owned(self, kind: str) -> list[str]:
        try:
            with open(self.path("owned")) as f:
                lines = [ln.split(None, 1) for ln in f if ln.strip()]
        except FileNotFoundError:
            return []
        return [n.strip() for k, n in lines if k == kind]

    def set_owner(self, by: str, pid: int | None = None) -> None:
        """Record the process that built the lab, so nobody else removes it by mistake."""
        pid = pid or os.getpid()
        self._write_json("owner.json", {"pid": pid, "start": _starttime(pid), "by": by})

    def owner(self) -> Owner | None:
        """{pid, start, by, alive} of the process that built the lab (None: no record).
        `alive` is false once that process is gone (or its pid was reused)."""
        try:
            with open(self.path("owner.json")) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        rec["alive"] = rec.get("start") is not None and _starttime(rec.get("pid", 0)) == rec["start"]
        return rec

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write_json(self, name: str, data: object) -> None:
        tmp = self.path(f"{name}.{os.getpid()}.tmp")  # two writers never share a temporary file
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, self.path(name))


def _starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (None for a dead or zombie process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]
    except (OSError, IndexError):
        return None


def list_labs(base: str | None = None) -> list[str]:
    try:
        return sorted(d for d in os.listdir(base or base_dir())
                      if os.path.exists(os.path.join(base or base_dir(), d, "spec.json")))
    except FileNotFoundError:
        return []


class LabBusy(LabError):
    """Another process holds the lab's lock (it is building or removing that lab)."""


_held: dict[str, list[int]] = {}  # lab name -> [fd, depth]: the lock is re-entrant within a process


def lock_path(name: str, base: str | None = None) -> str:
    return os.path.join(base or base_dir(), f".{check_lab_name(name)}.lock")


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            pid = f.read().strip()
        return f" (pid {pid})" if pid else ""
    except OSError:
        return ""


@contextlib.contextmanager
def lab_lock(name: str, wait: float = 0.0, base: str | None = None) -> Iterator[None]:
    """Hold lab `name`'s lock (flock) for the block: one builder or remover at a time.

    `wait` seconds are spent waiting for another holder, then :class:`LabBusy`. The
    kernel drops the lock when its holder dies (even by SIGKILL), so a crashed `up`
    never blocks the `clean` after it. The file is removed by its last holder, and a
    waiter that locked a file removed meanwhile tries again on the new one."""
    if name in _held:
        _held[name][1] += 1
        try:
            yield
        finally:
            _held[name][1] -= 1
        return
    path = lock_path(name, base)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise LabBusy(f"lab {name} is being built or removed by another process{_holder(path)}; "
                              "wait for it, or pick another --name") from None
            time.sleep(0.05)
            continue
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder had just removed: lock the current one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[name] = [fd, 1]
    try:
        yield
    finally:
        _held[name][1] -= 1
        if _held[name][1] == 0:
            del _held[name]
            try:
                os.unlink(path)  # still holding it: nobody else can be using this file
            except FileNotFoundError:
                pass
            os.close(fd)


class Mount(NamedTuple):
    point: str     # where it is mounted (mountinfo's octal escapes undone)
    fstype: str    # tmpfs, ext4, overlay, ...
    source: str    # labkit-<lab>-etcd for etcd's tmpfs, labkit-<lab>-state for the folder's own


def mounts() -> list[Mount]:
    """Every mount of our mount namespace (/proc/self/mountinfo); [] if it cannot be read."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                out.append(Mount(unescape(fields[4]), fields[sep + 1], fields[sep + 2]))
    except (OSError, ValueError, IndexError):
        return []
    return out


def fs_type(path: str) -> str:
    """The file system type `path` is (or would be, once made) on: that of the mount with
    the longest mount point above it, "" if none is known."""
    path = os.path.realpath(path)
    above = [m for m in mounts() if path == m.point or path.startswith(m.point.rstrip("/") + "/")]
    return max(above, key=lambda m: len(m.point)).fstype if above else ""


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below `directory` in our mount namespace, deepest first."""
    directory = os.path.realpath(directory)
    found = {m.point for m in mounts() if m.point == directory or m.point.startswith(directory + "/")}
    return sorted(found, key=lambda p: (-p.count("/"), p))


def leftovers(name: str, base: str | None = None) -> Leftovers:
    """What of lab `name` still exists on this machine: {kind: [what]}, empty lists when
    nothing is left. Kinds: netns (with the lab's prefix), state (its folder), lock (its
    lock file), mounts (anywhere whose source or path is the lab's), processes (any
    process started for the lab: their environment carries LABKIT_LAB=<name>)."""
    state = LabState(name, base)
    out: Leftovers = {"netns": [n for n in netns.list_names() if n.startswith(state.prefix)],
           "state": [state.dir] if os.path.exists(state.dir) else [],
           "lock": [lock_path(name, base)] if os.path.exists(lock_path(name, base)) else [],
           "mounts": [], "processes": []}
    out["mounts"] = [m.point for m in mounts()
                     if m.point == state.dir or m.point.startswith(state.dir + "/")
                     or m.source in (f"labkit-{name}-etcd", f"labkit-{name}-state")]
    marker = f"LABKIT_LAB={name}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    with open(f"/proc/{pid}/comm") as c:
                        out["processes"].append(f"{pid} {c.read().strip()}")
        except OSError:
            continue
    return out
