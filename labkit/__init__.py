"""labkit: build a small flannel cluster out of network namespaces.

A node is a network namespace, etcd is a real etcd, ``flannel.1`` is a real
kernel VXLAN device. ``Lab`` is the one object the CLI and the notebooks hold.
"""
import os as _os
from typing import Any as _Any

# python-etcd3's generated protobuf code only loads with the pure-Python
# protobuf runtime; this must be set before protobuf is first imported.
_os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

__version__ = "0.1.0"


def __getattr__(name: str) -> _Any:  # lazy: `import labkit` stays cheap for in-node helpers
    if name == "scenario":  # labkit.scenario("mtu-black-hole", name="sc1"): a Challenge
        import importlib
        return importlib.import_module(".scenario", __name__)  # a callable module (see there)
    if name in ("Lab", "LabSpec", "LabError"):
        from . import errors, lab, spec
        return {"Lab": lab.Lab, "LabSpec": spec.LabSpec, "LabError": errors.LabError}[name]
    raise AttributeError(name)
