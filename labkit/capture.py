"""Packet capture inside the lab, decoded layer by layer (scapy), saved as pcap.

``capture(lab, "node1", "eth0", filter="udp port 8472", count=4, traffic=...)`` opens a
packet socket on ``eth0`` *of node1*, runs the traffic, and returns what it saw.

How, and why this way:

* an ``AF_PACKET`` socket belongs to the network namespace it was created in. A short
  thread ``setns``-es into the node's (or container's) namespace, creates the socket,
  attaches the BPF filter and binds it to the interface, then exits: the socket keeps
  working from any thread, and no thread of the lab process ever stays in a node;
* the socket is created with protocol 0 (it receives nothing), the filter is attached,
  and only then is it bound with ETH_P_ALL: no packet that fails the filter slips in;
* every capture is bounded twice: it stops after ``count`` packets (per capture point)
  or after ``timeout`` seconds, whichever comes first;
* BPF filters are compiled by libpcap through scapy (the ``tcpdump`` syntax), and the
  packets are decoded by scapy, with VXLAN bound to UDP 8472 (the Linux default that
  flannel uses) and to the lab's configured port;
* the pcap files are plain libpcap files (Ethernet, or raw IP for a TUN device): they
  open in Wireshark (``-d udp.port==8472,vxlan`` for the VXLAN layer) and tcpdump
  (``-T vxlan``).

Traffic only ever flows between the lab's namespaces: the ``ping`` helper goes through
:meth:`Lab.ping`, which refuses addresses outside the lab.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import LabError
from .nsexec import enter_net
from .outfile import check_output_path

if TYPE_CHECKING:
    from .lab import Lab

T = TypeVar("T")
# (target, iface) or (target, iface, filter): a capture_many point
CapturePoint = tuple[str, str] | tuple[str, str, str | None]

MAX_PING_COUNT = 1000  # ping's interval here is 0.2 s: at most 200 s of pings

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
PKTTYPES = {0: "in", 1: "in", 2: "in", 3: "in", 4: "out"}
# ARPHRD_* (from the socket address) -> pcap DLT_* link type
ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE = 1, 772, 65534
DLT_EN10MB, DLT_RAW = 1, 101
VXLAN_PORT = 8472          # the kernel's default, which flannel keeps unless Backend.Port is set
# what the underlay's MTU must hold besides the container's IP packet: outer IP 20 + UDP 8 +
# VXLAN 8 + the *inner* Ethernet header 14 (the outer Ethernet header is not part of the MTU)
VXLAN_OVERHEAD = 50
SNAPLEN = 262144
MAX_COUNT = 10000
MAX_TIMEOUT = 300.0


# -- opening a socket inside a namespace ----------------------------------------------------
def linktype_for(hatype: int) -> int:
    if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return DLT_EN10MB
    if hatype == ARPHRD_NONE:          # a TUN device (flannel0 of the udp backend): raw IP
        return DLT_RAW
    return DLT_EN10MB


def attach_filter(sock: socket.socket, expr: str, linktype: int) -> None:
    # scapy is imported where it is used, not at the top: it takes ~0.6 s (python -X importtime),
    # and this module is imported by every node-side process that imports labkit.lab
    from scapy.arch.common import compile_filter, free_filter
    from scapy.libs.structures import sock_fprog
    try:
        bp = compile_filter(expr, linktype=linktype)
    except Exception as e:
        raise LabError(f"invalid capture filter {expr!r}: {e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(bp.bf_len, bp.bf_insns))
    finally:
        free_filter(bp)


def in_namespace(ns: str, fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) on a short-lived thread that has entered network namespace `ns`.

    The thread ends with fn, so no thread of this process ever stays in (or has to
    find its way back from) a node. Nothing is cached: a socket made here keeps its
    namespace alive only as long as the caller keeps the socket.
    """
    path = os.path.join("/run/netns", ns)
    if not os.path.exists(path):
        raise LabError(f"no namespace {ns}")
    result: dict[str, Any] = {}

    def inside() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            err = enter_net(fd)  # this thread only
            if err:
                result["error"] = LabError(f"cannot enter {ns}: {os.strerror(err)}")
                return
        finally:
            os.close(fd)
        try:
            result["value"] = fn(*args)
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=inside, name=f"labkit-in-{ns}")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _open_here(ns: str, iface: str, expr: str | None) -> tuple[socket.socket, int]:
    """(In the namespace) a packet socket on iface, filter attached before it receives."""
    try:
        probe = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            probe.bind((iface, 0))
            hatype = probe.getsockname()[3]
        finally:
            probe.close()
    except OSError as e:
        raise LabError(f"no interface {iface!r} in {ns}" if e.errno == 19
                       else f"cannot capture on {iface} in {ns}: {e.strerror or e}") from None
    linktype = linktype_for(hatype)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if expr:
            attach_filter(s, expr, linktype)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((iface, ETH_P_ALL))
    except LabError:
        s.close()
        raise
    except OSError as e:
        s.close()
        raise LabError(f"cannot capture on {iface} in {ns}: {e.strerror or e}") from None
    return s, linktype


def open_socket(ns: str, iface: str, filter: str | None = None) -> tuple[socket.socket, int]:
    """A packet socket on `iface` inside namespace `ns`; returns (socket, pcap linktype)."""
    return in_namespace(ns, _open_here, ns, iface, filter)


# -- the result -------------------------------------------------------------------------------
@dataclass
class Packet:
    """One captured frame: raw bytes, when (seconds since the capture started), direction."""
    index: int
    time: float
    direction: str
    data: bytes
    linktype: int
    stamp: float = 0.0
    vxlan_ports: tuple[int, ...] = (VXLAN_PORT,)

    @property
    def scapy(self) -> Any:
        """The frame decoded by scapy (Ether / IP / UDP / VXLAN / Ether / IP / ICMP ...)."""
        return decode(self.data, self.linktype, self.vxlan_ports)

    def summary(self) -> str:
        return describe(self.scapy)

    def layers(self) -> list[dict]:
        return dissect(self.scapy)


@dataclass
class Capture:
    """What one capture point saw."""
    target: str
    iface: str
    filter: str | None
    count: int
    timeout: float
    packets: list[Packet] = field(default_factory=list)
    linktype: int = DLT_EN10MB
    pcap: str | None = None
    stopped: str = "timeout"       # "count" or "timeout"
    vxlan_ports: tuple[int, ...] = (VXLAN_PORT,)

    @property
    def where(self) -> str:
        return f"{self.target} {self.iface}"

    def rows(self) -> list[dict]:
        return [{"no": p.index, "time": f"{p.time:.6f}", "dir": p.direction, "len": len(p.data),
                 "summary": p.summary()} for p in self.packets]

    def text(self) -> str:
        head = (f"{self.where}: {len(self.packets)} packet(s)"
                f"{' matching ' + repr(self.filter) if self.filter else ''}"
                f" (stopped by {self.stopped})")
        lines = [head]
        for r in self.rows():
            lines.append(f"  {r['no']:>3}  {r['dir']:<3} {r['len']:>5} B  {r['summary']}")
        if self.pcap:
            lines.append(f"  pcap: {self.pcap}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{r['no']}</td><td>{r['dir']}</td><td>{r['len']}</td>"
            f"<td style='text-align:left'><code>{escape(r['summary'])}</code></td></tr>"
            for r in self.rows())
        pcap = (f"<br>pcap: <a href='{escape(os.path.relpath(self.pcap))}' download>"
                f"{escape(os.path.basename(self.pcap))}</a>") if self.pcap else ""
        return (f"<b>{escape(self.where)}</b>: {len(self.packets)} packet(s)"
                f"{' matching <code>' + escape(self.filter) + '</code>' if self.filter else ''}"
                f" (stopped by {self.stopped})"
                f"<table><tr><th>no</th><th>dir</th><th>bytes</th><th>decoded</th></tr>{rows}</table>{pcap}")

    def first(self, contains: str | None = None) -> Packet:
        """The first packet (whose summary contains `contains`, if given)."""
        for p in self.packets:
            if contains is None or contains in p.summary():
                return p
        raise LabError(f"no packet{' with ' + repr(contains) if contains else ''} captured on {self.where}")


# -- decoding ---------------------------------------------------------------------------------
def _scapy() -> Callable[..., None]:
    # lazy for start-up time: scapy's layers take ~0.6 s to import (python -X importtime)
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: F401
    from scapy.layers.l2 import ARP, Ether  # noqa: F401
    from scapy.layers.vxlan import VXLAN  # noqa: F401  (binds UDP 8472 and 4789)
    from scapy.packet import bind_layers
    return bind_layers


def decode(data: bytes, linktype: int = DLT_EN10MB, vxlan_ports: Iterable[int] = (VXLAN_PORT,)) -> Any:
    """Decode raw bytes with scapy; VXLAN is recognised on every port in `vxlan_ports`."""
    bind_layers = _scapy()
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    for port in vxlan_ports:
        if port:
            bind_layers(UDP, VXLAN, dport=port)
    return (IP if linktype == DLT_RAW else Ether)(data)


def _layer_list(pkt: Any) -> list[Any]:
    out = []
    layer = pkt
    while layer is not None and layer.__class__.__name__ != "NoPayload":
        out.append(layer)
        layer = layer.payload if layer.payload else None
    return out


ICMP_TYPES = {0: "echo-reply", 8: "echo-request", 3: "dest-unreach", 11: "time-exceeded"}


def _fields(layer: Any, inner: bool) -> str:
    """The fields a learner needs, and none that change from run to run except
    where marked (sport=, the kernel's flow hash; MACs)."""
    name = layer.__class__.__name__
    if name == "Ether":
        return f"dst={layer.dst} src={layer.src} type=0x{layer.type:04x}"
    if name == "IP":
        return (f"src={layer.src} dst={layer.dst} proto={layer.proto} ttl={layer.ttl} "
                f"len={layer.len}{' DF' if layer.flags.DF else ''}")
    if name == "UDP":
        return f"sport={layer.sport} dport={layer.dport} len={layer.len}"
    if name == "VXLAN":
        return f"flags=0x{int(layer.flags):02x} vni={layer.vni}"
    if name == "ICMP":
        return f"type={layer.type} ({ICMP_TYPES.get(layer.type, '?')}) code={layer.code} seq={layer.seq}"
    if name == "ARP":
        return f"op={'who-has' if layer.op == 1 else 'is-at'} psrc={layer.psrc} pdst={layer.pdst}"
    if name == "TCP":
        return f"sport={layer.sport} dport={layer.dport} flags={layer.flags}"
    return ""


def dissect(pkt: Any) -> list[dict[str, Any]]:
    """Layer by layer: byte offset, header length, layer name and its key fields.

    The offset of a layer is the length of everything in front of it; the header
    length is the layer minus its payload. After a VXLAN header the layers are the
    inner (overlay) frame, marked ``inner``.
    """
    total = len(pkt)
    rows, inner = [], False
    for layer in _layer_list(pkt):
        name = layer.__class__.__name__
        size = len(layer)
        header = size - len(layer.payload) if layer.payload else size
        label = {"Ether": "Ethernet", "Raw": "payload", "Padding": "padding"}.get(name, name)
        rows.append({"offset": total - size, "length": header,
                     "layer": ("inner " if inner and name not in ("Raw", "Padding") else "") + label,
                     "fields": _fields(layer, inner)})
        if name == "VXLAN":
            inner = True
    return rows


_DESCRIBE = {  # layer -> its words in describe()
    "IP": lambda ly: f"{ly.src} > {ly.dst}",
    "UDP": lambda ly: f"udp/{ly.dport}",
    "TCP": lambda ly: f"tcp/{ly.dport}",
    "VXLAN": lambda ly: f"VXLAN vni={ly.vni}",
    "ICMP": lambda ly: f"ICMP {ICMP_TYPES.get(ly.type, ly.type)} seq={ly.seq}",
    "ARP": lambda ly: f"ARP {'who-has ' + ly.pdst if ly.op == 1 else ly.psrc + ' is-at ' + ly.hwsrc}",
    "IPv6": lambda ly: f"IPv6 {ly.src} > {ly.dst}",
}


def describe(pkt: Any) -> str:
    """One line per packet, outer to inner: 192.168.50.1 > 192.168.50.2 udp/8472 VXLAN
    vni=1 | 10.108.76.2 > 10.108.28.2 ICMP echo-request seq=1."""
    parts, cur = [], []
    for layer in _layer_list(pkt):
        name = layer.__class__.__name__
        if name in _DESCRIBE:
            cur.append(_DESCRIBE[name](layer))
        if name == "VXLAN":  # the outer packet ends here
            parts.append(" ".join(cur))
            cur = []
    if cur:
        parts.append(" ".join(cur))
    return " | ".join(parts) or pkt.summary()


def layers_text(pkt_or_packet: Packet | Any) -> str:
    """The layer breakdown of one packet as a small table, with the overhead counted."""
    pkt = pkt_or_packet.scapy if isinstance(pkt_or_packet, Packet) else pkt_or_packet
    rows = dissect(pkt)
    lines = [f"{'offset':>6}  {'bytes':>5}  {'layer':<16} fields"]
    for r in rows:
        lines.append(f"{r['offset']:>6}  {r['length']:>5}  {r['layer']:<16} {r['fields']}".rstrip())
    lines.append(f"{'':>6}  {len(pkt):>5}  total on the wire (without the 4-byte FCS)")
    vx = next((r for r in rows if r["layer"] == "VXLAN"), None)
    if vx is not None:
        inner = len(pkt) - vx["offset"] - vx["length"]
        lines.append(f"inner frame {inner} B + encapsulation {len(pkt) - inner} B "
                     f"(outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8): what the wire carries")
        ips = [layer for layer in _layer_list(pkt) if layer.__class__.__name__ == "IP"]
        if len(ips) >= 2:
            outer, inner_ip = ips[0].len, ips[1].len
            lines.append(f"outer IP packet {outer} B = inner IP {inner_ip} + inner Ethernet 14 + VXLAN 8 + "
                         f"UDP 8 + outer IP 20: what the MTU limits ({outer - inner_ip} B of overhead; "
                         f"the outer Ethernet header does not count)")
    return "\n".join(lines)


# -- pcap files -------------------------------------------------------------------------------
def check_pcap_path(path: object) -> str:
    """A pcap file name the user gave (labkit/outfile.py): refused unless its folder exists and
    it is (or will be) a regular file. Nothing is created on the host for a bad name."""
    check_output_path(path, "pcap file", "capture.pcap")
    return str(path)


def write_pcap(path: str, packets: list[Packet], linktype: int) -> str:
    """A classic libpcap file (microsecond timestamps), as tcpdump -w writes it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
        for p in packets:
            sec = int(p.stamp)
            usec = int(round((p.stamp - sec) * 1e6))
            if usec >= 1000000:
                sec, usec = sec + 1, usec - 1000000
            f.write(struct.pack("<IIII", sec, usec, len(p.data), len(p.data)))
            f.write(p.data)
    return path


# -- capturing --------------------------------------------------------------------------------
def _resolve_point(lab: Lab, target: str) -> str:
    node, rec = lab.resolve(target)
    if rec is None:
        return node.ns
    if not rec.running:
        raise LabError(f"container {rec.name} on {node.name} is not running")
    return rec.netns


def interfaces(lab: Lab, target: str) -> list[str]:
    """The interfaces of a node or container (what a capture can listen on)."""
    ns = _resolve_point(lab, target)
    return sorted(name for _i, name in in_namespace(ns, socket.if_nameindex))


def _vxlan_ports(lab: Lab) -> tuple[int, ...]:
    port = getattr(lab.spec, "port", None)
    return tuple(sorted({VXLAN_PORT} | ({port} if port else set())))


def check_bounds(count: int, timeout: float) -> None:
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise LabError(f"capture count must be between 1 and {MAX_COUNT}, got {count!r}")
    if not 0 < float(timeout) <= MAX_TIMEOUT:
        raise LabError(f"capture timeout must be between 0 and {MAX_TIMEOUT:.0f} seconds, got {timeout!r}")


def capture_many(lab: Lab, points: Iterable[CapturePoint], *, filter: str | None = None, count: int = 10,
                 timeout: float = 5.0, traffic: Callable[[], object] | None = None, pcap_dir: str | None = None,
                 progress: Callable[[str], object] | None = None) -> list[Capture]:
    """Capture at several points at once (e.g. one ping seen on veth, docker0, flannel.1
    and eth0). `points` is a list of (target, iface) or (target, iface, filter).

    Each point stops after `count` packets; all stop after `timeout` seconds. `traffic`
    is a callable run once every socket is open (a ping, ...). Returns one Capture per
    point, in order; with `pcap_dir`, each is saved as <dir>/<lab>-<target>-<iface>.pcap.
    """
    check_bounds(count, timeout)
    say = progress or (lambda msg: None)
    vx = _vxlan_ports(lab)
    socks, caps = [], []
    try:
        for point in points:
            target, iface, *rest = point
            expr = rest[0] if rest else filter
            ns = _resolve_point(lab, target)
            s, linktype = open_socket(ns, iface, expr)
            socks.append(s)
            caps.append(Capture(target=target, iface=iface, filter=expr, count=count,
                                timeout=float(timeout), linktype=linktype, vxlan_ports=vx))
        say(f"capturing on {', '.join(c.where for c in caps)} "
            f"(up to {count} packet(s) each, {float(timeout):g} s at most)")
        errors: list = []
        runner = None
        if traffic is not None:
            def run_traffic() -> None:
                try:
                    traffic()
                except BaseException as e:  # reported after the capture
                    errors.append(e)
            runner = threading.Thread(target=run_traffic, name="labkit-capture-traffic", daemon=True)
        t0 = time.time()
        deadline = time.monotonic() + float(timeout)
        if runner is not None:
            runner.start()
        live = {s.fileno(): (s, c) for s, c in zip(socks, caps)}
        while live:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(live), [], [], min(left, 0.5))
            for fd in ready:
                s, c = live[fd]
                data, addr = s.recvfrom(SNAPLEN)
                now = time.time()
                c.packets.append(Packet(index=len(c.packets) + 1, time=now - t0,
                                        direction=PKTTYPES.get(addr[2], "?"), data=data,
                                        linktype=c.linktype, stamp=now, vxlan_ports=vx))
                if len(c.packets) >= count:
                    c.stopped = "count"
                    del live[fd]
        if runner is not None:
            runner.join(timeout=max(0.0, deadline - time.monotonic()) + 10)
        if errors:
            raise errors[0]
    finally:
        for s in socks:
            s.close()
    if pcap_dir:
        for c in caps:
            safe = c.target.replace("/", "-")
            c.pcap = write_pcap(os.path.join(pcap_dir, f"{lab.spec.name}-{safe}-{c.iface}.pcap"),
                                c.packets, c.linktype)
    say("captured: " + ", ".join(f"{len(c.packets)} on {c.where}" for c in caps))
    return caps


def capture(lab: Lab, target: str, iface: str, filter: str | None = None, count: int = 10,
            timeout: float = 5.0, traffic: Callable[[], object] | None = None, pcap: str | None = None,
            progress: Callable[[str], object] | None = None) -> Capture:
    """Capture on one interface of a node or container ("node1", "node1/c1").

    Stops after `count` packets or `timeout` seconds. `traffic` (a callable) runs once
    the socket is open. With `pcap`, the packets are written there as a pcap file.
    """
    if pcap:
        check_pcap_path(pcap)
    cap = capture_many(lab, [(target, iface)], filter=filter, count=count, timeout=timeout,
                       traffic=traffic, progress=progress)[0]
    if pcap:
        cap.pcap = write_pcap(pcap, cap.packets, cap.linktype)
    return cap


def ping(lab: Lab, src: str, dst: str, count: int = 1) -> Callable[[], bool]:
    """Traffic for a capture: `count` pings from src to dst (lab addresses only)."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PING_COUNT:
        raise LabError(f"--ping-count must be between 1 and {MAX_PING_COUNT}, got {count!r}")

    def run() -> bool:
        ok, out = lab.ping(src, dst, count=count)
        return ok
    return run


def container_veth(lab: Lab, target: str) -> str | None:

    """The host end (on the node, plugged into docker0) of a container's eth0."""
    node, rec = lab.resolve(target)
    if rec is None:
        raise LabError(f"{target} is a node, not a container")
    return rec.veth
