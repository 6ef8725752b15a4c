"""Backend registry (mirrors pkg/backend/manager.go): the config's Backend.Type picks one.

A backend creates the node's device, acquires the lease with its own attributes and
then programs the kernel for every remote lease. Names are flannel's; adding udp or
host-gw means adding a module and one line here.
"""
from __future__ import annotations

import importlib

from ..config import is_known_backend, unknown_backend_message

# type name -> "module:Class" (imported lazily, so a backend's imports cost nothing
# to the others)
REGISTRY = {
    "vxlan": "labkit.flannel.backends.vxlan.vxlan:VXLANBackend",
    "udp": "labkit.flannel.backends.udp.udp:UdpBackend",
    "host-gw": "labkit.flannel.backends.hostgw:HostgwBackend",
    "ipip": "labkit.flannel.backends.ipip:IPIPBackend",            # where the kernel has ipip
    "wireguard": "labkit.flannel.backends.wireguard:WireguardBackend",  # refuses (see module)
}


class UnknownBackend(Exception):
    pass


def get_backend(backend_type: str):
    """The backend class for `backend_type`, or flannel's `unknown backend type: X`."""
    target = REGISTRY.get(backend_type)
    if target is None and is_known_backend(backend_type):
        raise UnknownBackend(f"backend type {backend_type} is a flannel backend that labkit's "
                             f"flanneld does not implement (it has: {', '.join(REGISTRY)})")
    if target is None:
        raise UnknownBackend(unknown_backend_message(backend_type))
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
