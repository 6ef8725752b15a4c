"""The UDP backend's data path (mirrors pkg/backend/udp/proxy_amd64.c).

flannel's udp backend moves every packet through user space: the kernel routes a
packet for another node's subnet into the TUN device ``flannel0``; the proxy reads
it, looks the destination up in its own route table (one entry per lease: subnet ->
that node's PublicIP:Port), and sends the whole IP packet, untouched but for the TTL,
as the payload of one UDP datagram. The receiving proxy writes the payload back into
its own TUN device and the kernel delivers it. No header is added: the outer UDP/IP
headers are the only overhead (28 bytes, hence FLANNEL_MTU = underlay MTU - 28).

What the C code does, and this module does the same way:

* the route table is a list searched first-match from the top; a hit is swapped to
  the front, because packets for one destination come in bursts;
* a packet for a subnet nobody leased gets an ICMP "net unreachable" written back
  into the TUN device (from the TUN's own address, TTL 8), never for an ICMP packet
  and only for the first fragment;
* the TTL is decremented in both directions and the IP checksum patched
  incrementally (RFC 1624); a packet whose TTL reaches 0 is dropped;
* flanneld drives the table over a SOCK_SEQPACKET socketpair with fixed-size
  commands: SET_ROUTE (subnet, prefix length, next hop IP and port), DEL_ROUTE, STOP;
* errors are only printed with flanneld's ``-v=1`` or more.

The loop is C's too: one thread polls the TUN, the UDP socket and the control socket,
then moves packets both ways until both are empty (the TUN non-blocking, the socket
blocking but read with MSG_DONTWAIT, as in C). Where it differs, and why:

* C takes one packet from each side in turn; here each turn takes up to BURST (64)
  packets from one side. Every read that finds nothing is a system call and, in
  Python, a call through the interpreter; one per burst instead of one per packet.
  After ROUNDS bursts each way the loop goes back to poll(), so a command waits for at
  most 2 x 16 x 64 packets (C neglects the control socket for as long as traffic flows).
* an empty TUN read returns None (io.FileIO.readinto) rather than raising, which
  os.read would do at EAGAIN; the socket's EAGAIN raises once per burst.
* Earlier versions used a thread per direction blocked in read(): measured on 2 CPUs
  (README: "Backends, a routed underlay, benchmarks") that cost ~20% more CPU per packet than this loop: every packet
  woke a sleeping thread, and the two threads handed the GIL back and forth. A forked
  process per direction measured no better. flannel's own C proxy, measured in the
  same lab, needs ~25% less CPU per packet than this one: most of a packet's cost is
  the kernel's (TUN, UDP, bridge, netfilter, the container's TCP) and is the same for
  both; what remains is the interpreter (~6 us of ~40 us per data packet).

The proxy runs as its own process
(``python -m labkit.flannel.backends.udp.proxy``), started by flanneld with the three
file descriptors, so it never waits for flanneld's etcd and grpc threads. It dies with
flanneld (PR_SET_PDEATHSIG, and end of file on the control socket), and then the TUN
device, which only lives as long as an open file holds it, disappears: exactly what
happens when flannel stops.
"""
from __future__ import annotations

import ctypes
import errno
import io
import os
import select
import signal
import socket
import struct
import sys
import threading

CMD_SET_ROUTE = 1
CMD_DEL_ROUTE = 2
CMD_STOP = 3

# struct command {int cmd; in_addr_t dest_net; int dest_net_len; in_addr_t next_hop_ip;
#                 short next_hop_port;} on amd64: 18 bytes + 2 of padding. Addresses
# travel in network byte order, as in_addr_t does.
COMMAND = struct.Struct("=i4si4sH2x")

IPPROTO_ICMP = 1
ICMP_DEST_UNREACH = 3
ICMP_NET_UNREACH = 0
MAX_IPOPTLEN = 40
IPHDR_LEN = 20


# -- commands (cproxy_amd64.go: setRoute, removeRoute, stopProxy) -------------------------
def pack_command(cmd: int, dest_net: str = "0.0.0.0", dest_net_len: int = 0,
                 next_hop_ip: str = "0.0.0.0", next_hop_port: int = 0) -> bytes:
    return COMMAND.pack(cmd, socket.inet_aton(dest_net), dest_net_len,
                        socket.inet_aton(next_hop_ip), next_hop_port & 0xFFFF)


def unpack_command(data: bytes) -> tuple[int, str, int, str, int]:
    cmd, net, plen, hop, port = COMMAND.unpack(data[:COMMAND.size].ljust(COMMAND.size, b"\0"))
    return cmd, socket.inet_ntoa(net), plen, socket.inet_ntoa(hop), port


# -- pure helpers ---------------------------------------------------------------------------
def netmask(prefix_len: int) -> int:
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF if prefix_len else 0


def cksum(data: bytes | bytearray) -> int:
    """The Internet checksum (one's complement of the one's complement sum)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def decrement_ttl(buf: bytearray) -> bool:
    """TTL - 1 in place, checksum patched (RFC 1624); False when it reaches 0 (drop).

    The TTL is the high byte of header word 4, so the word drops by 0x100 and the
    checksum, its one's complement, grows by 0x100 with the carry wrapped around.
    """
    ttl = (buf[8] - 1) & 0xFF
    buf[8] = ttl
    if ttl == 0:
        return False
    c = (buf[10] << 8 | buf[11]) + 0x100
    if c >= 0xFFFF:
        c = (c + 1) & 0xFFFF
    buf[10] = c >> 8
    buf[11] = c & 0xFF
    return True


def net_unreachable(offender: bytes | bytearray | memoryview, tun_addr: bytes) -> bytes | None:
    """The ICMP net-unreachable packet the proxy writes back for `offender`, or None.

    None, as in send_net_unreachable(): for a malformed header, for an ICMP packet
    (RFC 792: no ICMP about ICMP) and for any fragment but the first.
    """
    ihl = (offender[0] & 0x0F) * 4
    if ihl >= IPHDR_LEN + MAX_IPOPTLEN:
        return None
    if offender[9] == IPPROTO_ICMP:
        return None
    if (offender[6] << 8 | offender[7]) & 0x1FFF:
        return None
    quoted = bytes(offender[:ihl + 8]).ljust(ihl + 8, b"\0")
    pktlen = IPHDR_LEN + 8 + len(quoted)
    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, pktlen, 0, 0, 8, IPPROTO_ICMP, 0,
                                tun_addr, bytes(offender[12:16])))
    iph[10:12] = struct.pack("!H", cksum(iph))
    icmp = bytearray(struct.pack("!BBHI", ICMP_DEST_UNREACH, ICMP_NET_UNREACH, 0, 0) + quoted)
    icmp[2:4] = struct.pack("!H", cksum(icmp))
    return bytes(iph + icmp)


class RouteEntry:
    """proxy_amd64.c's route_entry: network and mask as integers, and the next hop
    (ip, port); mutable, as set_route overwrites the next hop in place."""

    __slots__ = ("net", "mask", "hop")

    def __init__(self, net: int, mask: int, hop: tuple[str, int]) -> None:
        self.net = net
        self.mask = mask
        self.hop = hop


class RouteTable:
    """set_route/del_route/find_route of proxy_amd64.c: a list, first match wins."""

    def __init__(self) -> None:
        self.routes: list[RouteEntry] = []
        self.lock = threading.Lock()

    def set_route(self, dest_net: str, prefix_len: int, hop_ip: str, hop_port: int) -> None:
        mask = netmask(prefix_len)
        net = int.from_bytes(socket.inet_aton(dest_net), "big") & mask
        with self.lock:
            for r in self.routes:
                if r.net == net and r.mask == mask:
                    r.hop = (hop_ip, hop_port)
                    return
            self.routes.append(RouteEntry(net, mask, (hop_ip, hop_port)))

    def del_route(self, dest_net: str, prefix_len: int) -> bool:
        mask = netmask(prefix_len)
        net = int.from_bytes(socket.inet_aton(dest_net), "big") & mask
        with self.lock:
            for i, r in enumerate(self.routes):
                if r.net == net and r.mask == mask:
                    self.routes[i] = self.routes[-1]  # the last entry fills the hole
                    self.routes.pop()
                    return True
        return False

    def find_route(self, dst: int) -> tuple[str, int] | None:
        """The next hop for dst, swapping the matching entry to the front."""
        with self.lock:
            routes = self.routes
            for i, r in enumerate(routes):
                if dst & r.mask == r.net:
                    if i:
                        routes[0], routes[i] = r, routes[0]
                    return r.hop
        return None

    def entries(self) -> list[tuple[str, int, str, int]]:
        with self.lock:
            return [(socket.inet_ntoa(r.net.to_bytes(4, "big")), 32 - (~r.mask & 0xFFFFFFFF).bit_length(),
                     r.hop[0], r.hop[1]) for r in self.routes]


# -- the proxy --------------------------------------------------------------------------------
BURST = 64    # packets taken from one descriptor before turning to the other
ROUNDS = 16   # bursts each way before poll() again: a command waits for at most this many


class Proxy:
    """run_proxy(tun, sock, ctl, tun_ip, tun_mtu, log_errors): one poll() loop, as in C."""

    def __init__(self, tun_fd: int, sock: socket.socket, ctl: socket.socket | None,
                 tun_ip: str, mtu: int, log_errors: bool = False) -> None:
        self.tun_fd = tun_fd
        self.sock = sock
        self.ctl = ctl
        self.tun_addr = socket.inet_aton(tun_ip)
        self.mtu = mtu
        self.log_enabled = log_errors
        self.table = RouteTable()
        self.stopped = threading.Event()
        # one buffer per direction, reused for every packet (C has one for both)
        self._tun_buf = bytearray(mtu)
        self._udp_buf = bytearray(mtu)
        # non-blocking read() of the TUN: None at EAGAIN, where os.read would raise
        self._tun_readinto = io.FileIO(tun_fd, "rb", closefd=False).readinto

    def log_error(self, msg: str) -> None:
        if self.log_enabled:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    # -- control -------------------------------------------------------------------------
    def process_cmd(self, data: bytes) -> None:
        cmd, net, plen, hop, port = unpack_command(data)
        if cmd == CMD_SET_ROUTE:
            self.table.set_route(net, plen, hop, port)
        elif cmd == CMD_DEL_ROUTE:
            self.table.del_route(net, plen)
        elif cmd == CMD_STOP:
            self.stopped.set()

    def read_cmd(self) -> None:
        """One command from the control socket; end of file means flanneld is gone: so are we."""
        ctl = self.ctl
        assert ctl is not None, "serving commands needs the control socket"
        try:
            data = ctl.recv(COMMAND.size)
        except OSError as e:
            self.log_error(f"CTL recv failed: {e.strerror}")
            data = b""
        if not data:
            self.stopped.set()
            return
        self.process_cmd(data)

    # -- tun -> udp ------------------------------------------------------------------------
    def tun_to_udp(self, burst: int = BURST) -> int:
        """Up to `burst` packets from the TUN to their next hops; how many were read."""
        buf = self._tun_buf
        mv = memoryview(buf)
        readinto = self._tun_readinto
        sendto = self.sock.sendto
        routes = self.table.routes
        moved = 0
        while moved < burst:
            try:
                n = readinto(buf)
            except OSError as e:
                self.log_error(f"TUN recv failed: {e.strerror}")
                if e.errno == errno.EBADF:
                    self.stopped.set()
                return moved
            if n is None:  # EAGAIN: the TUN queue is empty
                return moved
            moved += 1
            if n < IPHDR_LEN:
                self.log_error(f"TUN recv packet too small: {n} bytes")
                continue
            dst = int.from_bytes(mv[16:20], "big")
            # fast path: the entry at the front (where the last hit was swapped to)
            try:
                r = routes[0]
                hop = r.hop if dst & r.mask == r.net else self.table.find_route(dst)
            except IndexError:
                hop = None
            if hop is None:
                self.send_net_unreachable(mv[:n])
                continue
            if not decrement_ttl(buf):
                self.log_zero_ttl(mv)
                continue
            try:
                sent = sendto(mv[:n], hop)
            except OSError as e:
                self.log_error(f"UDP send to {hop[0]}:{hop[1]} failed: {e.strerror}")
                continue
            if sent != n:
                self.log_error(f"Was only able to send {sent} out of {n} bytes to {hop[0]}:{hop[1]}")
        return moved

    def log_zero_ttl(self, mv: memoryview) -> None:
        """proxy_amd64.c's message for a packet whose TTL ran out (both directions)."""
        self.log_error(f"Discarding IP fragment {socket.inet_ntoa(mv[12:16])} -> "
                       f"{socket.inet_ntoa(mv[16:20])} due to zero TTL")

    def send_net_unreachable(self, offender: memoryview) -> None:
        ihl = (offender[0] & 0x0F) * 4
        if ihl >= IPHDR_LEN + MAX_IPOPTLEN:
            self.log_error(f"not sending net unreachable: mulformed ip pkt: iph={ihl}")
            return
        pkt = net_unreachable(offender, self.tun_addr)
        if pkt is None:
            return
        try:
            sent = os.write(self.tun_fd, pkt)
        except OSError as e:
            self.log_error(f"failed to send ICMP net unreachable: {e.strerror}")
            return
        if sent != len(pkt):
            self.log_error(f"failed to send ICMP net unreachable: only {sent} out of {len(pkt)} byte sent")

    # -- udp -> tun ------------------------------------------------------------------------
    def udp_to_tun(self, burst: int = BURST) -> int:
        """Up to `burst` datagrams from the socket into the TUN; how many were read.
        The mirror image of tun_to_udp, as proxy_amd64.c has tun_to_udp and udp_to_tun."""
        buf = self._udp_buf
        mv = memoryview(buf)
        recv_into = self.sock.recv_into
        write = os.write
        fd = self.tun_fd
        moved = 0
        while moved < burst:
            try:
                n = recv_into(buf, 0, socket.MSG_DONTWAIT)  # as C: the socket itself blocks
            except BlockingIOError:
                return moved
            except OSError as e:
                self.log_error(f"UDP recv failed: {e.strerror}")
                if e.errno == errno.EBADF:
                    self.stopped.set()
                return moved
            moved += 1
            if n < IPHDR_LEN:
                self.log_error(f"UDP recv packet too small: {n} bytes")
                continue
            if not decrement_ttl(buf):
                self.log_zero_ttl(mv)
                continue
            while True:
                try:
                    sent = write(fd, mv[:n])
                except BlockingIOError:
                    continue  # tun_send_packet retries on EAGAIN
                except OSError as e:
                    self.log_error(f"TUN send failed: {e.strerror}")
                    break
                if sent != n:
                    self.log_error(f"Was only able to send {sent} out of {n} bytes to TUN")
                break
        return moved

    # -- run -------------------------------------------------------------------------------
    def serve(self) -> None:
        """run_proxy's loop: poll() the TUN, the socket and the control socket (when there
        is one); then move packets both ways, a burst at a time, until both are empty."""
        os.set_blocking(self.tun_fd, False)  # as in C: the TUN non-blocking, the socket not
        self.sock.setblocking(True)
        poller = select.poll()
        data_fds = (self.tun_fd, self.sock.fileno())
        for fd in data_fds:
            poller.register(fd, select.POLLIN)
        ctl_fd = -1
        if self.ctl is not None:
            ctl_fd = self.ctl.fileno()
            poller.register(ctl_fd, select.POLLIN)
        tun_to_udp, udp_to_tun = self.tun_to_udp, self.udp_to_tun
        while not self.stopped.is_set():
            events = poller.poll()
            for fd, ev in events:
                if fd == ctl_fd:
                    self.read_cmd()  # POLLHUP too: recv then sees the end of file
                elif ev & select.POLLNVAL:
                    self.log_error(f"Poll failed: fd {fd} is not open")
                    self.stopped.set()
            for _ in range(ROUNDS):
                if not (tun_to_udp() | udp_to_tun()):
                    break

    def start(self) -> None:
        """serve() in a thread (a daemon: it ends with the process)."""
        threading.Thread(target=self.serve, name="run_proxy", daemon=True).start()

    def run(self) -> None:
        """serve() here, until STOP or until flanneld goes away."""
        self.serve()


# -- the proxy process ---------------------------------------------------------------------
PR_SET_PDEATHSIG = 1


PR_SET_NAME = 15


def _set_name(name: bytes) -> None:
    """The name `ps -o comm` and /proc/PID/comm show."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="flanneld-udp-proxy",
                                description="flannel's udp backend data path (started by flanneld)")
    p.add_argument("--tun-fd", type=int, required=True)
    p.add_argument("--sock-fd", type=int, required=True)
    p.add_argument("--ctl-fd", type=int, required=True)
    p.add_argument("--tun-ip", required=True)
    p.add_argument("--mtu", type=int, required=True)
    p.add_argument("--parent", type=int, default=0)
    p.add_argument("--log-errors", action="store_true")
    a = p.parse_args(argv)
    if a.parent:
        _die_with_parent(a.parent)
    _set_name(b"udp-proxy")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sock = socket.socket(fileno=a.sock_fd)
    ctl = socket.socket(fileno=a.ctl_fd)
    Proxy(a.tun_fd, sock, ctl, a.tun_ip, a.mtu, a.log_errors).run()
    os._exit(0)  # data threads are blocked in read(): do not wait for them


if __name__ == "__main__":
    sys.exit(main())
