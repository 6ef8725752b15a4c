"""labkit: build a small flannel cluster out of network namespaces.

A node is a network namespace, etcd is a real etcd, ``flannel.1`` is a real
kernel VXLAN device. ``Lab`` is the one object the CLI and the notebooks hold.
"""
from typing import Any as _Any

from . import etcdpb as _etcdpb
from . import lazypkg as _lazypkg

# python-etcd3's message classes, rebuilt for the installed protobuf runtime when etcd3 is
# first imported (labkit/etcdpb.py): a plain `import etcd3` works after `import labkit`
_etcdpb.register()
# pyroute2's package imports each public name's module when it is first used, not all
# of them at once (labkit/lazypkg.py): 0.1-0.2 s less in every process that uses netlink
_lazypkg.register()

__version__ = "0.1.0"


def __getattr__(name: str) -> _Any:  # lazy: `import labkit` stays cheap for in-node helpers
    if name == "scenario":  # labkit.scenario("mtu-black-hole", name="sc1"): a Challenge
        import importlib
        return importlib.import_module(".scenario", __name__)  # a callable module (see there)
    if name in ("Lab", "LabSpec", "LabError"):
        from . import errors, lab, spec
        return {"Lab": lab.Lab, "LabSpec": spec.LabSpec, "LabError": errors.LabError}[name]
    raise AttributeError(name)
