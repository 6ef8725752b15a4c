"""labkit/lazypkg.py: pyroute2's package imports a public name's module on first use."""
import os
import subprocess
import sys

from labkit.lazypkg import public_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = r"""
import sys, labkit, pyroute2
from pyroute2 import IPRoute
lazy = type(pyroute2).__name__
heavy = [m for m in ("pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.conntrack") if m in sys.modules]
sub = pyroute2.arp.__name__ == "pyroute2.arp"  # a submodule nobody imported yet, as after the full __init__
from pyroute2 import NDB
import pyroute2.iproute
every = all(getattr(pyroute2, n) is not None for n in dir(pyroute2) if not n.startswith("_"))
try:
    pyroute2.NoSuchThing
    missing = "no error"
except AttributeError as e:
    missing = str(e)
print(lazy, heavy, sub, IPRoute is pyroute2.iproute.IPRoute, NDB.__module__, every,
      pyroute2.__version__ != "unknown", "IPRoute" in pyroute2.__all__, missing, sep="|")
"""


def test_pyroute2_after_labkit_imports_only_what_is_used():
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lazy, heavy, sub, same, ndb, every, version, listed, missing = r.stdout.strip().split("|")
    assert lazy == "_LazyPackage" and heavy == "[]"   # IPRoute alone pulled in no NDB, IPDB, conntrack
    assert sub == "True"
    assert same == "True" and ndb == "pyroute2.ndb.main" and every == "True" and version == "True"
    assert listed == "True" and missing == "module 'pyroute2' has no attribute 'NoSuchThing'"


def test_public_names_reads_from_imports_and_refuses_code_it_cannot_replay():
    names = public_names("try:\n    from pyroute2.config.version import __version__\nexcept ImportError:\n"
                         "    __version__ = 'unknown'\nimport sys\nfrom pyroute2.iproute import (IPRoute,\n"
                         "    NetNS as N)\nmodules = [IPRoute]\n__all__ = []\n__all__.extend(modules)\n")
    assert names == {"IPRoute": "pyroute2.iproute", "N": "pyroute2.iproute"}
    assert public_names("from pyroute2.iproute import IPRoute\nsetup = configure()\n") is None
    assert public_names("from pyroute2.iproute import IPRoute\ndef f():\n    pass\n") is None
    assert public_names("from os import path\n") is None    # nothing of pyroute2's: not this package
