"""A packet's walk: one ping from a container to a container on another node, hop by hop.

Each hop shows the kernel table entry that decided it, read live from the lab (``ip route
get``, ``ip neigh``, ``bridge fdb``, ``ip -d link``), and the bytes captured there (the
captures of :func:`labkit.capture.capture_many`). For flannel's VXLAN backend the hops are
the ones ``backend/vxlan/vxlan_network.go`` programs: a route per peer subnet via the
peer's flannel.1 address (``onlink``), a PERMANENT neighbour entry giving that address the
peer's VtepMAC, and an FDB entry sending that MAC to the peer's PublicIP; the kernel's VXLAN
device does the rest (``ip -d link show flannel.1``: VNI, local address, port 8472).

``walk_from_lab(lab, caps, "master/c1", "node1/c1")`` collects the hops; the result shows
itself as one SVG strip (every hop, the same picture every run: the geometry never depends on
addresses, MACs or timings) and as text; ``labkit.notebook.stepper.Stepper(walk)`` steps through it
in JupyterLab.
:func:`draw_walk` is pure (tested on synthetic hops).
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import drawsvg as dw

if TYPE_CHECKING:
    from ..capture import Capture
    from ..lab import Lab

# where a hop happens -> its colour band (source node, the underlay, the destination node)
SIDE_COLOURS = {"src": "#dbe8f6", "wire": "#eeeeee", "dst": "#dcefdc"}
# layer -> colour of its part of the byte bar (outer headers warm, inner frame cool)
LAYER_COLOURS = {"Ethernet": "#f4b183", "IP": "#f8cbad", "UDP": "#ffe699", "VXLAN": "#ffd966",
                 "inner Ethernet": "#9dc3e6", "inner IP": "#bdd7ee", "inner ICMP": "#deebf7",
                 "ICMP": "#deebf7", "payload": "#f2f2f2", "padding": "#ffffff"}
WIDTH = 1180
ROW = 74                   # height of one hop
TOP = 34                   # the title line
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"
CMD_CHARS = 82             # characters of a command or table line that fit its column
NOTE_CHARS = 40


@dataclass
class Hop:
    """One step of the walk: what decided it (commands and the lines they printed) and what
    was captured there (None: no capture point, the step is inside the kernel)."""
    title: str
    where: str                                   # master/c1, master, switch, node1 ...
    side: str                                    # src, wire or dst
    decided_by: list[tuple[str, str]] = field(default_factory=list)   # (command, entry)
    note: str = ""
    seen_at: str | None = None                   # the capture point: "master eth0 (out)"
    length: int = 0
    summary: str = ""
    layers: list[tuple[str, int]] = field(default_factory=list)       # (layer, header bytes)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _bar(d: dw.Drawing, x: float, y: float, width: float, layers: Sequence[tuple[str, int]], total: int) -> None:
    """The captured frame as a bar: one box per header, its width in proportion to its bytes."""
    if total <= 0:
        return
    scale = width / total
    cx = x
    for name, size in layers:
        w = size * scale
        d.append(dw.Rectangle(cx, y, w, 16, fill=LAYER_COLOURS.get(name, "#e7e6e6"), stroke="#7f7f7f",
                              stroke_width=0.6))
        short = name.replace("inner ", "").replace("Ethernet", "Eth").replace("payload", "data")
        label = f"{short} {size}"
        if len(label) * 5.6 < w - 2:
            d.append(dw.Text(label, 9, cx + w / 2, y + 11.5, text_anchor="middle", font_family=SANS))
        elif len(str(size)) * 5.6 < w - 1:
            d.append(dw.Text(str(size), 9, cx + w / 2, y + 11.5, text_anchor="middle", font_family=SANS))
        cx += w


def draw_walk(hops: Sequence[Hop], title: str, highlight: int | None = None) -> dw.Drawing:
    """The whole walk as one vertical strip, hop after hop (the `highlight`-th hop framed)."""
    height = TOP + ROW * len(hops) + 8
    # one scale for every bar: the encapsulated frame is visibly longer than the container's
    longest = max([h.length for h in hops if h.seen_at is not None] + [1])
    d = dw.Drawing(WIDTH, height, id_prefix="walk")
    d.append(dw.Rectangle(0, 0, WIDTH, height, fill="white"))
    d.append(dw.Text(title, 15, 10, 22, font_weight="bold", font_family=SANS))
    for x, head in ((40, "hop"), (270, "decided by (the kernel's table, read live)"), (800, "bytes captured there")):
        d.append(dw.Text(head, 10, x, TOP - 2, fill="#595959", font_family=SANS))
    for i, hop in enumerate(hops):
        y = TOP + i * ROW
        d.append(dw.Rectangle(4, y + 3, WIDTH - 8, ROW - 6, rx=5, fill=SIDE_COLOURS.get(hop.side, "#ffffff"),
                              stroke="#c00000" if i == highlight else "none", stroke_width=2.5))
        # the step number in a circle, and an arrow down to the next one
        d.append(dw.Circle(22, y + 20, 12, fill="white", stroke="#404040"))
        d.append(dw.Text(str(i + 1), 12, 22, y + 24.5, text_anchor="middle", font_weight="bold", font_family=SANS))
        if i + 1 < len(hops):
            d.append(dw.Line(22, y + 32, 22, y + ROW + 6, stroke="#404040", stroke_width=1.5))
            d.append(dw.Lines(17, y + ROW + 2, 27, y + ROW + 2, 22, y + ROW + 8, close=True, fill="#404040"))
        d.append(dw.Text(hop.title, 13, 40, y + 22, font_weight="bold", font_family=SANS))
        d.append(dw.Text(hop.where, 11, 40, y + 38, fill="#404040", font_family=MONO))
        for k, line in enumerate(_wrap(hop.note, NOTE_CHARS)[:2]):
            d.append(dw.Text(line, 10, 40, y + 52 + 12 * k, fill="#595959", font_style="italic", font_family=SANS))
        # what decided it: at most two (command, entry) pairs
        ty = y + 18
        for cmd, entry in hop.decided_by[:2]:
            d.append(dw.Text(_cut("$ " + cmd, CMD_CHARS), 10.5, 270, ty, fill="#7f7f7f", font_family=MONO))
            d.append(dw.Text(_cut(entry or "(nothing)", CMD_CHARS), 10.5, 270, ty + 13, font_family=MONO))
            ty += 28
        # the bytes
        if hop.seen_at is None:
            d.append(dw.Text("no capture point: this step is inside the kernel", 10.5, 800, y + 22,
                             fill="#7f7f7f", font_style="italic", font_family=SANS))
        else:
            d.append(dw.Text(f"{hop.seen_at}: {hop.length} B", 11, 800, y + 18, font_weight="bold",
                             font_family=SANS))
            _bar(d, 800, y + 25, (WIDTH - 820) * hop.length / longest, hop.layers, hop.length)
            for k, part in enumerate(hop.summary.split(" | ")[:2]):
                d.append(dw.Text(_cut(part, 62), 10, 800, y + 54 + 11 * k, font_family=MONO))
    return d


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


@dataclass
class Walk:
    """The hops of one ping's request, from `src` to `dst`."""
    src: str
    dst: str
    hops: list[Hop]

    @property
    def title(self) -> str:
        return f"One echo request, {self.src} → {self.dst}, hop by hop"

    def drawing(self, highlight: int | None = None) -> dw.Drawing:
        return draw_walk(self.hops, self.title, highlight)

    def svg(self, highlight: int | None = None) -> str:
        # fixed ids (drawsvg's own _repr_svg_ randomises them): the same picture every run
        return str(self.drawing(highlight).as_svg(randomize_ids=False))

    def _repr_svg_(self) -> str:
        return self.svg()

    def hop_text(self, i: int) -> str:
        hop = self.hops[i]
        lines = [f"{i + 1:>2}. {hop.title} [{hop.where}]" + (f": {hop.note}" if hop.note else "")]
        for cmd, entry in hop.decided_by:
            lines.append(f"      $ {cmd}")
            lines.append(f"        {entry or '(nothing)'}")
        if hop.seen_at is None:
            lines.append("      bytes: no capture point (inside the kernel)")
        else:
            layout = " + ".join(f"{name} {size}" for name, size in hop.layers)
            lines.append(f"      bytes on {hop.seen_at}: {hop.length} B = {layout}")
            lines.append(f"        {hop.summary}")
        return "\n".join(lines)

    def text(self) -> str:
        return "\n".join([self.title] + [self.hop_text(i) for i in range(len(self.hops))])

    def __repr__(self) -> str:
        return self.text()


# -- reading the walk from a running lab ----------------------------------------------------
SEPARATOR = "@@labkit-walk@@"


def _outs(lab: Lab, target: str, commands: Sequence[Sequence[str]]) -> list[str]:
    """Run several commands on a node or in a container in one shell (each `lab.exec` starts a
    process: one for all is what keeps the walk quick) and return each one's output. Every
    word is quoted; the values are addresses from the lab's records and the kernel."""
    script = f"; echo {SEPARATOR}; ".join(shlex.join(c) + " 2>&1" for c in commands)
    r = lab.sh(target, script, timeout=15)
    parts = r.stdout.split(SEPARATOR + "\n")
    return [(parts[i] if i < len(parts) else "").strip() for i in range(len(commands))]


def _first(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return re.sub(r"\s+uid \d+\s*$", "", line).strip()


def _grep(text: str, *needles: str) -> str:
    for line in text.splitlines():
        if all(n in line for n in needles):
            return line.strip()
    return ""


def _field(line: str, word: str) -> str | None:
    m = re.search(rf"\b{word} (\S+)", line)
    return m.group(1) if m else None


def _longest_match(routes: str) -> str:
    """Of the routes `ip route show match ADDR` prints, the one the kernel picks (the longest prefix)."""
    best, best_len = "", -1
    for line in routes.splitlines():
        dst = line.split()[0] if line.strip() else ""
        if dst == "default":
            plen = 0
        else:
            try:
                plen = ipaddress.ip_network(dst, strict=False).prefixlen
            except ValueError:
                continue
        if plen > best_len:
            best, best_len = line.strip(), plen
    return best


def _vxlan_line(details: str) -> str:
    """The part of `ip -d link show flannel.1` that says how it encapsulates."""
    m = re.search(r"vxlan id \d+(?: local \S+)?(?: dev \S+)?", details)
    port = re.search(r"dstport \d+", details)
    learn = " nolearning" if "nolearning" in details else ""
    return ((m.group(0) if m else "") + (" " + port.group(0) if port else "") + learn).strip()


def _seen(hop: Hop, cap: Capture | None) -> Hop:
    """Fill in the bytes of `hop` from the echo request in `cap`."""
    from ..capture import dissect
    if cap is None:
        return hop
    pkt = next((p for p in cap.packets if "echo-request" in p.summary()), None)
    if pkt is None:
        hop.seen_at, hop.summary = f"{cap.where}", "(the echo request was not captured here)"
        return hop
    hop.seen_at = f"{cap.where} ({pkt.direction})"
    hop.length = len(pkt.data)
    hop.summary = pkt.summary()
    hop.layers = [(r["layer"], r["length"]) for r in dissect(pkt.scapy)]
    return hop


def walk_from_lab(lab: Lab, caps: Sequence[Capture], src: str, dst: str) -> Walk:
    """The hops of an echo request from container `src` to container `dst` on another node,
    with the tables read now and the bytes from `caps` (matched by target and interface)."""
    from ..errors import LabError
    from ..netns import run as ns_run
    snode, srec = lab.resolve(src)
    dnode, drec = lab.resolve(dst)
    if srec is None or drec is None or not srec.ip or not drec.ip:
        raise LabError("a packet walk goes from a running container to a running container")
    if snode.name == dnode.name:
        raise LabError("a packet walk needs containers on two different nodes")
    by_point = {(c.target, c.iface): c for c in caps}

    def cap(target: str, iface: str | None) -> Capture | None:
        return by_point.get((target, iface or ""))

    sip, dip = srec.ip, drec.ip
    for addr in (sip, dip, srec.gateway or sip):
        ipaddress.IPv4Address(addr)               # only addresses reach the shell
    dev = "flannel.1"
    # what the master's flannel.1 sent (after docker's MASQUERADE): the source node1 sees
    inner_src = sip
    fl = cap(snode.name, dev)
    req = next((p for p in fl.packets if "echo-request" in p.summary()), None) if fl is not None else None
    if req is not None:
        inner_src = str(ipaddress.IPv4Address(req.scapy.getlayer("IP").src))   # captured bytes: checked
    # the tables, read in one shell per place (the source node twice: its second round needs the first)
    c_route, c_neigh = _outs(lab, src, [["ip", "route", "get", dip],
                                        ["ip", "neigh", "show", srec.gateway or sip]])
    fdb0, rget, match, vx, fdb = _outs(lab, snode.name, [
        ["bridge", "fdb", "show", "br", "docker0"], ["ip", "route", "get", dip, "from", sip, "iif", "docker0"],
        ["ip", "route", "show", "match", dip], ["ip", "-d", "link", "show", dev],
        ["bridge", "fdb", "show", "dev", dev]])
    rget = _first(rget)
    via = _field(rget, "via") or str(ipaddress.IPv4Network(f"{dip}/{drec.prefixlen or 24}", strict=False)[0])
    ipaddress.IPv4Address(via)
    peer = str(dnode.public_ip)
    neigh, eget, eneigh = _outs(lab, snode.name, [["ip", "neigh", "show", via, "dev", dev],
                                                  ["ip", "route", "get", peer],
                                                  ["ip", "neigh", "show", peer, "dev", "eth0"]])
    switch_fdb = ns_run(lab.state.netns("switch"), ["bridge", "fdb", "show"], timeout=10).stdout
    dvx, dget, dneigh, dfdb = _outs(lab, dnode.name, [
        ["ip", "-d", "link", "show", dev], ["ip", "route", "get", dip, "from", inner_src, "iif", dev],
        ["ip", "neigh", "show", dip, "dev", "docker0"], ["bridge", "fdb", "show", "br", "docker0"]])

    hops: list[Hop] = []
    # 1. the container: its default route, and docker0's MAC for the gateway
    route, gw_neigh = _first(c_route), _first(c_neigh)
    gw = _field(route, "via") or srec.gateway or ""
    gw_mac = _field(gw_neigh, "lladdr") or "?"
    hops.append(_seen(Hop("container → veth", src, "src",
                          [(f"ip route get {dip}", route), (f"ip neigh show {gw}", gw_neigh)],
                          "the default route: to docker0's address, via eth0 (a veth)"),
                      cap(snode.name, srec.veth)))
    # 2. docker0: the frame is for the bridge itself
    hops.append(_seen(Hop("docker0 (bridge)", snode.name, "src",
                          [("bridge fdb show br docker0", _grep(fdb0, gw_mac, "permanent"))],
                          "the destination MAC is docker0's own: up to the node's IP stack"),
                      cap(snode.name, "docker0")))
    # 3. the route lookup
    hops.append(Hop("route lookup", snode.name, "src",
                    [(f"ip route get {dip} from {sip} iif docker0", rget),
                     (f"ip route show match {dip}", _longest_match(match))],
                    "flanneld's route for the peer's subnet: via its flannel.1 address, onlink"))
    # 4. the neighbour entry: the peer's VtepMAC, written by flanneld (no ARP request is sent)
    neigh = _first(neigh)
    vtep_mac = _field(neigh, "lladdr") or "?"
    hops.append(_seen(Hop("neighbour (ARP)", snode.name, "src", [(f"ip neigh show {via} dev {dev}", neigh)],
                          "PERMANENT, from the peer's lease (VtepMAC): no ARP request is sent"),
                      cap(snode.name, dev)))
    # 5. the FDB entry: VtepMAC -> the peer's PublicIP
    hops.append(Hop("FDB", snode.name, "src", [(f"bridge fdb show dev {dev}", _grep(fdb, vtep_mac))],
                    "the VtepMAC's entry names the node to send the datagram to: its PublicIP"))
    # 6. encapsulation by the kernel's VXLAN device
    hops.append(Hop("encapsulation", snode.name, "src", [(f"ip -d link show {dev}", _vxlan_line(vx))],
                    "+ VXLAN 8 + UDP 8 + outer IP 20 (+ outer Ethernet 14 on the wire)"))
    # 7. out of eth0
    eneigh = _first(eneigh)
    hops.append(_seen(Hop("eth0", snode.name, "src",
                          [(f"ip route get {peer}", _first(eget)), (f"ip neigh show {peer} dev eth0", eneigh)],
                          "the underlay: an ordinary UDP datagram between two hosts"),
                      cap(snode.name, "eth0")))
    # 8. the switch: a learning bridge, one port per node
    peer_mac = _field(eneigh, "lladdr") or "?"
    hops.append(_seen(Hop("switch", "switch", "wire",
                          [("bridge fdb show   (in the switch)", _grep(switch_fdb, peer_mac, " master "))],
                          f"learnt: {dnode.name}'s MAC is behind port {dnode.name}"),
                      cap(dnode.name, "eth0")))
    # 9. decapsulation: UDP 8472 with this VNI belongs to the peer's flannel.1
    hops.append(_seen(Hop("decapsulation", dnode.name, "dst", [(f"ip -d link show {dev}", _vxlan_line(dvx))],
                          f"the VNI and port match {dnode.name}'s flannel.1: the outer 50 B go"),
                      cap(dnode.name, dev)))
    # 10. route and neighbour on the destination node
    dneigh = _first(dneigh)
    hops.append(_seen(Hop("docker0", dnode.name, "dst",
                          [(f"ip route get {dip} from {inner_src} iif {dev}", _first(dget)),
                           (f"ip neigh show {dip} dev docker0", dneigh)],
                          "a connected route: the container is on docker0 (learnt by ARP)"),
                      cap(dnode.name, "docker0")))
    # 11. into the container
    cmac = _field(dneigh, "lladdr") or "?"
    hops.append(_seen(Hop("veth → container", dst, "dst",
                          [("bridge fdb show br docker0", _grep(dfdb, cmac, "master docker0"))],
                          "the bridge knows which port the container's MAC is on"),
                      cap(dst, "eth0")))
    return Walk(src, dst, hops)
