"""Run a scenario: start (lab, setup, fault), check, hint, solve, verify.

``Challenge`` is what the CLI (`labkit scenario ...`), the notebook widget and
``labkit.scenario(name)`` hold. Every command it sends goes through ``Lab.sh`` (a node's
shell, like a learner typing) or a Lab method: nothing runs on the host. Which scenario a
lab runs, and the hints shown in it, live in the lab's state folder (``scenario.json``
beside ``spec.json``); the learner's progress lives in :mod:`.progress`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import transcript
from ..errors import LabError
from ..lab import Lab
from ..state import LabState
from . import checks as ck
from .model import Scenario, load
from .progress import NoProgress, Progress

DEFAULT_LAB = "scenario"
Say = Callable[[str], None]


@dataclasses.dataclass
class Report:
    scenario: str
    results: list[ck.Result]
    seconds: float

    @property
    def solved(self) -> bool:
        return all(r.ok for r in self.results if r.role == "outcome")

    def outcome(self) -> list[ck.Result]:
        return [r for r in self.results if r.role == "outcome"]

    def text(self) -> str:
        lines = []
        for r in self.results:
            lines.append(f"{'✓' if r.ok else '✗'} {r.id} ({r.role})" + (f": {r.title}" if r.title else ""))
            lines.append(f"    expected: {r.expected}")
            lines.append(f"    found:    {r.found}")
            if not r.ok:
                lines.append(f"    look:     {r.show}" + (f"   (hint {r.hint_ref} is about this)" if r.hint_ref
                                                           else ""))
        lines.append(f"\n{'SOLVED' if self.solved else 'not solved yet'}: {sum(r.ok for r in self.outcome())} of "
                     f"{len(self.outcome())} outcome checks pass ({self.seconds:.1f}s)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "solved": self.solved, "seconds": round(self.seconds, 2),
                "checks": [r.to_dict() for r in self.results]}


@dataclasses.dataclass
class VerifyResult:
    scenario: str
    ok: bool
    steps: list[str]
    seconds: float

    def text(self) -> str:
        return "\n".join(self.steps) + f"\n{self.scenario}: {'VERIFIED' if self.ok else 'FAILED'} " \
                                       f"({self.seconds:.1f}s)"


def run_step(lab: Lab, step: dict[str, Any]) -> str:
    """One setup/fault/solution step; returns what was done. A failing shell line raises LabError
    (unless the step says ignore_errors: true)."""
    timeout = float(step.get("timeout", 60))
    if "run" in step:
        r = lab.sh(step["on"], step["run"], timeout=timeout, via="scenario")
        if r.returncode != 0 and not step.get("ignore_errors"):
            raise LabError(f"{step['on']}$ {step['run']} failed (exit {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()[-300:]}")
        return f"{step['on']}$ {step['run']}"
    action = step["action"]
    if action != "link":  # Lab.link records itself; a shell line was recorded by Lab.sh
        transcript.record(lab.state, dict(step), "scenario")
    else:
        return lab.link(step["on"], step["verb"], via="scenario")
    if action in ("start", "restart"):
        why = lab.service(step["on"], step["service"]).start_ready(restart=action == "restart")
        if why and not step.get("ignore_errors"):
            raise LabError(f"{action} {step['service']} on {step['on']}: {why}")
        return f"{step['on']}$ systemctl {action} {step['service']}"
    if action == "stop":
        lab.service(step["on"], step["service"]).stop()
        return f"{step['on']}$ systemctl stop {step['service']}"
    if action == "write_config":
        cfg = step["config"]
        text = cfg if isinstance(cfg, str) else json.dumps(cfg, separators=(",", ":"))
        return lab.write_config(text)
    if action == "delete_lease":
        # the lease found by the node's PublicIP, revoked as `remove_node` does (v2: deleted)
        return f"{step['of']}: {lab._revoke_lease(lab.node(step['of']))}"
    if action == "wait":
        time.sleep(float(step["seconds"]))
        return f"waited {step['seconds']}s"
    raise LabError(f"unknown action {action!r}")


def describe_step(step: dict[str, Any]) -> str:
    """A step as a person would read it (for `show` and the solution)."""
    if "run" in step:
        return f"{step['on']}$ {step['run']}"
    a = step["action"]
    if a in ("start", "stop", "restart"):
        return f"{step['on']}$ systemctl {a} {step['service']}"
    if a == "write_config":
        cfg = step["config"]
        return f"write the network config: {cfg if isinstance(cfg, str) else json.dumps(cfg)}"
    if a == "link":
        return f"labkit link {step['on']} {step['verb']}"
    if a == "delete_lease":
        return f"delete {step['of']}'s lease in etcd"
    return f"wait {step['seconds']}s"


class Challenge:
    """A scenario in a lab named `name`: start, check, hint, solve, verify, down."""

    def __init__(self, scenario: str | Scenario, name: str = DEFAULT_LAB, progress: Progress | None = None,
                 say: Say | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load(scenario)
        self.name = name
        self.state = LabState(name)
        self.progress = progress or Progress()
        self.say: Say = say or (lambda msg: None)
        self._lab: Lab | None = None

    @classmethod
    def attach(cls, name: str = DEFAULT_LAB, progress: Progress | None = None) -> Challenge:
        """The challenge running in lab `name` (as `labkit scenario start` left it)."""
        info = read_info(name)
        return cls(info["file"] if os.path.exists(info.get("file", "")) else info["scenario"], name=name,
                   progress=progress)

    def __repr__(self) -> str:
        return f"<Challenge {self.scenario.name} in lab {self.name}>"

    # -- the lab ---------------------------------------------------------------------------------
    @property
    def lab(self) -> Lab:
        if self._lab is None:
            self._lab = Lab.attach(self.name)
        return self._lab

    def _info(self) -> dict[str, Any]:
        return read_info(self.name)

    def _write_info(self, info: dict[str, Any]) -> None:
        path = self.state.path("scenario.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, path)

    def start(self, progress: Callable[[str], None] | None = None) -> Challenge:
        """Build the lab, then run the setup and the fault (silently: the fault is the puzzle)."""
        sc = self.scenario
        lab = Lab(sc.spec(self.name), progress=progress, built_by=f"labkit scenario {sc.name}")
        lab.up()
        self._lab = lab
        self._write_info({"scenario": sc.name, "file": os.path.abspath(sc.source) if sc.source else "",
                          "started_at": time.time(), "hints_shown": 0, "phase": "setup"})
        try:
            for step in sc.setup:
                run_step(lab, step)
            for step in sc.fault:
                run_step(lab, step)
        except BaseException:
            lab.down()
            self._lab = None
            raise
        info = self._info()
        info["phase"] = "running"
        self._write_info(info)
        self.progress.started(sc.name, self.name)
        return self

    def down(self) -> None:
        if self.state.exists():
            Lab.attach(self.name).down()
        self._lab = None

    # -- check, hint, solve ----------------------------------------------------------------------
    def run_checks(self, which: list[dict[str, Any]] | None = None) -> Report:
        t0 = time.monotonic()
        todo = which if which is not None else self.scenario.checks
        lab = self.lab
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda c: ck.evaluate(lab, c), todo))
        return Report(self.scenario.name, results, time.monotonic() - t0)

    def check(self) -> Report:
        """Evaluate every check now (nothing is remembered: a fix that is undone fails again)."""
        self._info()  # the lab must run this scenario
        report = self.run_checks()
        self.progress.checked(self.scenario.name, report.solved)
        return report

    def hints_shown(self) -> int:
        return int(self._info().get("hints_shown", 0))

    def hint(self) -> tuple[int, str]:
        """The next hint tier (the last one again once all are shown): (tier, text)."""
        info = self._info()
        tier = min(int(info.get("hints_shown", 0)) + 1, len(self.scenario.hints))
        info["hints_shown"] = tier
        self._write_info(info)
        self.progress.hinted(self.scenario.name, tier)
        return tier, self.scenario.hints[tier - 1]

    def solution_text(self) -> str:
        return "\n".join(describe_step(s) for s in self.scenario.solution)

    def solve(self) -> list[str]:
        """Apply the solution's steps to the running lab."""
        self._info()
        self.progress.solution_shown(self.scenario.name)
        return [run_step(self.lab, s) for s in self.scenario.solution]

    def wait_solved(self, timeout: float | None = None) -> Report:
        """Re-run the outcome checks until they pass or `timeout` (the scenario's settle) ends."""
        deadline = time.monotonic() + (self.scenario.settle if timeout is None else timeout)
        while True:
            report = self.run_checks(self.scenario.outcome_checks)
            if report.solved or time.monotonic() > deadline:
                return report
            time.sleep(1.0)

    def elapsed(self) -> float:
        return time.time() - float(self._info().get("started_at", time.time()))

    # -- verify ----------------------------------------------------------------------------------
    def verify(self, keep: bool = False) -> VerifyResult:
        """start -> the outcome checks must FAIL -> solve -> they must PASS -> down."""
        t0, steps, ok = time.monotonic(), [], False
        sc = self.scenario
        self.progress = NoProgress()
        try:
            self.start()
            steps.append(f"start: lab {self.name} up, setup ({len(sc.setup)} steps) and fault "
                         f"({len(sc.fault)} steps) done ({time.monotonic() - t0:.1f}s)")
            before = self.run_checks(sc.outcome_checks)
            failing = [r.id for r in before.results if not r.ok]
            steps.append(f"before the fix: {len(failing)} of {len(before.results)} outcome checks fail"
                         + (f" ({', '.join(failing)})" if failing else " -- the fault shows no symptom!"))
            if before.solved:
                steps += ["  " + ln for ln in before.text().splitlines()]
                return VerifyResult(sc.name, False, steps, time.monotonic() - t0)
            t1 = time.monotonic()
            self.solve()
            after = self.wait_solved()
            steps.append(f"after the solution: {sum(r.ok for r in after.results)} of {len(after.results)} "
                         f"outcome checks pass ({time.monotonic() - t1:.1f}s)")
            if not after.solved:
                steps += ["  " + ln for ln in after.text().splitlines()]
            ok = after.solved
        except LabError as e:
            steps.append(f"error: {e}")
        finally:
            if not keep:
                self.down()
                steps.append("lab removed")
        return VerifyResult(sc.name, ok, steps, time.monotonic() - t0)


def read_info(name: str) -> dict[str, Any]:
    """scenario.json of lab `name`, or a LabError saying no scenario runs there."""
    state = LabState(name)
    if not state.exists():
        raise LabError(f"no lab named {name!r} is running (start one with: labkit scenario start NAME "
                       f"--name {name})")
    try:
        with open(state.path("scenario.json")) as f:
            info: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        raise LabError(f"lab {name!r} runs no scenario (it was not made by `labkit scenario start`)") from None
    return info


def scenario(scenario_name: str, name: str = DEFAULT_LAB) -> Challenge:
    """``labkit.scenario("mtu-black-hole", name="sc1")``: a Challenge in lab `name`; .start() builds it."""
    return Challenge(scenario_name, name=name)
