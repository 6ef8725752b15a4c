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

from .. import log
from ..subnet import LeaseAttrs
from .kernel import is_missing_link_type, missing_link_type
from .route_network import RTNH_F_ONLINK, Route, RouteNetwork, go_strerror
from . import decode_backend_config, require_ipv4

SRC = "ipip.go"
BACKEND_TYPE = "ipip"
TUNNEL_NAME = "flannel.ipip"
EEXIST = 17


def parse_backend_config(backend: dict) -> dict:
    return decode_backend_config(backend, {"DirectRouting": False}, "IPIP")


def _link_info(link) -> tuple[str | None, str | None, str | None]:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    local = data.get_attr("IFLA_IPIP_LOCAL") if data else None
    remote = data.get_attr("IFLA_IPIP_REMOTE") if data else None
    return kind, local, remote


def ensure_v4_address_on_link(ipr, index: int, ipa: ipaddress.IPv4Interface,
                              network: ipaddress.IPv4Network) -> None:
    """ip.EnsureV4AddressOnLink: our /32 on the device, other addresses in Network removed."""
    has = False
    for a in ipr.get_addr(family=2, index=index):
        addr = ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        if addr == ipa:
            has = True
        elif addr.ip in network:
            ipr.addr("del", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
    if not has:
        ipr.addr("add", index=index, address=str(ipa.ip), prefixlen=32)


class IPIPBackend:
    def __init__(self, sm, ext_iface, ipr):
        self.sm = sm
        self.ext_iface = ext_iface
        self.ipr = ipr

    def register_network(self, config) -> RouteNetwork:
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
        index, mtu = self.configure_ipip_device(n.lease, config.network)
        n._mtu, n.link_index = mtu, index

        def get_route(lease) -> Route:
            route = Route(dst=lease.subnet, gw=ipaddress.IPv4Address(lease.attrs.public_ip),
                          link_index=n.link_index, flags=RTNH_F_ONLINK)
            if cfg["DirectRouting"]:
                try:
                    rs = self.ipr.route("get", dst=lease.attrs.public_ip)
                    if len(rs) == 1 and rs[0].get_attr("RTA_GATEWAY") is None:
                        route.link_index = ext.index
                except Exception as e:
                    log.error(SRC, f"couldn't lookup route to {lease.attrs.public_ip}: {go_strerror(e)}")
            return route

        n.get_route = get_route
        return n

    def configure_ipip_device(self, lease, network) -> tuple[int, int]:
        ipr, ext = self.ipr, self.ext_iface
        add = dict(ifname=TUNNEL_NAME, kind="ipip", ipip_local=str(ext.iface_addr))
        try:
            ipr.link("add", **add)
        except Exception as e:
            if is_missing_link_type(e):
                raise RuntimeError(f"failed to create {TUNNEL_NAME}: {missing_link_type('ipip')}: "
                                   f"{go_strerror(e)}") from None
            if getattr(e, "code", None) != EEXIST:
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
        expect = ext.mtu - 20
        if expect <= 0:
            raise RuntimeError(f"MTU {ext.mtu} of iface {ext.name} is too small for ipip mode to work")
        if mtu > expect or mtu == 0:  # lowered only, never raised
            log.info(SRC, f"current MTU of {TUNNEL_NAME} is {mtu}, setting it to {expect}")
            ipr.link("set", index=index, mtu=expect)
            mtu = expect
        try:
            ensure_v4_address_on_link(ipr, index, ipaddress.IPv4Interface(f"{lease.subnet.network_address}/32"),
                                      network)
        except Exception as e:
            raise RuntimeError(f"failed to ensure address of interface {TUNNEL_NAME}: {go_strerror(e)}") from None
        try:
            ipr.link("set", index=index, state="up")
        except Exception as e:
            raise RuntimeError(f"failed to set {TUNNEL_NAME} UP: {go_strerror(e)}") from None
        return index, mtu
