"""`labkit scenario from-bundle FILE -o NEW.yaml`: a bug report's lab as a scenario skeleton.

The lab is the bundle's spec (without its name); the transcript's steps become the fault,
in the scenario files' vocabulary (an argv is written as the shell line that gives back the
same words); the checks start with the one every scenario can use, every pair of containers
(or nodes) reaching each other, as the outcome. Title, task, hints, solution and explanation
are placeholders to write: the file is valid as it is (it passes the same checks as every
file in scenarios/), so `labkit scenario show` reads it at once. Pure logic.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from ..spec import LabSpec, default_underlay
from .model import Bundle, as_scenario_step
from .normalise import MAC_RE, canonical_mac, mac_names


def lab_fields(spec: LabSpec) -> dict[str, Any]:
    """The spec's fields that differ from LabSpec's defaults (name left out): a short `lab:`."""
    default = dataclasses.asdict(LabSpec())
    out = {k: v for k, v in dataclasses.asdict(spec).items() if k != "name" and default.get(k) != v}
    if out.get("underlay") == default_underlay(spec.nodes, spec.segments, spec.outside is True):
        out.pop("underlay")   # the default underlay, filled in by validate()
    return out


def scenario_dict(bundle: Bundle, name: str) -> dict[str, Any]:
    """The scenario document (a dict, as YAML would load it)."""
    macs = mac_names(bundle.nodes)
    fault = []
    for step in map(as_scenario_step, bundle.steps()):
        if "run" in step:
            step["ignore_errors"] = True
            owners = sorted({macs[canonical_mac(m)] for m in MAC_RE.findall(step["run"]) if canonical_mac(m) in macs})
            if owners:   # the kernel draws MACs at random: a new lab's devices have others
                step["note"] = (f"TODO: MAC of {', '.join(owners)} in the bundle's lab; a new lab has another "
                                "(labkit replay swaps it, a scenario must look it up)")
        fault.append(step)
    return {
        "name": name,
        "title": f"Reproduced from a bundle of lab {bundle.lab}",
        "summary": f"TODO: what the reporter saw. Built from a labkit bundle of lab {bundle.lab} "
                   f"({len(fault)} commands replayed as the fault). Make every container reach every other one.",
        "tags": {"topic": "bug-report", "difficulty": "medium", "flavour": bundle.spec.flavour},
        "minutes": 15,
        "lab": lab_fields(bundle.initial_spec),
        "fault": fault or [{"action": "wait", "seconds": 0, "note": "the bundle's transcript was empty"}],
        "checks": [{"id": "pods-reach-each-other", "kind": "connectivity", "role": "outcome", "expect": "ok"}],
        "hints": ["TODO: where to look", "TODO: what is wrong", "TODO: how to fix it"],
        "solution": [{"action": "wait", "seconds": 0, "note": "TODO: the fix, as steps"}],
        "explanation": "TODO: why it broke, with the flannel issue and source file.",
        "references": ["TODO: the flannel issue this reproduces"],
    }


def scenario_yaml(bundle: Bundle, name: str) -> str:
    """The scenario file's text (checked with the scenario model before it is returned)."""
    from ..scenario import model
    text = yaml.safe_dump(scenario_dict(bundle, name), sort_keys=False, allow_unicode=True, width=110)
    model.parse(text, f"{name}.yaml")   # raises ScenarioError if the skeleton is not a valid scenario
    return text
