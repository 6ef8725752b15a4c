"""What each backend leaves in a node's kernel, and how an admin removes it.

flanneld never cleans up after *another* backend. On startup it creates (or keeps)
its own device and programs its own entries; whatever a previous backend made stays:

=========  ============================================  =====================================
backend    kernel objects                                 after flanneld stops
=========  ============================================  =====================================
vxlan      flannel.<VNI>, its /32, one ARP + one FDB      everything stays (the device is
           entry and one onlink route per peer            kept on purpose, see device.py)
udp        flannel0 (TUN), its /32, one route for the     all gone: a TUN device dies with
           whole Network                                  the process holding it open
host-gw    one ``<subnet> via <PublicIP> dev eth0`` per   the routes stay
           peer
ipip       flannel.ipip, its /32, one onlink route per    everything stays
           peer
=========  ============================================  =====================================

So switching vxlan -> udp leaves flannel.1's /24 routes in place, and they are *more
specific* than udp's single Network route: traffic keeps going through VXLAN (while
the peer still has flannel.1) and the switch looks as if it did nothing. host-gw's
routes do the same to udp. That is flannel's behaviour, and this module is what an
admin does about it, the equivalent of ``ip link del flannel.1`` and ``ip route del
<subnet> via <ip> dev eth0`` on every node before starting the new backend.
``Lab.switch_backend`` calls :func:`remove_leftovers` between stopping and starting
flanneld (``clean=False`` keeps the leftovers, to look at them).
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict

from ..ip import AF_BRIDGE, AF_INET, routes_into
from .catalogue import FLANNEL_DEVICE_RE, device_name

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["FLANNEL_DEVICE_RE", "device_name", "footprint", "peers_handled", "remove_leftovers"]


class Footprint(TypedDict):
    """What footprint() returns: device names, and one dict per route, ARP or FDB entry."""

    devices: list[str]
    routes: list[dict[str, str | None]]
    arp: list[dict[str, str | None]]
    fdb: list[dict[str, str | None]]


def footprint(ipr: IPRoute, network: ipaddress.IPv4Network | str) -> Footprint:
    """flannel's objects in this namespace: its devices, and routes into `network` that
    have a gateway or leave through a flannel device (docker0's own route is not one)."""
    network = ipaddress.IPv4Network(network)
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    devices = sorted(n for n in names.values() if FLANNEL_DEVICE_RE.match(n or ""))
    routes = [{"dst": str(r.dst), "via": str(r.gw) if r.gw else None, "dev": names.get(r.oif)}
              for r in routes_into(ipr, network)
              if r.gw or FLANNEL_DEVICE_RE.match(names.get(r.oif) or "")]
    fdb: list[dict[str, str | None]] = []
    arp: list[dict[str, str | None]] = []
    for idx, name in names.items():
        if not FLANNEL_DEVICE_RE.match(name or ""):
            continue
        for n in ipr.get_neighbours(family=AF_INET, ifindex=idx):
            arp.append({"dev": name, "ip": n.get_attr("NDA_DST"), "mac": n.get_attr("NDA_LLADDR")})
        for n in ipr.get_neighbours(family=AF_BRIDGE, ifindex=idx):
            if n.get_attr("NDA_DST"):
                fdb.append({"dev": name, "mac": n.get_attr("NDA_LLADDR"), "dst": n.get_attr("NDA_DST")})
    return {"devices": devices, "routes": routes, "arp": arp, "fdb": fdb}


def remove_leftovers(ipr: IPRoute, network: ipaddress.IPv4Network | str) -> list[str]:
    """Delete every flannel device and every gateway route into `network`.

    Returns the equivalent commands, in the order they were done. A device takes its
    addresses, ARP/FDB entries and routes with it, so only the routes through other
    devices (host-gw's and DirectRouting's, on eth0) need deleting one by one.
    """
    done: list[str] = []
    network = ipaddress.IPv4Network(network)
    for name in footprint(ipr, network)["devices"]:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except Exception:  # a TUN device may vanish by itself as its proxy exits
                continue
            done.append(f"ip link del {name}")
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    for r in routes_into(ipr, network):
        if r.gw:
            try:
                ipr.route("del", dst=str(r.dst), gateway=str(r.gw), oif=r.oif)
            except Exception:
                continue
            done.append(f"ip route del {r.dst} via {r.gw} dev {names.get(r.oif)}")
    return done


_ADDED_REMOVED = re.compile(r"Subnet (added|removed): (\d+\.\d+\.\d+\.\d+/\d+)")
_REFUSED = re.compile(r"Error adding route to \{Ifindex: \d+ Dst: (\d+\.\d+\.\d+\.\d+/\d+) ")


def peers_handled(backend: str, log: str,
                  routed: Iterable[ipaddress.IPv4Network]) -> set[ipaddress.IPv4Network]:
    """The peer subnets this node's flanneld has dealt with, from its current run.

    udp keeps its per-peer table inside the proxy, not in the kernel: its peers are
    the subnets logged "Subnet added" (and not removed since). A route network's
    peers are its kernel routes plus the ones the kernel refused (host-gw across a
    router): flanneld has done all it will do for those.
    """
    run = log[log.rfind("CLI flags config"):] if "CLI flags config" in log else log
    if backend == "udp":
        peers: set[ipaddress.IPv4Network] = set()
        for m in _ADDED_REMOVED.finditer(run):
            sn = ipaddress.IPv4Network(m.group(2))
            (peers.add if m.group(1) == "added" else peers.discard)(sn)
        return peers
    return set(routed) | {ipaddress.IPv4Network(m.group(1)) for m in _REFUSED.finditer(run)}
