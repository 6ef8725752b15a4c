"""Per-user progress: which scenarios were started and solved, hints used, checks run.

One JSON file per user, outside any lab's folder so it survives ``down``:
``$XDG_STATE_HOME/labkit/progress.json`` (``~/.local/state/labkit/progress.json`` when
XDG_STATE_HOME is unset). Writes hold an flock and replace the file atomically, so two
processes of one user (a notebook and a terminal) never lose each other's updates.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import Any


def state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "labkit")


def progress_path() -> str:
    return os.path.join(state_dir(), "progress.json")


class Progress:
    """The store; every method reads the file afresh (another process may have written it)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or progress_path()

    def read(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {"version": 1, "scenarios": {}}
        if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
            return {"version": 1, "scenarios": {}}
        return data

    def get(self, scenario: str) -> dict[str, Any]:
        return dict(self.read()["scenarios"].get(scenario, {}))

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with open(self.path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)

    def _entry(self, data: dict[str, Any], scenario: str) -> dict[str, Any]:
        entry: dict[str, Any] = data["scenarios"].setdefault(scenario, {})
        entry.setdefault("attempts", 0)
        entry.setdefault("hints_used", 0)
        entry.setdefault("checks_run", 0)
        return entry

    def started(self, scenario: str, lab: str, now: float | None = None) -> None:
        with self._update() as data:
            e = self._entry(data, scenario)
            e["attempts"] += 1
            e["started_at"] = now or time.time()
            e["lab"] = lab
            e["hints_this_attempt"] = 0

    def checked(self, scenario: str, solved: bool, now: float | None = None) -> None:
        with self._update() as data:
            e = self._entry(data, scenario)
            e["checks_run"] += 1
            e["last_check_at"] = now or time.time()
            if solved and "solved_at" not in e:
                e["solved_at"] = e["last_check_at"]
                if "started_at" in e:
                    e["seconds_to_solve"] = round(e["solved_at"] - e["started_at"], 1)

    def hinted(self, scenario: str, tier: int) -> None:
        with self._update() as data:
            e = self._entry(data, scenario)
            e["hints_used"] = max(e["hints_used"], tier)
            e["hints_this_attempt"] = max(e.get("hints_this_attempt", 0), tier)

    def solution_shown(self, scenario: str) -> None:
        with self._update() as data:
            self._entry(data, scenario)["solution_shown"] = True


class NoProgress(Progress):
    """Records nothing: `verify` (a trainer's or CI's run) is nobody's progress."""

    def __init__(self) -> None:
        super().__init__(os.devnull)

    def started(self, scenario: str, lab: str, now: float | None = None) -> None:
        pass

    def checked(self, scenario: str, solved: bool, now: float | None = None) -> None:
        pass

    def hinted(self, scenario: str, tier: int) -> None:
        pass

    def solution_shown(self, scenario: str) -> None:
        pass
