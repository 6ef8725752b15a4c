"""The per-peer netlink requests of the VXLAN backend, packed by hand (vishvananda/netlink's part).

For every peer's lease flanneld sends three requests (``vxlan_network.go``: AddARP,
AddFDB, then the onlink route) and three more when the lease goes. pyroute2 builds each
request through generic layers that cost about 0.6 ms of CPU in Python; in a 100-node
lab that is 100 x 99 x 3 requests, some 20 CPU-seconds, which on two cores is most of a
bring-up. These messages are fixed and small, so here each one is ``struct.pack``-ed
(headers and attributes as in ``linux/neighbour.h``, ``linux/rtnetlink.h``) and sent on a
plain NETLINK_ROUTE socket, one request at a time, each waiting for its acknowledgement:
the kernel sees the same messages in the same order as before, and an error comes back as
pyroute2's ``NetlinkError`` (same errno, same text in flanneld's log lines).
Everything else (devices, addresses, dumps) stays with pyroute2.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterator

from pyroute2.netlink.exceptions import NetlinkError

NETLINK_ROUTE = 0
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
NDA_DST, NDA_LLADDR = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

NLMSGHDR = struct.Struct("=IHHII")      # len, type, flags, seq, pid
NDMSG = struct.Struct("=BxxxiHBB")      # family, pad, ifindex, state, flags, type
RTMSG = struct.Struct("=BBBBBBBBI")     # family, dst_len, src_len, tos, table, protocol, scope, type, flags


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr (length, type, payload), padded to 4 bytes."""
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def _mac(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _ip4(ip: str | ipaddress.IPv4Address) -> bytes:
    """Four bytes of an address; a string is read by inet_pton, which takes only a dotted quad
    (as ipaddress does) at a tenth of ipaddress's cost: three per peer, 30,000 in a 100-node lab."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.packed
    try:
        return socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        raise ValueError(f"{ip!r} does not appear to be an IPv4 address") from None


def neigh_msg(msg_type: int, flags: int, family: int, ifindex: int, state: int, ntf_flags: int,
              dst: str, mac: str) -> bytes:
    """RTM_NEWNEIGH/RTM_DELNEIGH body: ndmsg, then NDA_DST and NDA_LLADDR (as `ip neigh`/`bridge fdb`)."""
    body = NDMSG.pack(family, ifindex, state, ntf_flags, 0) + _attr(NDA_DST, _ip4(dst)) + _attr(NDA_LLADDR, _mac(mac))
    return _header(msg_type, flags, body)


def route_msg(msg_type: int, flags: int, dst: ipaddress.IPv4Network, gateway: str, oif: int | None,
              rt_flags: int = 0, protocol: int = 0) -> bytes:
    """RTM_NEWROUTE/RTM_DELROUTE body: rtmsg in the main table, RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF."""
    body = RTMSG.pack(socket.AF_INET, dst.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, RT_SCOPE_UNIVERSE,
                      RTN_UNICAST, rt_flags)
    body += _attr(RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN)) + _attr(RTA_DST, dst.network_address.packed)
    body += _attr(RTA_GATEWAY, _ip4(gateway))
    if oif is not None:
        body += _attr(RTA_OIF, struct.pack("=i", oif))
    return _header(msg_type, flags, body)


def _header(msg_type: int, flags: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, 0, 0) + body


def messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, length, type, sequence, port) of each netlink message in one datagram."""
    off = 0
    while off + NLMSGHDR.size <= len(data):
        length, kind, _, mseq, port = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size:
            return
        yield off, length, kind, mseq, port
        off += (length + 3) & ~3


def error_of(data: bytes, off: int) -> int:
    """The errno an NLMSG_ERROR message at `off` carries (0: an acknowledgement)."""
    err: int = struct.unpack_from("=i", data, off + NLMSGHDR.size)[0]
    return -err


def ack_errno(data: bytes, seq: int) -> int | None:
    """The errno of the NLMSG_ERROR answering `seq` in `data` (0 = success), or None."""
    for off, _, kind, mseq, _ in messages(data):
        if kind == NLMSG_ERROR and mseq == seq:
            return error_of(data, off)
    return None


class PeerLinks:
    """A NETLINK_ROUTE socket in this process's network namespace for the per-peer requests."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0
        self.lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def request(self, msg: bytes) -> None:
        """Send one request with NLM_F_ACK and wait for its answer; NetlinkError on an error."""
        with self.lock:
            self.seq += 1
            seq = self.seq
            msg = msg[:8] + struct.pack("=II", seq, 0) + msg[16:]
            self.sock.send(msg)
            while True:
                err = ack_errno(self.sock.recv(65536), seq)
                if err is not None:
                    break
        if err:
            raise NetlinkError(err, os.strerror(err))

    # -- the calls flannel's vxlan backend makes ------------------------------------------
    def neigh_replace(self, family: int, ifindex: int, dst: str, mac: str, state: int, flags: int = 0) -> None:
        """netlink.NeighSet: `ip neigh replace` (AF_INET) / `bridge fdb replace ... self` (AF_BRIDGE)."""
        self.request(neigh_msg(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                               family, ifindex, state, flags, dst, mac))

    def neigh_del(self, family: int, ifindex: int, dst: str, mac: str, state: int = 0, flags: int = 0) -> None:
        """netlink.NeighDel."""
        self.request(neigh_msg(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, family, ifindex, state, flags, dst, mac))

    def route_replace(self, dst: ipaddress.IPv4Network, gateway: str, oif: int | None, flags: int = 0,
                      protocol: int = 0) -> None:
        """netlink.RouteReplace: `ip route replace DST via GW [dev OIF] [onlink] [proto P]`."""
        self.request(route_msg(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                               dst, gateway, oif, flags, protocol))

    def route_del(self, dst: ipaddress.IPv4Network, gateway: str, oif: int | None) -> None:
        """netlink.RouteDel."""
        self.request(route_msg(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, dst, gateway, oif))
