"""The lab's topology, drawn from a LabStatus: what flannel's blog post shows as a diagram,
but of *this* lab, as etcd and the kernel see it now.

From the bottom up, as a packet leaves a container: the container's eth0 and its veth
(a port of docker0), docker0 with the node's lease, flannel's device (flannel.1 for vxlan,
flannel0 for udp, none for host-gw) with its per-peer ARP/FDB/route counts, the node's
eth0 on the underlay, the switch (one bridge per L2 segment) and, for a routed underlay,
the router between segments. etcd runs on the master. Every address is the kernel's or the
lease's, so a docker0 outside its node's lease (the blog's first problem) is drawn red and
a missing device is drawn missing.

Scale: up to DETAIL_LIMIT nodes are drawn one by one, COLUMNS to a row. A bigger lab shows
a few nodes per segment in full and one summary card for the rest (counts, and the first
nodes that look wrong), so 100 nodes stay one readable picture.

Layout depends only on what is stable between two runs of a seeded lab (subnets, addresses,
fixed-length MACs and veth names), never on the lab's name, so nbval can compare the SVG.
"""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

import drawsvg as dw

from ..flannel.backends.catalogue import device_name
from ..status import LabStatus, NodeStatus

DETAIL_LIMIT = 10        # nodes drawn one by one; above it, a summary card per segment
COLUMNS = 4              # cards per row
SHOWN_CONTAINERS = 3     # containers drawn per node; more are counted
SUMMARY_ISSUES = 3       # nodes named in a summary card's "looks wrong" list

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
FS = 12                  # font size
CW = 7.3                 # width of one monospace character at FS
LH = 16                  # line height
PAD = 8
GAP = 22                 # between cards
MARGIN = 16
BAR = 24                 # height of a switch bar
LINK = 22                # from the switch bar (or a row's bus) down to a card
BOX = 38                 # a container's box (two lines)
ROUTER_W = 150           # the router's column, left of the segments

INK = "#263238"
DIM = "#78909c"
BAD = "#c62828"
OK = "#2e7d32"
TONES = {"": INK, "dim": DIM, "bad": BAD, "ok": OK}
UNDER = ("#eceff1", "#607d8b")      # the underlay: eth0, switch, router (fill, stroke)
OVER = ("#fff3e0", "#ef6c00")       # the Network: lease and flannel's device
DOCKER = ("#e3f2fd", "#1565c0")     # docker0, veths, containers
ETCD = ("#f3e5f5", "#6a1b9a")

Line = tuple[str, str]   # (text, tone: "" | "dim" | "bad" | "ok")


@dataclass
class Card:
    """One column of a row: a node, or the summary of the nodes not drawn."""
    kind: str                            # "node" | "summary"
    title: str
    badge: str | None = None             # "etcd :2379" on the master
    badge_bad: bool = False              # ... drawn red: etcd does not answer
    head: list[Line] = field(default_factory=list)
    under: list[Line] = field(default_factory=list)
    over: list[Line] = field(default_factory=list)
    docker: list[Line] = field(default_factory=list)
    containers: list[tuple[Line, Line]] = field(default_factory=list)   # (name and IP, veth)
    more_containers: int = 0

    def lines(self) -> list[str]:
        texts = [self.title + (f"  {self.badge}" if self.badge else "")]
        texts += [t for t, _ in self.head + self.under + self.over + self.docker]
        texts += [t for pair in self.containers for t, _ in pair]
        return texts

    def box_height(self) -> float:
        sections = [s for s in (self.under, self.over, self.docker) if s]
        return PAD + LH + 4 + len(self.head) * LH + sum(len(s) * LH + 8 for s in sections) + PAD

    def height(self) -> float:
        shown = len(self.containers) + (1 if self.more_containers else 0)
        return self.box_height() + shown * (BOX + 10)


@functools.lru_cache(maxsize=4096)
def _net(text: str) -> ipaddress.IPv4Network | None:
    """A route's destination, parsed once (a 100-node lab has 100 x 99 routes naming 100 subnets)."""
    try:
        return ipaddress.IPv4Network(text)
    except ValueError:
        return None


def _routes_into(node: NodeStatus, network: str) -> int:
    """Routes towards other nodes' subnets: inside the Network, not the node's own subnet."""
    net = _net(network)
    if net is None:
        return 0
    n = 0
    for r in node.kernel.get("routes", []):
        dst = _net(str(r.get("dst")))
        if dst is not None and dst.subnet_of(net) and r.get("dst") != node.subnet and r.get("dev") != "docker0":
            n += 1
    return n


def _device_lines(st: LabStatus, node: NodeStatus) -> list[Line]:
    dev = node.kernel.get("device")
    routes = _routes_into(node, st.network)
    lease_backend = (node.lease or {}).get("BackendType") or ("udp" if node.lease else st.backend)
    expected = device_name(lease_backend, ((node.lease or {}).get("BackendData") or {}).get("VNI"))
    if dev is None:
        if expected is None:   # host-gw: plain routes via the peers' eth0
            return [("no device: peers via eth0", "dim"), (f"routes to peers {routes}", "")]
        return [(f"{expected} missing", "bad"), (f"routes to peers {routes}", "")]
    addr = " ".join(dev.get("addresses") or []) or "no address"
    down = dev.get("up") is False
    lines: list[Line] = [(f"{dev['name']} {addr}" + (" DOWN" if down else ""),
                          "bad" if addr == "no address" or down else "")]
    if dev.get("vni") is not None:   # a VXLAN device: what peers need to reach it
        lines.append((f"mtu {dev.get('mtu')} · VNI {dev['vni']} · :{dev.get('port')}", ""))
        lines.append((f"VtepMAC {dev.get('mac')}", ""))
        lines.append((f"ARP {len(node.kernel.get('arp', []))} · FDB {len(node.kernel.get('fdb', []))}"
                      f" · routes {routes}", ""))
    else:
        lines.append((f"mtu {dev.get('mtu')} · routes {routes}", ""))
    return lines


def node_card(st: LabStatus, node: NodeStatus) -> Card:
    """A node as the kernel and etcd see it: every line is one fact from the status."""
    card = Card("node", node.name)
    if st.etcd and st.etcd.split(":")[0] == node.public_ip:
        card.badge = "etcd :" + st.etcd.rsplit(":", 1)[-1] + ("" if st.etcd_ok else " down")
        card.badge_bad = not st.etcd_ok
    flanneld, docker = node.services.get("flanneld", "?"), node.services.get("docker", "?")
    card.head = [(f"flanneld {flanneld} · docker {docker}",
                  "" if flanneld == docker == "active" else "bad")]
    up = node.uplink
    if up is None:
        card.under = [("eth0 missing", "bad")]
    else:
        addr = " ".join(up.get("addresses") or []) or "no address"
        card.under = [(f"{up['name']} {addr}", "" if up.get("up") else "bad"),
                      (f"mtu {up.get('mtu')}" + ("" if up.get("up") else " · DOWN"), "" if up.get("up") else "bad")]
    if node.subnet:
        lease = (f"lease {node.subnet}", "")
    else:
        lease = ("lease ? (etcd down)", "bad") if not st.etcd_ok else ("no lease", "bad")
    card.over = [lease] + _device_lines(st, node)
    if node.docker0 is None:
        card.docker = [("docker0 missing", "bad")]
    else:
        tone = {True: "ok", False: "bad", None: ""}[node.in_range]
        mark = {True: " ✓", False: " ✗ not in lease", None: ""}[node.in_range]
        card.docker = [(f"docker0 {node.docker0}{mark}", tone)]
    for c in node.containers[:SHOWN_CONTAINERS]:
        if c.running:
            card.containers.append(((f"{c.name} {c.ip}", ""), (f"{c.veth or 'veth?'} ↔ eth0", "dim")))
        else:
            card.containers.append(((f"{c.name} stopped", "dim"), ("no veth", "dim")))
    card.more_containers = max(0, len(node.containers) - SHOWN_CONTAINERS)
    return card


def looks_wrong(st: LabStatus, node: NodeStatus) -> str | None:
    """What is wrong with a node at first sight (None: nothing), for the summary card."""
    if node.services.get("flanneld") != "active":
        return f"flanneld {node.services.get('flanneld', '?')}"
    if st.etcd_ok and not node.subnet:
        return "no lease"
    dev = device_name(st.backend)
    if dev is not None and not node.kernel.get("device"):
        return f"{dev} missing"
    if node.uplink is not None and not node.uplink.get("up"):
        return "eth0 down"
    if node.in_range is False:
        return "docker0 not in lease"
    return None


def summary_card(st: LabStatus, nodes: list[NodeStatus], skipped: NodeStatus | None = None) -> Card:
    """The nodes not drawn, in numbers, with the first ones that look wrong named
    (`skipped`: a node among them that is drawn in full)."""
    card = Card("summary", f"{len(nodes)} more nodes")
    card.head = [(f"{nodes[0].name} … {nodes[-1].name}" + (f" but {skipped.name}" if skipped else ""), "dim")]
    up = sum(1 for n in nodes if n.uplink and n.uplink.get("up"))
    card.under = [(f"eth0 up on {up} of {len(nodes)}", "" if up == len(nodes) else "bad")]
    leased = sum(1 for n in nodes if n.subnet)
    in_range = sum(1 for n in nodes if n.in_range)
    devices = sum(1 for n in nodes if n.kernel.get("device"))
    routes = [_routes_into(n, st.network) for n in nodes]
    card.over = [(f"leases {leased} of {len(nodes)}", "" if leased == len(nodes) else "bad")]
    dev = device_name(st.backend)
    if dev is not None:
        card.over.append((f"{dev} on {devices} of {len(nodes)}", "" if devices == len(nodes) else "bad"))
    card.over.append((f"routes to peers {min(routes)}–{max(routes)}" if min(routes) != max(routes)
                      else f"routes to peers {routes[0]} each", ""))
    running = sum(1 for n in nodes for c in n.containers if c.running)
    total = sum(len(n.containers) for n in nodes)
    card.docker = [(f"docker0 in lease on {in_range} of {len(nodes)}", "ok" if in_range == len(nodes) else "bad"),
                   (f"containers {running} running of {total}", "")]
    wrong = [(n.name, why) for n in nodes if (why := looks_wrong(st, n))]
    for name, why in wrong[:SUMMARY_ISSUES]:
        card.docker.append((f"✗ {name}: {why}", "bad"))
    if len(wrong) > SUMMARY_ISSUES:
        card.docker.append((f"✗ and {len(wrong) - SUMMARY_ISSUES} more", "bad"))
    return card


def segment_cards(st: LabStatus, nodes: list[NodeStatus], keep: int) -> list[Card]:
    """A segment's cards: every node; or, for a big lab, the first `keep`, the first node that
    looks wrong (else the last one) and a summary card for the others."""
    if len(nodes) <= keep + 2:
        return [node_card(st, n) for n in nodes]
    rest = nodes[keep:]
    odd = next((n for n in rest if looks_wrong(st, n)), rest[-1])
    pos = rest.index(odd)
    summary = summary_card(st, rest[:pos] + rest[pos + 1:], odd if 0 < pos < len(rest) - 1 else None)
    cards = [node_card(st, n) for n in nodes[:keep]]
    return cards + ([node_card(st, odd), summary] if pos == 0 else [summary, node_card(st, odd)])


def plan(st: LabStatus) -> list[tuple[int, list[Card]]]:
    """(segment index, its cards) for every segment, summarised when the lab is big."""
    segs = [s.index for s in st.segments] or [0]
    by_seg: dict[int, list[NodeStatus]] = {s: [] for s in segs}
    for n in st.nodes:   # a node on a segment the status does not list still shows
        by_seg[n.segment if n.segment in by_seg else segs[0]].append(n)
    big = len(st.nodes) > DETAIL_LIMIT
    keep = max(1, (COLUMNS - 2) // len(segs)) if big else DETAIL_LIMIT
    return [(s, segment_cards(st, by_seg[s], keep)) for s in segs]


def _text(g: dw.Group, text: str, x: float, y: float, tone: str = "", *, bold: bool = False,
          size: int = FS, anchor: str = "start") -> None:
    # the font family is the drawing's, inherited; only what differs from it is written
    extra = {"text_anchor": anchor} if anchor != "start" else {}
    if bold:
        extra["font_weight"] = "bold"
    g.append(dw.Text(text, size, x, y, fill=TONES[tone], **extra))


def _section(g: dw.Group, lines: list[Line], x: float, y: float, w: float, colours: tuple[str, str],
             cls: str) -> float:
    """A tinted band of lines inside a card; returns the y below it."""
    h = len(lines) * LH + 4
    band = dw.Group(class_=cls)
    band.append(dw.Rectangle(x + 4, y, w - 8, h, rx=3, fill=colours[0], stroke=colours[1], stroke_width=0.8))
    for i, (t, tone) in enumerate(lines):
        _text(band, t, x + PAD + 2, y + 2 + (i + 1) * LH - 4, tone)
    g.append(band)
    return y + h + 4


def _draw_card(d: dw.Drawing, card: Card, x: float, y: float, w: float) -> None:
    """A card at (x, y), `w` wide, with its containers hanging below it."""
    g = dw.Group(class_=card.kind)
    dashed = "5,3" if card.kind == "summary" else None
    g.append(dw.Rectangle(x, y, w, card.box_height(), rx=6, fill="white", stroke=INK, stroke_width=1.2,
                          stroke_dasharray=dashed))
    _text(g, card.title, x + PAD, y + PAD + LH - 4, bold=True, size=FS + 1)
    if card.badge:
        bw = len(card.badge) * CW + 10
        g.append(dw.Rectangle(x + w - PAD - bw, y + PAD - 1, bw, LH + 2, rx=8, fill=ETCD[0],
                              stroke=BAD if card.badge_bad else ETCD[1]))
        _text(g, card.badge, x + w - PAD - bw / 2, y + PAD + LH - 4, "bad" if card.badge_bad else "", anchor="middle")
    cy = y + PAD + LH + 4
    for t, tone in card.head:
        cy += LH
        _text(g, t, x + PAD, cy - 4, tone)
    cy += 4
    docker_y = cy
    for lines, colours, cls in ((card.under, UNDER, "underlay"), (card.over, OVER, "overlay"),
                                (card.docker, DOCKER, "docker")):
        if lines:
            if cls == "docker":
                docker_y = cy
            cy = _section(g, lines, x, cy, w, colours, cls)
    # containers hang below docker0: one veth each, node end on docker0, other end the container's eth0
    trunk = x + 18
    by = y + card.box_height() + 10
    for name, veth in card.containers:
        cg = dw.Group(class_="container")
        cg.append(dw.Lines(trunk, docker_y + LH, trunk, by + BOX / 2, x + 30, by + BOX / 2, close=False,
                           fill="none", stroke=DOCKER[1], stroke_width=1.2))
        cg.append(dw.Rectangle(x + 30, by, w - 30, BOX, rx=5, fill=DOCKER[0], stroke=DOCKER[1]))
        _text(cg, name[0], x + 38, by + LH - 2, name[1])
        _text(cg, veth[0], x + 38, by + 2 * LH - 2, veth[1])
        g.append(cg)
        by += BOX + 10
    if card.more_containers:
        _text(g, f"+ {card.more_containers} more containers", x + 38, by + LH, "dim")
    d.append(g)


def _card_width(cards: list[Card]) -> float:
    longest = max((len(t) for c in cards for t in c.lines()), default=20)
    return round(max(220.0, longest * CW + 2 * PAD + 12))


def _path_line(st: LabStatus) -> str:
    """How a packet crosses from one node's container to another's, for this backend."""
    ports = {n.kernel["device"].get("port") for n in st.nodes if (n.kernel.get("device") or {}).get("port")}
    dev = device_name(st.backend)
    if st.backend == "vxlan":
        how = f"{dev} (VXLAN in UDP {min(ports) if ports else 8472})"
    elif st.backend == "udp":
        how = f"{dev} (TUN → flanneld's proxy, UDP 8285)"
    elif dev:
        how = dev
    else:
        how = "a route via the peer's eth0"
    wire = "switch → router → switch" if st.router and len(st.segments) > 1 else "switch"
    return f"container → veth → docker0 → {how} → eth0 → {wire} → the peer's eth0 → … → its container"


def _draw_router(d: dw.Drawing, st: LabStatus, bars: list[tuple[int, float]]) -> None:
    """The router in the left column, one leg to each segment's switch, with its address there."""
    seg_info = {s.index: s for s in st.segments}
    x0 = MARGIN + 12
    left = MARGIN + ROUTER_W + GAP
    g = dw.Group(class_="router")
    top, bottom = bars[0][1] + BAR / 2, bars[-1][1] + BAR / 2
    ry = bars[0][1] + BAR + LINK
    g.append(dw.Line(x0, top, x0, max(bottom, ry + 3 * LH + 2 * PAD), stroke=UNDER[1], stroke_width=1.5))
    for seg, by in bars:
        g.append(dw.Line(x0, by + BAR / 2, left, by + BAR / 2, stroke=UNDER[1], stroke_width=1.5))
        s = seg_info.get(seg)
        if s and s.router:
            _text(g, s.router, x0 + 6, by + BAR / 2 - 5, "dim")
    g.append(dw.Rectangle(MARGIN, ry, ROUTER_W, 3 * LH + 2 * PAD, rx=6, fill=UNDER[0], stroke=INK,
                          stroke_width=1.2))
    _text(g, "router", MARGIN + PAD, ry + PAD + LH - 4, bold=True)
    _text(g, "ip_forward=1", MARGIN + PAD, ry + PAD + 2 * LH - 4, "dim")
    _text(g, "between segments", MARGIN + PAD, ry + PAD + 3 * LH - 4, "dim")
    d.append(g)


def draw(st: LabStatus) -> tuple[dw.Drawing, int]:
    """The picture, and how many nodes it draws one by one."""
    segments = plan(st)
    cards = [c for _, cs in segments for c in cs]
    w = _card_width(cards)
    left = MARGIN + (ROUTER_W + GAP if st.router else 0)
    cols = min(COLUMNS, max((len(cs) for _, cs in segments), default=1))
    title = f"lab {st.name} · {st.backend} · Network {st.network}"
    about = f"etcd {st.etcd or '?'} (on the master), prefix {st.prefix} · underlay {st.underlay or '?'}"
    path = "a packet: " + _path_line(st)
    legend = [(f"Network {st.network}: leases, {device_name(st.backend) or 'routes'}", OVER),
              ("docker0, veths, containers", DOCKER), ("underlay: eth0, switch, router", UNDER)]
    legend_w = sum(18 + len(label) * CW + 24 for label, _ in legend)
    # the width never depends on the lab's name (a test run's labs are called nb01x1a2b3)
    text_w = max(CW * max(len(title) - len(st.name) + 12, len(about), len(path)), legend_w)
    width = round(max(left + cols * (w + GAP) - GAP + MARGIN, MARGIN * 2 + text_w))

    # where everything goes: a switch bar per segment, then its rows of cards
    y: float = MARGIN + 4 * LH + 14 + (LH if not st.etcd_ok else 0)
    bars: list[tuple[int, float]] = []
    rows: list[tuple[int, float, list[Card], bool]] = []   # (segment, y, cards, first row)
    for seg, cs in segments:
        bars.append((seg, y))
        y += BAR
        for r in range(0, len(cs), COLUMNS):
            y += LINK + (0 if r == 0 else 8)
            row = cs[r:r + COLUMNS]
            rows.append((seg, y, row, r == 0))
            y += max(c.height() for c in row) + GAP
    if st.router:
        y = max(y, bars[0][1] + BAR + LINK + 3 * LH + 2 * PAD + GAP)
    height = round(y + MARGIN - GAP + 8)

    d = dw.Drawing(width, height, font_family=FONT)
    d.append(dw.Title(f"topology of lab {st.name}"))
    d.append(dw.Rectangle(0, 0, width, height, fill="white"))
    ty = MARGIN + LH - 2
    _text(d, title, MARGIN, ty, bold=True, size=FS + 3)
    ty += LH + 4
    _text(d, about, MARGIN, ty, "" if st.etcd_ok else "bad")
    if not st.etcd_ok:
        ty += LH
        _text(d, f"etcd: {st.etcd_error}", MARGIN, ty, "bad")
    ty += LH
    _text(d, path, MARGIN, ty, "dim")
    ty += LH + 4
    lg = dw.Group(class_="legend")
    lx = float(MARGIN)
    for label, colours in legend:
        lg.append(dw.Rectangle(lx, ty - 10, 12, 12, fill=colours[0], stroke=colours[1]))
        _text(lg, label, lx + 18, ty)
        lx += 18 + len(label) * CW + 24
    d.append(lg)

    seg_info = {s.index: s for s in st.segments}
    for seg, by in bars:
        s = seg_info.get(seg)
        label = f"switch · bridge {s.bridge} · {s.network}" if s else f"switch · {st.underlay}"
        if len(st.segments) > 1:
            label = f"segment {seg + 1} · {label}"
        g = dw.Group(class_="switch")
        g.append(dw.Rectangle(left, by, width - left - MARGIN, BAR, rx=4, fill=UNDER[0], stroke=UNDER[1],
                              stroke_width=1.5))
        _text(g, label, left + PAD, by + BAR / 2 + 4, bold=True)
        d.append(g)
    if st.router:
        _draw_router(d, st, bars)

    bar_y = dict(bars)
    for seg, ry, row, first in rows:
        bus = bar_y[seg] + BAR
        if not first:   # a further row: a bus from the switch, down its left edge
            bus = ry - LINK / 2 - 4
            d.append(dw.Lines(left + 6, bar_y[seg] + BAR, left + 6, bus, left + (len(row) - 1) * (w + GAP) + w / 2,
                              bus, close=False, fill="none", stroke=UNDER[1], stroke_width=1.5))
        for i, card in enumerate(row):
            cx = left + i * (w + GAP)
            d.append(dw.Line(cx + w / 2, bus, cx + w / 2, ry, stroke=UNDER[1], stroke_width=1.5))
            _draw_card(d, card, cx, ry, w)
    return d, sum(1 for c in cards if c.kind == "node")


class Topology:
    """A lab's topology picture. In a notebook it shows as SVG (image/svg+xml, which nbval
    compares), with a one-line text form; ``svg()`` is the file `labkit status --svg` writes."""

    def __init__(self, status: LabStatus):
        self.status = status
        self.drawing, self.drawn = draw(status)

    def svg(self) -> str:
        """The SVG document (element ids, if any, are not randomised: same lab, same text)."""
        return str(self.drawing.as_svg())

    def _repr_svg_(self) -> str:
        return self.svg()

    def __repr__(self) -> str:
        st = self.status
        shown = f", {self.drawn} drawn" if self.drawn < len(st.nodes) else ""
        return (f"Topology(lab {st.name}: {len(st.nodes)} nodes{shown}, Network {st.network}, "
                f"{st.backend}, underlay {st.underlay})")

    def save(self, path: str) -> str:
        """Write the SVG to `path` (must end in .svg; written atomically); returns the full path."""
        from .svgfile import write_svg
        return write_svg(path, self.svg())


def topology(status: LabStatus) -> Topology:
    """The picture of a lab: ``topology(lab.status())``."""
    return Topology(status)
