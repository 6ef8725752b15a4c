"""Backend registry (mirrors pkg/backend/manager.go): the config's Backend.Type picks one.

A backend creates the node's device, acquires the lease with its own attributes and
then programs the kernel for every remote lease. Names are flannel's; adding a backend
means adding a module and its line in catalogue.py.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .catalogue import CATALOGUE, is_known_backend, unknown_backend_message

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..config import Config
    from ..etcd_manager import LocalManager
    from ..iface import ExternalInterface
    from ..subnet import Event, Lease

# type name -> "module:Class" (imported lazily, so a backend's imports cost nothing
# to the others); wireguard's class refuses (see wireguard.py)
REGISTRY = {b.name: b.target for b in CATALOGUE.values() if b.target}


GO_INT_MIN, GO_INT_MAX = -(1 << 63), (1 << 63) - 1  # Go's int on amd64


def decode_backend_config(backend: dict[str, Any] | None, defaults: dict[str, Any], what: str, struct: str = "",
                          names: dict[str, str] | None = None) -> dict[str, Any]:
    """A backend's options from the config's Backend object, as Go's encoding/json fills
    a struct: keys match in any case, null leaves the default, a wrong type is an error
    worded like Go's ("error decoding VXLAN backend config: json: cannot unmarshal ...").

    `struct` is the Go struct's name ("" for flannel's anonymous structs) and `names` the
    json tags where the struct has them (flannel's VXLANConfig: ``vni``, ``port``, ...):
    Go's error names the field as ``<struct>.<json name>``. A number is checked against
    Go's int (64 bits): a bigger one is Go's ``cannot unmarshal number <n> ...`` too."""
    cfg = dict(defaults)
    names = names or {}
    fields = {names.get(k, k).lower(): k for k in defaults}
    fields.update({k.lower(): k for k in defaults})
    for key, value in (backend or {}).items():
        name = fields.get(key.lower())
        if name is None or value is None:
            continue
        want = type(defaults[name])
        gotype = {bool: "bool", str: "string"}.get(want, "int")
        ok = isinstance(value, want) and isinstance(value, bool) == (want is bool)
        if ok and gotype == "int" and not GO_INT_MIN <= value <= GO_INT_MAX:
            ok = False
        if not ok:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                kind = f"number {value}" if gotype == "int" else "number"
            else:
                kind = {str: "string", bool: "bool", list: "array", dict: "object"}[type(value)]
            raise ValueError(f"error decoding {what} backend config: json: cannot unmarshal {kind} "
                             f"into Go struct field {struct}.{names.get(name, name)} of type {gotype}")
        cfg[name] = value
    return cfg


def require_ipv4(config: Config) -> None:
    """labkit's flanneld runs IPv4 networks (flannel's IPv6 half is parsed and validated, not
    run). With neither family enabled flannel stops with "none defined stack"."""
    if getattr(config, "enable_ipv4", True):
        return
    if not getattr(config, "enable_ipv6", False):
        raise RuntimeError("none defined stack")
    raise RuntimeError("labkit's flanneld runs IPv4 networks only, and this config has EnableIPv4 "
                       "false (an IPv6-only network: flannel would run it on the nodes' IPv6 "
                       "addresses; labkit does not emulate flannel's IPv6 support)")


class Network(Protocol):
    """backend.Network (pkg/backend/common.go): what flanneld's main loop uses of the
    network a backend registered."""

    lease: Lease | None  # the node's lease, set by RegisterNetwork

    def mtu(self) -> int: ...

    def handle_subnet_events(self, batch: list[Event]) -> None: ...


class Backend(Protocol):
    """backend.Backend: RegisterNetwork acquires the node's lease and sets up its device."""

    def register_network(self, config: Config) -> Network: ...


class BackendBase:
    """What every backend's New(sm, extIface) keeps (flannel repeats the two fields in each
    backend's struct: vxlan.go, udp_amd64.go, ipip.go, wireguard.go), plus the netlink
    socket our backend works with. RegisterNetwork is each backend's own."""

    def __init__(self, sm: LocalManager, ext_iface: ExternalInterface, ipr: IPRoute) -> None:
        self.sm = sm
        self.ext_iface = ext_iface
        self.ipr = ipr


# backend.BackendCtor: New(sm, extIface), plus the netlink socket the backend works with
BackendCtor = Callable[["LocalManager", "ExternalInterface", "IPRoute"], Backend]


class UnknownBackend(Exception):
    pass


def get_backend(backend_type: str) -> BackendCtor:
    """The backend class for `backend_type`, or flannel's `unknown backend type: X`."""
    target = REGISTRY.get(backend_type)
    if target is None and is_known_backend(backend_type):
        raise UnknownBackend(f"backend type {backend_type} is a flannel backend that labkit's "
                             f"flanneld does not implement (it has: {', '.join(REGISTRY)})")
    if target is None:
        raise UnknownBackend(unknown_backend_message(backend_type))
    module, _, cls = target.partition(":")
    ctor: BackendCtor = getattr(importlib.import_module(module), cls)
    return ctor
