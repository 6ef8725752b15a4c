"""State bundles: a lab's state as one plain-text file, for a bug report (README: Bug reports).

    from labkit.bundle import export, load, replay, diff_lab
    data = export(lab, "report.json")          # the bundle document (and the file)
    new, done = replay("report.json", "copy")  # a lab rebuilt in that state
    print(diff_lab(new, "report.json"))        # '' when they agree

model (the file's shape and its checks) → normalise (what must agree, the diff; pure) →
gather (export) → replay → seed (a scenario file from a bundle).
"""
from __future__ import annotations

from typing import Any

from ..lab import Lab
from .gather import collect, export
from .model import Bundle, BundleError, load, parse
from .normalise import diff, sections
from .replay import ReplayResult, plan, replay
from .seed import scenario_yaml


def diff_lab(lab: Lab, bundle: Bundle | str | dict[str, Any], context: int = 1) -> str:
    """What differs between a running lab and a bundle ('' = nothing), after normalisation."""
    if isinstance(bundle, str):
        bundle = load(bundle)
    other = bundle.data if isinstance(bundle, Bundle) else bundle
    return diff(collect(lab), other, f"lab {lab.spec.name}", f"bundle {other.get('lab')}", context)


__all__ = ["Bundle", "BundleError", "ReplayResult", "collect", "diff", "diff_lab", "export", "load", "parse",
           "plan", "replay", "scenario_yaml", "sections"]
