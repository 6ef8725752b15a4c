"""The ipip backend (mirrors pkg/backend/ipip/ipip.go), where the kernel has ipip.

IP-in-IP: the kernel's ``flannel.ipip`` device (type ipip, local = the interface
address, any remote) wraps each pod packet in one more IPv4 header (20 bytes, so
MTU = underlay MTU - 20). Per remote lease one route, as host-gw but through the
tunnel: ``<subnet> via <PublicIP> dev flannel.ipip onlink``; with DirectRouting a
peer on the local segment gets the route on eth0 instead (no encapsulation).

flannel's order: the lease first, then the device. On a kernel without the ipip
link type the device cannot be created; flannel would report the bare errno
("operation not supported"); ours names what is missing (kernel.py). The lab
refuses ``--backend ipip`` on such a kernel before it builds anything.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from .. import log
from ..ip import (
    EEXIST,
    RTNH_F_ONLINK,
    NetlinkMessage,
    checked,
    direct_routing,
    ensure_v4_address_on_link,
    errno_of,
    go_strerror,
)
from ..subnet import Lease, LeaseAttrs
from . import BackendBase, decode_backend_config, require_ipv4
from .catalogue import CATALOGUE, encap_overhead
from .kernel import is_missing_link_type, missing_link_type
from .route_network import Route, RouteNetwork

if TYPE_CHECKING:

    from ..config import Config

SRC = "ipip.go"
BACKEND_TYPE = "ipip"
TUNNEL_NAME = CATALOGUE[BACKEND_TYPE].device            # flannel.ipip
ENCAP_OVERHEAD = encap_overhead(BACKEND_TYPE)           # one more IPv4 header


def parse_backend_config(backend: dict[str, Any]) -> dict[str, Any]:
    return decode_backend_config(backend, {"DirectRouting": False}, "IPIP")


def _link_info(link: NetlinkMessage) -> tuple[str | None, str | None, str | None]:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    local = data.get_attr("IFLA_IPIP_LOCAL") if data else None
    remote = data.get_attr("IFLA_IPIP_REMOTE") if data else None
    return kind, local, remote


class IPIPBackend(BackendBase):
    """New(): see BackendBase."""

    def register_network(self, config: Config) -> RouteNetwork:
        require_ipv4(config)
        cfg = parse_backend_config(config.backend)
        log.info(SRC, f"IPIP config: DirectRouting={str(cfg['DirectRouting']).lower()}")
        ext = self.ext_iface
        n = RouteNetwork(self.sm, ext, BACKEND_TYPE, mtu=0, link_index=0, get_route=None, ipr=self.ipr)
        attrs = LeaseAttrs(public_ip=str(ext.ext_addr), backend_type=BACKEND_TYPE)
        try:
            n.lease = self.sm.acquire_lease(attrs)
        except Exception as e:
            raise RuntimeError(f"failed to acquire lease: {e}") from e
        assert config.network is not None  # CheckNetworkConfig: an IPv4 config has a Network
        index, mtu = self.configure_ipip_device(n.lease, config.network)
        n._mtu, n.link_index = mtu, index

        def get_route(lease: Lease) -> Route:
            route = Route(dst=lease.subnet, gw=ipaddress.IPv4Address(lease.attrs.public_ip),
                          link_index=n.link_index, flags=RTNH_F_ONLINK)
            if cfg["DirectRouting"]:
                try:
                    if direct_routing(self.ipr, lease.attrs.public_ip):
                        route.link_index = ext.index
                except Exception as e:
                    log.error(SRC, f"couldn't lookup route to {lease.attrs.public_ip}: {go_strerror(e)}")
            return route

        n.get_route = get_route
        return n

    def configure_ipip_device(self, lease: Lease, network: ipaddress.IPv4Network) -> tuple[int, int]:
        ipr, ext = self.ipr, self.ext_iface
        add = dict(ifname=TUNNEL_NAME, kind="ipip", ipip_local=str(ext.iface_addr))
        try:
            ipr.link("add", **add)
        except Exception as e:
            if is_missing_link_type(e):
                raise RuntimeError(f"failed to create {TUNNEL_NAME}: {missing_link_type('ipip')}: "
                                   f"{go_strerror(e)}") from None
            if errno_of(e) != EEXIST:
                raise RuntimeError(go_strerror(e)) from None
            existing = ipr.link("get", ifname=TUNNEL_NAME)[0]
            kind, local, remote = _link_info(existing)
            if kind != "ipip":
                raise RuntimeError(f"{TUNNEL_NAME} isn't an ipip mode device, please remove device "
                                   "and try again") from None
            if local != str(ext.iface_addr) or (remote not in (None, "0.0.0.0")):
                log.warning(SRC, f'"{TUNNEL_NAME}" already exists with incompatible attributes: '
                                 f"local={local} remote={remote}; recreating device")
                ipr.link("del", index=existing["index"])
                try:
                    ipr.link("add", **add)
                except Exception as e2:
                    raise RuntimeError(f"failed to create ipip interface: {go_strerror(e2)}") from None
        link = ipr.link("get", ifname=TUNNEL_NAME)[0]
        index, mtu = link["index"], link.get_attr("IFLA_MTU")
        expect = ext.mtu - ENCAP_OVERHEAD
        if expect <= 0:
            raise RuntimeError(f"MTU {ext.mtu} of iface {ext.name} is too small for ipip mode to work")
        if mtu > expect or mtu == 0:  # lowered only, never raised
            log.info(SRC, f"current MTU of {TUNNEL_NAME} is {mtu}, setting it to {expect}")
            ipr.link("set", index=index, mtu=expect)
            mtu = expect
        checked(f"failed to ensure address of interface {TUNNEL_NAME}", ensure_v4_address_on_link, ipr, index,
                ipaddress.IPv4Interface(f"{lease.subnet.network_address}/32"), network)
        checked(f"failed to set {TUNNEL_NAME} UP", ipr.link, "set", index=index, state="up")
        return index, mtu
