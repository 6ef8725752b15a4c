"""Netlink helpers shared by the backends (mirrors flannel's pkg/ip: iface.go, ipnet.go).

flannel keeps what several backends do to the kernel in one package: put the lease's
address on a device (``EnsureV4AddressOnLink``), decide whether a peer is on the
local segment (``DirectRouting``), list routes. So does labkit, and the netlink
numbers they use are named here once, with errors printed as Go prints an errno.
Flannel-side module: the lab's status and cleanup may import it, never the reverse.
"""
from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

if TYPE_CHECKING:
    from pyroute2 import IPRoute  # pyroute2 ships no types: to mypy this is Any

# a pyroute2 netlink message (ifinfmsg, ifaddrmsg, rtmsg, ...): untyped data
NetlinkMessage: TypeAlias = Any
_P = ParamSpec("_P")
_R = TypeVar("_R")

# address families (linux/socket.h)
AF_INET = 2
AF_BRIDGE = 7            # the FDB: `bridge fdb`
# routes (linux/rtnetlink.h)
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3          # what vishvananda/netlink sets when Protocol is left zero
RTNH_F_ONLINK = 4        # `onlink`: the gateway is on the link even without a route to it
# neighbours (linux/neighbour.h)
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_PERMANENT = 0x80
NTF_SELF = 0x02          # an FDB entry of the device itself (not of a bridge port)
# errnos that flannel tests for
EEXIST = errno.EEXIST
EOPNOTSUPP = errno.EOPNOTSUPP


def errno_of(err: BaseException) -> int | None:
    """The errno behind a pyroute2 NetlinkError (``code``) or an OSError (``errno``)."""
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    return code if isinstance(code, int) and code else None


def go_strerror(err: BaseException) -> str:
    """An errno as Go's syscall.Errno prints it ("network is unreachable", lower case);
    anything else as its own text."""
    code = errno_of(err)
    if code is None:
        return str(err)
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def checked(message: str, fn: Callable[_P, _R], *args: _P.args, **kw: _P.kwargs) -> _R:
    """fn(*args, **kw), or RuntimeError("<message>: <errno as Go prints it>"): Go's
    ``if err != nil { return fmt.Errorf("<message>: %v", err) }``."""
    try:
        return fn(*args, **kw)
    except Exception as e:
        raise RuntimeError(f"{message}: {go_strerror(e)}") from None


@dataclass(frozen=True)
class KernelRoute:
    """One IPv4 route of the main table, as read back over netlink."""

    dst: ipaddress.IPv4Network | None   # None: the default route
    gw: ipaddress.IPv4Address | None
    oif: int
    flags: int
    table: int


def main_routes(ipr: IPRoute, dst: ipaddress.IPv4Network | None = None) -> list[KernelRoute]:
    """RouteList (or RouteListFiltered on Dst): the IPv4 routes of the main table."""
    out: list[KernelRoute] = []
    for r in ipr.get_routes(family=AF_INET):
        table = r.get_attr("RTA_TABLE") or r["table"]
        if table != RT_TABLE_MAIN:
            continue
        d = r.get_attr("RTA_DST")
        net = ipaddress.IPv4Network(f"{d}/{r['dst_len']}") if d is not None else None
        if dst is not None and net != dst:
            continue
        gw = r.get_attr("RTA_GATEWAY")
        out.append(KernelRoute(net, ipaddress.IPv4Address(gw) if gw else None,
                               r.get_attr("RTA_OIF") or 0, r["flags"], table))
    return out


def routes_into(ipr: IPRoute, network: ipaddress.IPv4Network | str) -> list[KernelRoute]:
    """The main table's routes whose destination lies inside `network` (the flannel Network)."""
    network = ipaddress.IPv4Network(network)
    return [r for r in main_routes(ipr) if r.dst is not None and r.dst.subnet_of(network)]


def direct_routing(ipr: IPRoute, public_ip: ipaddress.IPv4Address | str) -> bool:
    """ip.DirectRouting: one route to the peer, without a gateway: same L2 segment."""
    routes = ipr.route("get", dst=str(public_ip))
    return len(routes) == 1 and routes[0].get_attr("RTA_GATEWAY") is None


def ensure_v4_address_on_link(ipr: IPRoute, index: int, ipa: ipaddress.IPv4Interface,
                              network: ipaddress.IPv4Network,
                              on_remove: Callable[[ipaddress.IPv4Interface], None] | None = None) -> None:
    """ip.EnsureV4AddressOnLink: `ipa` on the link; other addresses *inside* `network`
    removed (flannel >= v0.14), addresses outside it left alone. `on_remove(addr)` is
    told of each removal (the vxlan device logs it, as iface.go does)."""
    has = False
    for a in ipr.get_addr(family=AF_INET, index=index):
        addr = ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        if addr == ipa:
            has = True
        elif addr.ip in network:
            ipr.addr("del", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
            if on_remove is not None:
                on_remove(addr)
    if not has:
        ipr.addr("add", index=index, address=str(ipa.ip), prefixlen=ipa.network.prefixlen)
