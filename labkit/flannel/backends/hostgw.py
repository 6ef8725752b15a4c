"""The host-gw backend (mirrors pkg/backend/hostgw/hostgw.go).

No device and no encapsulation: every node is the gateway for its own pod subnet,
so a peer's subnet is reached with one plain route

    <peer subnet> via <peer PublicIP> dev eth0

That is as fast as the underlay (FLANNEL_MTU = the underlay MTU, nothing is added to
a packet), and it only works when every PublicIP is on the local L2 segment: the
kernel refuses a gateway it cannot reach directly, and flannel merely logs the
refusal (see route_network.py). It also needs the node's real address: a PublicIP
that differs from the interface address (a node behind NAT) is refused up front.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..subnet import Lease, LeaseAttrs
from . import require_ipv4
from .route_network import Route, RouteNetwork

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..config import Config
    from ..etcd_manager import LocalManager
    from ..iface import ExternalInterface

SRC = "hostgw.go"
BACKEND_TYPE = "host-gw"
NAT_REFUSAL = ("your PublicIP differs from interface IP, meaning that probably you're on a NAT, "
               "which is not supported by host-gw backend")


class HostgwBackend:
    def __init__(self, sm: LocalManager, ext_iface: ExternalInterface, ipr: IPRoute) -> None:
        """New: refuse a PublicIP that is not the interface's own address."""
        if ext_iface.ext_addr != ext_iface.iface_addr:
            raise RuntimeError(NAT_REFUSAL)
        self.sm = sm
        self.ext_iface = ext_iface
        self.ipr = ipr

    def register_network(self, config: Config) -> RouteNetwork:
        require_ipv4(config)
        ext = self.ext_iface

        def get_route(lease: Lease) -> Route:
            return Route(dst=lease.subnet, gw=ipaddress.IPv4Address(lease.attrs.public_ip),
                         link_index=ext.index)

        n = RouteNetwork(self.sm, ext, BACKEND_TYPE, mtu=ext.mtu, link_index=ext.index,
                         get_route=get_route, ipr=self.ipr)
        attrs = LeaseAttrs(public_ip=str(ext.ext_addr), backend_type=BACKEND_TYPE)
        try:
            n.lease = self.sm.acquire_lease(attrs)
        except Exception as e:
            raise RuntimeError(f"failed to acquire lease: {e}") from e
        return n
