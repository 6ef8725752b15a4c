"""The class's progress: each learner's scenario records, read as that learner, as rows and CSV.

A learner's record is their own file, ``~/.local/state/labkit/progress.json`` (written by
``labkit.scenario.progress`` with the directory at mode 0700). The trainer's view runs as root,
but it does not read learners' homes as root: it starts a tiny reader *as the learner* (their
uid, their group, no other groups), so it sees exactly what that learner's own account can read.
A learner who points the file at ``/etc/shadow`` or at a classmate's record gets an empty row,
never someone else's data. Only members of the learners' group are read.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pwd
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from .users import learners

# Runs as the learner, with no labkit import (the learner's home may hold anything):
# the file's JSON on stdout, at most 1 MiB of it, or nothing.
_READER = """
import sys
try:
    with open(sys.argv[1], 'rb') as f:
        data = f.read(1 << 20)
except OSError:
    data = b''
sys.stdout.buffer.write(data)
"""

RELATIVE_PATH = os.path.join(".local", "state", "labkit", "progress.json")


def read_as(user: str, timeout: float = 10.0) -> dict[str, Any]:
    """The learner's progress record, read by a process running as the learner ({} if none)."""
    pw = pwd.getpwnam(user)
    path = os.path.join(pw.pw_dir, RELATIVE_PATH)
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    elif os.geteuid() != pw.pw_uid:
        return {}  # not root and not that learner: their record is not ours to read
    try:
        r = subprocess.run([sys.executable, "-I", "-S", "-c", _READER, path], capture_output=True,
                           timeout=timeout, cwd="/", env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
                           check=False, **kwargs)
        data = json.loads(r.stdout or b"{}")
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        return {}
    return data


@dataclass
class Row:
    learner: str
    scenario: str = ""
    attempts: int = 0
    started: str = ""          # first start of the last attempt, UTC
    solved: bool = False
    solved_at: str = ""
    minutes: float | None = None  # to solve; or so far, when not solved yet
    hints_used: int = 0
    checks_run: int = 0
    solution_shown: bool = False


def _utc(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _num(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def rows_for(user: str, record: dict[str, Any], now: float | None = None) -> list[Row]:
    """One row per scenario the learner started (a single empty row when none)."""
    now = now or time.time()
    out = []
    for name, e in sorted(record.get("scenarios", {}).items()):
        if not isinstance(e, dict):
            continue
        started, solved_at = e.get("started_at"), e.get("solved_at")
        minutes = None
        if isinstance(e.get("seconds_to_solve"), (int, float)):
            minutes = round(e["seconds_to_solve"] / 60, 1)
        elif isinstance(started, (int, float)) and not solved_at:
            minutes = round((now - started) / 60, 1)
        out.append(Row(user, str(name), _num(e.get("attempts")), _utc(started), bool(solved_at), _utc(solved_at),
                       minutes, _num(e.get("hints_used")), _num(e.get("checks_run")),
                       bool(e.get("solution_shown"))))
    return out or [Row(user)]


def class_rows(users: list[str] | None = None, now: float | None = None) -> list[Row]:
    """Every learner's rows (the learners' group, or the names given that are in it)."""
    known = [lr.name for lr in learners()]
    names = [u for u in users if u in known] if users is not None else known
    rows: list[Row] = []
    for u in names:
        rows += rows_for(u, read_as(u), now)
    return rows


def summary(rows: list[Row]) -> list[dict[str, Any]]:
    """Per learner: scenarios started and solved, hints used, minutes spent on solved ones."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = out.setdefault(r.learner, {"learner": r.learner, "started": 0, "solved": 0, "hints_used": 0,
                                       "minutes_solving": 0.0, "solved_names": []})
        if r.scenario:
            s["started"] += 1
            s["hints_used"] += r.hints_used
            if r.solved:
                s["solved"] += 1
                s["solved_names"].append(r.scenario)
                s["minutes_solving"] = round(s["minutes_solving"] + (r.minutes or 0), 1)
    return list(out.values())


FIELDS = [f for f in Row.__dataclass_fields__]


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = asdict(r)
        d["minutes"] = "" if r.minutes is None else r.minutes
        w.writerow(d)
    return buf.getvalue()
