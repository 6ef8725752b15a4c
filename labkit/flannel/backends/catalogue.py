"""Everything the lab knows about a backend, in one table.

flannel registers its backends by name (``backend.Register`` in pkg/backend/*,
looked up by pkg/backend/manager.go). This table lists the names a Linux flanneld
built from HEAD knows, and for each what labkit needs to know about it: which class
of our flanneld runs it, the device it makes, the kernel link kind behind that
device (and whether this kernel may lack it), and the bytes its encapsulation costs.
flannel config validation, spec validation, the widgets, the footprint and cleanup
all read it here, and a backend the lab cannot run is refused in one wording
(:func:`unavailable_reason`).

Flannel-side module: it imports nothing from the host side of labkit.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .kernel import link_kind_available, missing_link_type, tun_reason


@dataclass(frozen=True)
class BackendInfo:
    """One backend flannel knows. ``target`` is ``"module:Class"`` of labkit's flanneld
    (None: not implemented); ``lab`` says whether a lab may be built with it."""

    name: str
    target: str | None = None
    lab: bool = False
    device: str | None = None          # "flannel.{vni}": formatted with the VNI
    device_re: str | None = None       # every name this backend's devices can have
    link_kind: str | None = None       # `ip link add ... type KIND`
    kernel_optional: bool = False      # the kernel may lack link_kind (no modprobe here)
    encap_overhead: int | None = None  # bytes taken from the underlay MTU
    needs_tun: bool = False            # its device is a TUN from /dev/net/tun (not in a rootless lab)

    def device_name(self, vni: int | None = None) -> str | None:
        return self.device.format(vni=vni or 1) if self.device else None


_MOD = "labkit.flannel.backends"
CATALOGUE: dict[str, BackendInfo] = {b.name: b for b in (
    # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 (pkg/backend/vxlan/vxlan.go encapOverhead)
    BackendInfo("vxlan", f"{_MOD}.vxlan.vxlan:VXLANBackend", True, "flannel.{vni}", r"flannel\.\d+",
                "vxlan", False, 50),
    # a TUN from /dev/net/tun, named flannel%d by the kernel; 20 IP + 8 UDP
    BackendInfo("udp", f"{_MOD}.udp.udp:UdpBackend", True, "flannel0", r"flannel\d+", None, False, 28, True),
    BackendInfo("host-gw", f"{_MOD}.hostgw:HostgwBackend", True, None, None, None, False, 0),
    BackendInfo("ipip", f"{_MOD}.ipip:IPIPBackend", True, "flannel.ipip", r"flannel\.ipip",
                "ipip", True, 20),
    # our flanneld only creates (or fails to create) the device; see wireguard.py
    BackendInfo("wireguard", f"{_MOD}.wireguard:WireguardBackend", False, "flannel-wg",
                r"flannel-wg(-v6)?", "wireguard", True, 80),
    BackendInfo("alloc"),
    BackendInfo("extension"),
    BackendInfo("ipsec"),
    BackendInfo("tencent-vpc"),
)}

# Names a Linux flanneld built from HEAD registers. Older names found in tutorials
# (alivpc, aws-vpc, gce) were removed upstream and now give "unknown backend type".
KNOWN_BACKENDS: tuple[str, ...] = tuple(sorted(CATALOGUE))
# What a lab can be built with today, in the order the lab offers them.
SUPPORTED_BACKENDS: tuple[str, ...] = tuple(b.name for b in CATALOGUE.values() if b.lab)
# backend -> the link kind this kernel may lack (checked before a lab is built)
KERNEL_LINK_TYPES: dict[str, str] = {b.name: b.link_kind for b in CATALOGUE.values()
                                     if b.kernel_optional and b.link_kind}
FLANNEL_DEVICE_RE = re.compile("^(" + "|".join(b.device_re for b in CATALOGUE.values() if b.device_re) + ")$")


@dataclass(frozen=True)
class Choice:
    """A backend as the lab offers it: usable here or not, and why not."""

    name: str
    usable: bool
    why: str

    def __iter__(self) -> Iterator[str | bool]:  # unpacks as (name, usable, why)
        return iter((self.name, self.usable, self.why))


def unknown_backend_message(backend_type: str) -> str:
    """flanneld's error when no backend is registered under that name
    (pkg/backend/manager.go lower-cases the name first)."""
    return f"unknown backend type: {backend_type.lower()}"


def is_known_backend(backend_type: str) -> bool:
    """Would flanneld find a backend of this name (case-insensitive)?"""
    return backend_type.lower() in CATALOGUE


def not_implemented_reason(name: str) -> str:
    """The one wording for a flannel backend labkit does not run."""
    return (f"{name} is a flannel backend labkit does not implement yet "
            f"(supported: {', '.join(SUPPORTED_BACKENDS)})")


def kernel_reason(name: str) -> str:
    """Why `name` cannot run on this kernel, or "" (the kernel probe: see kernel.py)."""
    info = CATALOGUE.get(name)
    if info is not None and info.needs_tun and (why := tun_reason()):
        return f"{name} cannot run here: {why}"
    if (info is None or not info.kernel_optional or info.link_kind is None
            or link_kind_available(info.link_kind) is not False):
        return ""
    others = ", ".join(b for b in SUPPORTED_BACKENDS if not CATALOGUE[b].kernel_optional)
    return (f"{name} cannot run here: {missing_link_type(info.link_kind)}. "
            f"labkit does not fall back to another backend; use {others}")


def unavailable_reason(name: str, kernel: bool = True) -> str:
    """Why a lab cannot be built with backend `name` ("" when it can). Unknown names get
    flannel's own text. `kernel=False` leaves out the kernel probe (data-only checks)."""
    if name not in CATALOGUE:
        return unknown_backend_message(name)
    why = kernel_reason(name) if kernel else ""
    if not why and not CATALOGUE[name].lab:
        why = not_implemented_reason(name)
    return why


def backend_choices() -> list[Choice]:
    """Every backend flannel knows, supported ones first: usable here, and why not."""
    names = list(SUPPORTED_BACKENDS) + [b for b in KNOWN_BACKENDS if b not in SUPPORTED_BACKENDS]
    return [Choice(n, not why, why) for n in names for why in (unavailable_reason(n),)]


def device_name(backend: str, vni: int | None = None) -> str | None:
    """The device a backend creates (None: host-gw has none, or not a backend we know)."""
    info = CATALOGUE.get(backend)
    return info.device_name(vni) if info else None


def encap_overhead(backend: str) -> int:
    """Bytes the backend's encapsulation takes from the underlay MTU."""
    return CATALOGUE[backend].encap_overhead or 0
