"""Backend registry (mirrors pkg/backend/manager.go): the config's Backend.Type picks one.

A backend creates the node's device, acquires the lease with its own attributes and
then programs the kernel for every remote lease. Names are flannel's; adding a backend
means adding a module and its line in catalogue.py.
"""
from __future__ import annotations

import importlib

from .catalogue import CATALOGUE, is_known_backend, unknown_backend_message

# type name -> "module:Class" (imported lazily, so a backend's imports cost nothing
# to the others); wireguard's class refuses (see wireguard.py)
REGISTRY = {b.name: b.target for b in CATALOGUE.values() if b.target}


def decode_backend_config(backend: dict | None, defaults: dict, what: str) -> dict:
    """A backend's options from the config's Backend object, as Go's encoding/json fills
    a struct: keys match in any case, null leaves the default, a wrong type is an error
    worded like Go's ("error decoding VXLAN backend config: json: cannot unmarshal ...")."""
    cfg = dict(defaults)
    fields = {k.lower(): k for k in defaults}
    for key, value in (backend or {}).items():
        name = fields.get(key.lower())
        if name is None or value is None:
            continue
        want = type(defaults[name])
        if isinstance(value, bool) != (want is bool) or not isinstance(value, want):
            kind = {str: "string", bool: "bool", list: "array", dict: "object"}.get(type(value)) \
                or f"number {value}"
            raise ValueError(f"error decoding {what} backend config: json: cannot unmarshal {kind} "
                             f"into Go struct field .{name} of type {'bool' if want is bool else 'int'}")
        cfg[name] = value
    return cfg


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
