"""The wireguard backend (pkg/backend/wireguard/*): device check only.

flannel's wireguard backend creates ``flannel-wg`` (type wireguard) *before* it
acquires a lease, with MTU = underlay MTU - 80, a private key kept in
``/run/flannel/wgkey`` and ListenPort 51820, and advertises ``{"PublicKey","Port"}``
in the lease; each peer becomes a wireguard peer plus a route.

labkit's flanneld does the first step only: it creates the device, and on a kernel
without the wireguard link type (this lab's kernels) it stops there with a message
that names what is missing, before any lease exists, exactly where flannel would
fail ("could not create wireguard interface: operation not supported"). On a kernel
that has wireguard it says that the rest (keys, peers) is not implemented here,
rather than pretending. There is no fallback to another backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from ..ip import EEXIST, errno_of, go_strerror
from . import BackendBase
from .catalogue import CATALOGUE, encap_overhead
from .kernel import is_missing_link_type, missing_link_type

SRC = "wireguard.go"
DEVICE = CATALOGUE["wireguard"].device   # flannel-wg
ENCAP_OVERHEAD = encap_overhead("wireguard")

if TYPE_CHECKING:

    from ..config import Config


class WireguardBackend(BackendBase):
    """New(): see BackendBase."""

    def register_network(self, config: Config) -> NoReturn:
        try:
            self.ipr.link("add", ifname=DEVICE, kind="wireguard", mtu=self.ext_iface.mtu - ENCAP_OVERHEAD)
        except Exception as e:
            if is_missing_link_type(e):
                raise RuntimeError(f"could not create wireguard interface: {missing_link_type('wireguard')}: "
                                   f"{go_strerror(e)}") from None
            if errno_of(e) != EEXIST:  # flannel reuses an existing device
                raise RuntimeError(f"could not create wireguard interface: {go_strerror(e)}") from None
        else:
            idx = self.ipr.link_lookup(ifname=DEVICE)
            if idx:  # leave nothing half-configured behind
                self.ipr.link("del", index=idx[0])
        raise RuntimeError("this kernel has the wireguard link type, but labkit's flanneld does not "
                           "implement wireguard's keys and peers (use vxlan, host-gw, udp or ipip)")
