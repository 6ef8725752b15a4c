"""The udp network (mirrors pkg/backend/udp/udp_network_amd64.go and cproxy_amd64.go).

What flanneld builds for the udp backend, in flannel's order:
1. a TUN device from ``/dev/net/tun`` named ``flannel%d`` (the kernel picks the
   number: ``flannel0`` unless one exists), IFF_TUN|IFF_NO_PI: raw IP packets, no
   extra header. A TUN device lives as long as a file holds it open, so it vanishes
   (with its address and route) when flanneld stops;
2. on it: the lease's network address as a /32 (no broadcast route; a source
   address on the flannel network for host-to-pod traffic), MTU = underlay MTU - 28
   (20 IP + 8 UDP), link up, and ONE route: the whole Network via flannel0. The
   node's own /24 is more specific and goes to docker0; everything else in the
   Network ends up in the proxy. There are no per-node kernel routes: the per-node
   table lives in the proxy;
3. a UDP socket bound to the interface address and Port (8285);
4. a control socketpair; each lease event becomes a SET_ROUTE or DEL_ROUTE command.

One difference, for speed: the socket's receive buffer is raised to 4 MiB (flannel
keeps the kernel default). A Python proxy drains it more slowly than flannel's C
one, and a full buffer would drop packets and stall TCP.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import sys
from typing import TYPE_CHECKING

from ... import log, versions
from ...ip import EEXIST, RTPROT_BOOT, checked, errno_of, go_strerror
from ...subnet import EVENT_ADDED, EVENT_REMOVED, Event, Lease
from ..catalogue import encap_overhead
from ..simple_network import SimpleNetwork
from .proxy import CMD_DEL_ROUTE, CMD_SET_ROUTE, CMD_STOP, pack_command

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ...etcd_manager import LocalManager
    from ...iface import ExternalInterface

SRC = "udp_network_amd64.go"
ENCAP_OVERHEAD = encap_overhead("udp")  # 20 bytes IP header + 8 bytes UDP header
TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SO_RCVBUFFORCE = 33
RCVBUF = 4 << 20


def open_tun(name: str = "flannel%d") -> tuple[int, str]:
    """ip.OpenTun: open /dev/net/tun and TUNSETIFF; returns (fd, the kernel's name)."""
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    ifr = struct.pack("16sH", name.encode()[:15], IFF_TUN | IFF_NO_PI)
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as e:
        os.close(fd)
        raise OSError(f"ioctl failed with '{go_strerror(e)}'") from None
    return fd, res[:16].rstrip(b"\0").decode()


def configure_iface(ipr: IPRoute, ifname: str, ipn: ipaddress.IPv4Interface, mtu: int) -> int:
    """/32 address, MTU, up, and the route for the whole Network (EEXIST is fine).
    Before v0.11.0 the address had the Network's prefix (versions.py, udp_tun_address)."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise RuntimeError(f"failed to lookup interface {ifname}")
    idx: int = found[0]
    plen = 32 if versions.active()["udp_tun_address"] == "/32" else ipn.network.prefixlen
    checked(f"failed to add IP address {ipn.ip}/{plen} to {ifname}", ipr.addr, "add", index=idx,
            address=str(ipn.ip), prefixlen=plen)
    checked(f"failed to set MTU for {ifname}", ipr.link, "set", index=idx, mtu=mtu)
    checked(f"failed to set interface {ifname} to UP state", ipr.link, "set", index=idx, state="up")
    # explicit, because a route for the subnet may already be there (docker's) and then
    # the kernel would not add the device route by itself
    try:
        ipr.route("add", dst=str(ipn.network), oif=idx, scope=0, proto=RTPROT_BOOT)
    except Exception as e:
        if errno_of(e) != EEXIST:
            raise RuntimeError(f"failed to add route ({ipn.network} -> {ifname}): {go_strerror(e)}") from None
    return idx


class UdpNetwork(SimpleNetwork):
    def __init__(self, sm: LocalManager, ext_iface: ExternalInterface, port: int, tun_net: ipaddress.IPv4Interface,
                 lease: Lease, ipr: IPRoute, verbosity: int = 0) -> None:
        """`verbosity` is flanneld's -v (klog's V level): the proxy logs its errors from 1 up."""
        super().__init__(sm, ext_iface, lease, ipr)
        self.port = port
        self.tun_net = tun_net
        self.verbosity = verbosity
        # initTun
        try:
            self.tun, self.tun_name = open_tun("flannel%d")
        except OSError as e:
            raise RuntimeError(f"failed to open TUN device: {e}") from None
        self.tun_index = configure_iface(ipr, self.tun_name, tun_net, self.mtu())
        # the UDP socket, on the interface address
        self.conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.conn.bind((str(ext_iface.iface_addr), port))
        except OSError as e:
            raise RuntimeError(f"failed to start listening on UDP socket: listen udp4 "
                               f"{ext_iface.iface_addr}:{port}: bind: {go_strerror(e)}") from None
        try:
            self.conn.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            pass
        try:
            self.ctl, self.ctl2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            raise RuntimeError(f"failed to create control socket: {go_strerror(e)}") from None
        self.proxy = self._start_proxy()

    def _start_proxy(self) -> subprocess.Popen[bytes]:
        """runCProxy: the data path, in its own process (see proxy.py for why)."""
        fds = (self.tun, self.conn.fileno(), self.ctl2.fileno())
        argv = [sys.executable, "-m", "labkit.flannel.backends.udp.proxy",
                f"--tun-fd={fds[0]}", f"--sock-fd={fds[1]}", f"--ctl-fd={fds[2]}",
                f"--tun-ip={self.tun_net.ip}", f"--mtu={self.mtu()}", f"--parent={os.getpid()}"]
        if self.verbosity >= 1:
            argv.append("--log-errors")
        return subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL)

    def mtu(self) -> int:
        """FLANNEL_MTU: the underlay MTU minus the outer IP and UDP headers."""
        return self.ext_iface.mtu - ENCAP_OVERHEAD

    def _write_command(self, data: bytes) -> None:
        try:
            self.ctl.send(data)
        except OSError as e:
            log.error("cproxy_amd64.go", f"Error while writing the command {data!r}. Error: {go_strerror(e)}")

    def handle_subnet_events(self, batch: list[Event]) -> None:
        """processSubnetEvents: no BackendType check, udp leases have none."""
        for event in batch:
            sn = event.lease.subnet
            if event.type == EVENT_ADDED:
                log.info(SRC, f"Subnet added: {sn}")
                self._write_command(pack_command(CMD_SET_ROUTE, str(sn.network_address), sn.prefixlen,
                                                 event.lease.attrs.public_ip, self.port))
            elif event.type == EVENT_REMOVED:
                log.info(SRC, f"Subnet removed: {sn}")
                self._write_command(pack_command(CMD_DEL_ROUTE, str(sn.network_address), sn.prefixlen))
            else:
                log.error(SRC, f"Internal error: unknown event type: {event.type}")

    def stop(self) -> None:
        """stopProxy (flannel sends it when its event channel closes)."""
        self._write_command(pack_command(CMD_STOP))
