"""Choosing the external interface (mirrors flannel's pkg/ipmatch/match.go).

flanneld needs one interface to reach other nodes: its address becomes the lease's
PublicIP (the node's identity in etcd) and the VXLAN device's local address. With
``-iface`` it is looked up by name or address; without, flannel takes the interface
of the default route, which is how every Vagrant VM ended up with 10.0.2.15.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ip import NetlinkMessage

if TYPE_CHECKING:
    from pyroute2 import IPRoute


@dataclass
class ExternalInterface:
    name: str
    index: int
    mtu: int
    iface_addr: ipaddress.IPv4Address   # the interface's own IPv4 address
    ext_addr: ipaddress.IPv4Address     # the address advertised to peers (-public-ip)


class InterfaceError(Exception):
    pass


def _links_and_addrs(ipr: IPRoute) -> tuple[dict[int, NetlinkMessage], list[tuple[int, str]]]:
    links = {link["index"]: link for link in ipr.get_links()}
    addrs = [(a["index"], a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=2)]
    return links, addrs


def lookup(ipr: IPRoute, iface: str | None, public_ip: str | None) -> ExternalInterface:
    """Find the interface by `-iface` (name or IP), else by the default route."""
    links, addrs = _links_and_addrs(ipr)
    index: int
    if iface:
        by_name = [i for i, link in links.items() if link.get_attr("IFLA_IFNAME") == iface]
        by_ip = [i for i, a in addrs if a == iface]
        found = by_name or by_ip
        if not found:
            raise InterfaceError(f"Could not find valid interface matching {iface}: "
                                 f"error looking up interface {iface}: route ip+net: no such network interface")
        index = found[0]
    else:
        routes = [r for r in ipr.get_routes(family=2) if r.get("dst_len") == 0
                  and r.get_attr("RTA_OIF") is not None]
        if not routes:
            raise InterfaceError("Failed to find any valid interface to use: "
                                 "failed to get default interface: Unable to find default route")
        index = routes[0].get_attr("RTA_OIF")
    link = links[index]
    own = [a for i, a in addrs if i == index]
    if not own:
        raise InterfaceError(f"Failed to find IPv4 address for interface {link.get_attr('IFLA_IFNAME')}")
    iface_addr = ipaddress.IPv4Address(own[0])
    ext = ipaddress.IPv4Address(public_ip) if public_ip else iface_addr
    return ExternalInterface(link.get_attr("IFLA_IFNAME"), index, link.get_attr("IFLA_MTU"),
                             iface_addr, ext)
