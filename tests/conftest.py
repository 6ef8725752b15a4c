import os
import secrets
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


def unique_name(prefix: str = "t") -> str:
    """A lab name nobody else uses: integration tests never share a lab by accident."""
    return prefix[:6] + secrets.token_hex(3)


@pytest.fixture
def lab_name():
    """A fresh lab name; whatever the test built under it is cleaned afterwards."""
    from labkit.lab import clean
    name = unique_name()
    yield name
    clean(name)


@pytest.fixture
def make_lab(lab_name):
    """make_lab(**spec_fields) builds and returns a running Lab (cleaned after the test)."""
    from labkit.lab import Lab
    from labkit.spec import LabSpec

    def make(**fields):
        return Lab(LabSpec(name=lab_name, **fields)).up()
    return make


def labkit(*args, check=False, env=None, **kw):
    """Run the labkit CLI as a user would."""
    r = subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=kw.pop("timeout", 120), **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"labkit {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def wait_for(pred, timeout=10.0, what="condition"):
    """Poll pred() until it returns something true; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sh(lab, target, script):
    """A command line on a node or container that must succeed; returns its stdout."""
    r = lab.sh(target, script)
    assert r.returncode == 0, f"{target}: {script}: {r.stderr}"
    return r.stdout


def unreachable(lab):
    """The pairs of the lab's all-pairs ping matrix that do not answer."""
    return sorted(p for p, ok in lab.connectivity().items() if not ok)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="integration tests build labs and need root"))
