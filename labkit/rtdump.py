"""What flanneld programmed, read straight from a node's kernel: one netlink dump per table.

The convergence checks (``Lab.wait_converged``, ``labkit bench scale``) ask every node of a
big lab, again and again, how many peers it has a route, an ARP entry and an FDB entry for.
Asked through ``ip``/``bridge`` that was two or three processes per node per round (5-6
CPU-ms a node, about a second per round at 100 nodes, taken from the flanneld processes
being measured); through pyroute2 it was worse (its message objects). Here a thread steps
into the node's namespace, opens a plain NETLINK_ROUTE socket (``netns.route_socket``: it
stays bound to that namespace), steps back, sends one dump request (``RTM_GETROUTE`` or
``RTM_GETNEIGH``, as ``ip route``/``ip neigh``/``bridge fdb`` send) and unpacks only the
fields the checks need.
Read-only: nothing here changes a namespace.
"""
from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

from . import netns
from .flannel.ip import AF_BRIDGE, NUD_PERMANENT, RT_TABLE_MAIN
from .flannel.netlink import (
    NDA_DST,
    NDMSG,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NLMSGHDR,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMSG,
    error_of,
    messages,
)

NLMSG_DONE = 3
RTM_GETROUTE, RTM_GETNEIGH = 26, 30
NLM_F_DUMP = 0x300
_RTA = struct.Struct("=HH")           # length, type


class Route(NamedTuple):
    dst: int             # the destination address as an integer (0 for the default route)
    dst_len: int
    gateway: int | None
    oif: int | None
    table: int


class Neighbour(NamedTuple):
    ifindex: int
    state: int
    dst: bytes | None    # NDA_DST: the IP address (ARP), the remote VTEP (FDB), or None


def _attrs(buf: bytes, offset: int, end: int) -> dict[int, bytes]:
    """The route attributes (type -> value) between offset and end; nested ones are left whole."""
    out: dict[int, bytes] = {}
    while offset + 4 <= end:
        length, kind = _RTA.unpack_from(buf, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


@contextlib.contextmanager
def _socket(ns: str) -> Iterator[socket.socket]:
    """A netlink socket inside namespace `ns` for one or more dumps, closed afterwards."""
    sock = netns.route_socket(ns)
    try:
        sock.settimeout(10)   # a dump answers in milliseconds: never wait forever on the kernel
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        yield sock
    finally:
        sock.close()


def _dump(sock: socket.socket, msg_type: int, header: bytes) -> Iterator[tuple[int, bytes, int, int]]:
    """Every message of one dump on `sock`: (type, buffer, where its body starts, where it
    ends). Raises OSError with the kernel's errno if it answers with an error."""
    port = sock.getsockname()[0]
    seq = int.from_bytes(os.urandom(2), "big") + 1
    sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(header), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + header)
    while True:
        buf = sock.recv(1 << 16)
        if len(buf) < NLMSGHDR.size:
            return
        for off, length, kind, got_seq, got_port in messages(buf):
            if got_seq != seq or got_port != port:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                err = error_of(buf, off)
                if err:
                    raise OSError(err, os.strerror(err))
                return
            yield kind, buf, off + NLMSGHDR.size, off + length


def routes(ns: str) -> list[Route]:
    """The IPv4 routes of every table in namespace `ns` (as `ip route show table all`)."""
    with _socket(ns) as sock:
        return _routes(sock)


def _routes(sock: socket.socket) -> list[Route]:
    out = []
    for kind, buf, at, end in _dump(sock, RTM_GETROUTE, RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
        if kind != RTM_NEWROUTE:
            continue
        family, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = RTMSG.unpack_from(buf, at)
        if family != socket.AF_INET:
            continue
        a = _attrs(buf, at + RTMSG.size, end)
        dst, gw, oif = a.get(RTA_DST), a.get(RTA_GATEWAY), a.get(RTA_OIF)
        out.append(Route(int.from_bytes(dst, "big") if dst else 0, dst_len,
                         int.from_bytes(gw, "big") if gw else None,
                         struct.unpack("=i", oif)[0] if oif else None,
                         struct.unpack("=I", a[RTA_TABLE])[0] if RTA_TABLE in a else table))
    return out


def neighbours(ns: str, family: int = socket.AF_INET) -> list[Neighbour]:
    """The neighbour entries of namespace `ns`: ARP (AF_INET) or the bridge FDB (AF_BRIDGE,
    as `bridge fdb show`; a VXLAN device's remote VTEPs are there with NDA_DST)."""
    with _socket(ns) as sock:
        return _neighbours(sock, family)


def _neighbours(sock: socket.socket, family: int) -> list[Neighbour]:
    out = []
    for kind, buf, at, end in _dump(sock, RTM_GETNEIGH, NDMSG.pack(family, 0, 0, 0, 0)):
        if kind != RTM_NEWNEIGH:
            continue
        fam, ifindex, state, _flags, _type = NDMSG.unpack_from(buf, at)
        if fam != family:
            continue
        out.append(Neighbour(ifindex, state, _attrs(buf, at + NDMSG.size, end).get(NDA_DST)))
    return out


def gateway_routes(ns: str, base: int, plen: int) -> set[tuple[int, int]]:
    """(destination, length) of each main-table route with a gateway whose destination lies
    inside base/plen (the flannel Network): the routes flanneld adds for its peers."""
    mask = ((1 << plen) - 1) << (32 - plen)
    return {(r.dst, r.dst_len) for r in routes(ns)
            if r.table == RT_TABLE_MAIN and r.gateway is not None and r.dst_len >= plen
            and r.dst & mask == base}


def vxlan_peers(ns: str, dev: str) -> dict[str, int]:
    """On one node, how many peers flanneld has programmed on VXLAN device `dev`: routes via
    it with a gateway, PERMANENT ARP entries on it, FDB entries on it with a remote VTEP."""
    idx = netns.ifindex(ns, dev)
    if idx is None:
        return {"routes": 0, "arp": 0, "fdb": 0}
    with _socket(ns) as sock:   # one socket, three dumps
        return {"routes": sum(r.oif == idx and r.gateway is not None and r.table == RT_TABLE_MAIN
                              for r in _routes(sock)),
                "arp": sum(n.ifindex == idx and n.state & NUD_PERMANENT != 0
                           for n in _neighbours(sock, socket.AF_INET)),
                "fdb": sum(n.ifindex == idx and n.dst is not None for n in _neighbours(sock, AF_BRIDGE))}
