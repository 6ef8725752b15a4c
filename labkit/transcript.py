"""The lab's transcript: what was typed into its nodes since `up`, for a bug report.

A maintainer asks "what did you do?": the answer is this file,
``/run/labkit/<lab>/transcript.jsonl``, one JSON object a line, appended under an flock
(several shells, a notebook kernel and the CLI may type at once) and never rewritten.
Its first line, written when ``up`` is done, is the spec the lab was built from and the
subnet each node got (``{"up": {...}, "subnets": {"master": "10.108.41.1/24", ...}}``, as
``up`` built it, before any reconfigure). Then one line per command, each a *step* in the
scenario vocabulary (README: Scenarios), so a bundle can be replayed and can seed a
scenario file:

    {"t": 1764487000.1, "via": "%node", "step": {"on": "node1", "run": "ip route"}}
    {"t": ..., "via": "labkit exec", "step": {"on": "node1", "argv": ["ip", "link", ...]}}
    {"t": ..., "via": "labkit service", "step": {"action": "restart", "service": "flanneld", "on": "node1"}}
    {"t": ..., "via": "labkit shell", "interactive": "node1"}
    {"t": ..., "via": "reconfigure", "reconfigure": {"network": "10.109.0.0/16"}}

``run`` is a line for the node's shell (``bash -c``); ``argv`` is run as is, no shell at all.
An interactive shell is only noted: what is typed in it is not seen (and not replayed).
A change through Lab (``reconfigure``, the config panel, ``add_node``, ``remove_node``) is the
LabSpec fields it changed.
The lab's own probes (``ping``, checks, benchmarks) are not typed by anyone and are not
recorded. The file stays small: an entry over MAX_ENTRY bytes keeps only its length, and
after MAX_FILE bytes one last line says the transcript is full.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Any

from .state import LabState

FILE = "transcript.jsonl"
MAX_ENTRY = 8 * 1024        # bytes of one line; run lines are at most 4000 characters (scenario steps)
MAX_FILE = 1024 * 1024      # bytes of the whole file
MAX_ENTRIES = 5000          # lines a bundle may carry (checked when a bundle is read)


def path(state: LabState) -> str:
    return state.path(FILE)


def _append(state: LabState, obj: dict[str, Any]) -> None:
    """One line, under an exclusive flock, with O_APPEND: concurrent writers never interleave."""
    if not os.path.isdir(state.dir):  # the lab is gone (or being removed): nothing to record
        return
    line = json.dumps(obj, separators=(",", ":"), sort_keys=True)
    if len(line.encode()) > MAX_ENTRY:
        kept = {k: v for k, v in obj.items() if k != "step"}
        line = json.dumps({**kept, "too_long": len(line.encode())}, separators=(",", ":"), sort_keys=True)
    fd = os.open(path(state), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size >= MAX_FILE:
            return
        if size + len(line) + 1 >= MAX_FILE:
            line = json.dumps({"t": round(time.time(), 3), "full": True})
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)  # closing drops the lock


def start(state: LabState, spec: dict[str, Any], subnets: dict[str, str | None] | None = None) -> None:
    """The first line, written at the end of `up`: the spec the lab was built from and the
    subnet each node got (its FLANNEL_SUBNET)."""
    _append(state, {"t": round(time.time(), 3), "up": spec, "subnets": subnets or {}})


def record(state: LabState, step: dict[str, Any], via: str) -> None:
    """A non-interactive command typed into a node (a scenario step: run/argv/action)."""
    _append(state, {"t": round(time.time(), 3), "via": via, "step": step})


def record_change(state: LabState, fields: dict[str, Any], via: str) -> None:
    """A change of the running lab through Lab (reconfigure, add_node, remove_node): the LabSpec
    fields it changed (``revoke``: how a leaving node's lease went). Replayed with Lab.reconfigure."""
    _append(state, {"t": round(time.time(), 3), "via": via, "reconfigure": fields})


def record_interactive(state: LabState, target: str, via: str = "labkit shell") -> None:
    """An interactive session opened on `target`: noted, never replayed."""
    _append(state, {"t": round(time.time(), 3), "via": via, "interactive": target})


def read(state: LabState) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the spec of `up` or None, [entries]) as recorded; a garbled line is skipped."""
    header, entries = read_all(state)
    return (header or {}).get("up"), entries


def read_all(state: LabState) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the first line {t, up, subnets} or None, [entries]) as recorded."""
    try:
        with open(path(state)) as f:
            lines = f.read(MAX_FILE + MAX_ENTRY).splitlines()
    except FileNotFoundError:
        return None, []
    header: dict[str, Any] | None = None
    entries: list[dict[str, Any]] = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if "up" in obj and header is None and isinstance(obj["up"], dict):
            header = obj
        elif "up" not in obj:
            entries.append(obj)
    return header, entries
