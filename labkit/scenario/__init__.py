"""Scenarios: a broken flannel cluster to diagnose and fix, from one YAML file each.

* :mod:`.model`: the file's schema and loading (errors name the field path, what was
  expected and what was found)
* :mod:`.checks`: the check kinds (gather from the lab, then a pure judge)
* :mod:`.engine`: ``Challenge``: start, check, hint, solve, verify
* :mod:`.progress`: the learner's progress, outside any lab (XDG state dir)

README "Scenarios" describes the format.
"""
import sys
import types

from .engine import Challenge, Report, VerifyResult, scenario
from .model import Scenario, ScenarioError, available, load, load_all, parse

__all__ = ["Challenge", "Report", "Scenario", "ScenarioError", "VerifyResult", "available", "load", "load_all",
           "parse", "scenario"]


class _CallableModule(types.ModuleType):
    """``labkit.scenario`` is this package and, called, :func:`.engine.scenario`: once the
    package is imported, ``labkit.scenario`` is the module, so the module itself is callable."""

    def __call__(self, scenario_name: str, name: str = "scenario") -> Challenge:
        return scenario(scenario_name, name=name)


sys.modules[__name__].__class__ = _CallableModule
