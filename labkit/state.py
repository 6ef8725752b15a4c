"""The lab's state folder: its spec, the record of what it created, and per-node files.

Layout (``/run/labkit/<lab>/``; tmpfs, so it goes away with a reboot exactly like the
namespaces it describes; ``LABKIT_RUN_DIR`` moves it)::

    spec.json                   the LabSpec the lab was built from
    owner.json                  who built it: pid, its start time, "labkit up" / "notebook kernel"
    owned                       one line per created namespace, written *before* creating it
    etcd/                       etcd's data dir; etcd:2379 is its unix socket for the lab process
    nodes/<node>/run/flannel/   bind-mounted on /run/flannel inside the node
    nodes/<node>/log/<svc>.log  service logs (`labkit logs`, `journalctl -u`)
    nodes/<node>/pid/<svc>.pid  service pids

The record is what makes cleanup safe after a crash: `clean` removes what is listed
here plus namespaces carrying the lab's prefix, and nothing else.
"""
from __future__ import annotations

import json
import os
import shutil

from .spec import LabSpec, check_lab_name

DEFAULT_BASE = "/run/labkit"


def base_dir() -> str:
    return os.environ.get("LABKIT_RUN_DIR", DEFAULT_BASE)


class LabState:
    def __init__(self, name: str, base: str | None = None):
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

    def owner(self) -> dict | None:
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

    def _write_json(self, name: str, data) -> None:
        tmp = self.path(name + ".tmp")
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
