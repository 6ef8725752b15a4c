"""Helpers the tests share: ``from tests.helpers import sh, labkit, wait_for, ...``.

Fixtures stay in tests/conftest.py (pytest finds them there); plain functions live here so
that a test imports them by a package path, never ``from conftest import``.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

T = TypeVar("T")


def unique_name(prefix: str = "t") -> str:
    """A lab name nobody else uses: integration tests never share a lab by accident."""
    return prefix[:6] + secrets.token_hex(3)


def labkit(*args: str, check: bool = False, env: dict[str, str] | None = None,
           **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the labkit CLI as a user would."""
    r = subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=kw.pop("timeout", 120), **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"labkit {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def wait_for(pred: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll pred() until it returns something true; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sh(lab: Any, target: str, script: str) -> str:
    """A command line, as typed at the prompt of a node or container (``node1``,
    ``node1/c1``), that must succeed; returns its stdout.

    A test that expects a command to fail, or wants its exit status, calls ``lab.sh``
    itself and looks at the CompletedProcess."""
    r = lab.sh(target, script)
    assert r.returncode == 0, f"{target}$ {script} (exit {r.returncode})\n{r.stdout}{r.stderr}"
    return str(r.stdout)


def unreachable(lab: Any) -> list[tuple[str, str]]:
    """The pairs of the lab's all-pairs ping matrix that do not answer."""
    return sorted(p for p, ok in lab.connectivity().items() if not ok)


def make_state(name: str, by: str, pid: int) -> Any:
    """A lab's state folder only (no namespaces), owned by `by` with process `pid`."""
    from labkit.spec import LabSpec
    from labkit.state import LabState
    st = LabState(name)
    st.create(LabSpec(name=name))
    st.set_owner(by, pid=pid)
    return st
