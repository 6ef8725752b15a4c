"""The control plane, live: what etcd, flanneld and the kernel do when a node joins or leaves.

flannel's control plane is a watch: every flanneld watches ``<prefix>/subnets/`` in etcd
(``pkg/subnet/watch.go``) and, for each lease event, its backend programs the kernel
(``backend/vxlan/vxlan_network.go``: on an added lease AddARP, AddFDB, then the route; on a
removed one the same three go). :func:`watch_control_plane` runs some actions (``lab.add_node``,
``lab.remove_node``, a ping ...) while it records, each on one lane:

* etcd's events under the lease prefix (``etcdctl watch --prefix``, a v3 watch like flanneld's
  own; legacy labs speak v2 and have no etcd lane);
* on every watched node, the kernel's neighbour (ARP), FDB and route changes on flannel.1,
  from one rtnetlink socket per node subscribed to the neighbour and IPv4 route groups (what
  ``ip monitor route neigh`` listens to; FDB entries are neighbour messages of the bridge
  family), and the kernel's own L3-miss requests, which flannel 0.7 answered;
* beside them, the lines flanneld logged meanwhile (its log file, from where it was).

The result draws itself (:func:`draw_timeline`, pure, tested on synthetic events) with lanes
side by side and events in each lane's order: the picture depends on which events happened,
never on when (times are printed as ``t=1.234s``, which the notebooks' nbval sanitizes).

:func:`compare_eras` puts two labs' flannel.1 tables side by side: flannel 0.7.1 (one route for
the whole Network, a neighbour entry per remote *container* answered on demand) and today's
(one route per peer subnet, a PERMANENT entry per peer's flannel.1 address).
"""
from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import drawsvg as dw

if TYPE_CHECKING:
    from ..lab import Lab

RTMGRP_NEIGH, RTMGRP_IPV4_ROUTE = 0x4, 0x40
NETLINK_ROUTE = 0
AF_INET, AF_BRIDGE = 2, 7
RT_TABLE_MAIN = 254
RTNH_F_ONLINK = 4
NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
       0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}
MAC = re.compile(r"\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b")
GLOG = re.compile(r"^([IWEF])\d{4} (\d\d):(\d\d):(\d\d\.\d{6})\s+\d+ (.*)$")
WIDTH = 1180
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"
KIND_COLOURS = {"etcd": "#fff2cc", "log": "#f2f2f2", "add": "#e2f0d9", "del": "#fbe5d6", "miss": "#deebf7"}


@dataclass
class Event:
    """One thing that happened: on which lane (etcd or a node), what kind, and its words.
    `t` is seconds since its phase began; `kind` is etcd, log, add, del or miss."""
    phase: int
    lane: str
    kind: str
    text: str
    t: float = 0.0


@dataclass
class Phase:
    title: str
    lanes: list[str]


@dataclass
class Timeline:
    phases: list[Phase]
    events: list[Event] = field(default_factory=list)

    def lane_events(self, phase: int, lane: str) -> list[Event]:
        """A lane's events of one phase: etcd's and the kernel's in the order they were heard
        (one watch, one netlink socket per node: the order is the kernel's), then the lines
        flanneld logged meanwhile, in their order. Log lines are not merged in by time: a
        line logged just after a kernel change can be read before its notification is, and
        the picture must not depend on that race."""
        mine = [e for e in self.events if e.phase == phase and e.lane == lane]
        return [e for e in mine if e.kind != "log"] + [e for e in mine if e.kind == "log"]

    def text(self) -> str:
        lines = []
        for i, ph in enumerate(self.phases):
            lines.append(ph.title)
            width = max(len(x) for x in ph.lanes)
            for lane in ph.lanes:
                evs = self.lane_events(i, lane)
                if not evs:
                    lines.append(f"  {lane:<{width}}  (nothing)")
                for e in evs:
                    lines.append(f"  {lane:<{width}}  t={e.t:.3f}s  {MARK[e.kind]} {e.text}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def svg(self) -> str:
        return str(draw_timeline(self).as_svg(randomize_ids=False))

    def _repr_svg_(self) -> str:
        return self.svg()


MARK = {"etcd": "etcd", "log": "log ", "add": "+   ", "del": "-   ", "miss": "?   "}


def _wrap(text: str, width: int, lines: int) -> list[str]:
    out: list[str] = []
    for word in text.split(" "):
        while len(word) > width:                       # a very long word: cut it
            out.append(word[:width])
            word = word[width:]
        if out and len(out[-1]) + 1 + len(word) <= width:
            out[-1] += " " + word
        else:
            out.append(word)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1] + "…"
    return out


BOX_LINES = 3          # lines of text in one event box
LINE = 11.5
BOX = 10 + BOX_LINES * LINE
TOP_GAP = 36           # a phase's title and the watch line above its boxes


def draw_timeline(tl: Timeline) -> dw.Drawing:
    """Lanes side by side (etcd first), one band per phase, each lane's events top to bottom
    in their order; an arrow from the phase's first etcd event to each node's first event."""
    lanes = list(dict.fromkeys(lane for ph in tl.phases for lane in ph.lanes))
    col = (WIDTH - 20) / max(len(lanes), 1)
    chars = int((col - 16) / 5.45)                    # 9 px monospace: about 5.4 px a character
    heights = []
    for i, ph in enumerate(tl.phases):
        rows = max([len(tl.lane_events(i, lane)) for lane in ph.lanes] + [1])
        heights.append(TOP_GAP + rows * (BOX + 6) + 4)
    height = 30 + sum(heights) + 6
    d = dw.Drawing(WIDTH, height, id_prefix="cplane")
    d.append(dw.Rectangle(0, 0, WIDTH, height, fill="white"))
    for j, lane in enumerate(lanes):
        d.append(dw.Text(lane, 13, 10 + j * col + col / 2, 20, text_anchor="middle", font_weight="bold",
                         font_family=SANS))
    y = 30.0
    for i, ph in enumerate(tl.phases):
        d.append(dw.Rectangle(4, y, WIDTH - 8, heights[i] - 4, rx=6, fill="#fafafa", stroke="#bfbfbf"))
        d.append(dw.Text(ph.title, 12, 12, y + 17, font_weight="bold", font_family=SANS))
        # etcd's event reaches every node through its watch: a line above the boxes, an arrow into each lane
        has_etcd = any(e.kind == "etcd" for e in (e for e in tl.events if e.phase == i))
        busy = [j for j, lane in enumerate(lanes) if tl.lane_events(i, lane)]
        if has_etcd and len(busy) > 1:
            ly = y + 27
            x0, x1 = 10 + col / 2, 10 + busy[-1] * col + col / 2
            d.append(dw.Line(x0, ly, x1, ly, stroke="#7f6000", stroke_width=1, stroke_dasharray="4,3"))
            d.append(dw.Text("watch", 9, x0 + col / 2 + 40, ly - 3, fill="#7f6000", font_family=SANS))
            for j in busy[1:]:
                ax = 10 + j * col + col / 2
                d.append(dw.Lines(ax - 4, ly + 1, ax + 4, ly + 1, ax, ly + 7, close=True, fill="#7f6000"))
        for j, lane in enumerate(lanes):
            x = 10 + j * col
            for k, e in enumerate(tl.lane_events(i, lane)):
                by = y + TOP_GAP + k * (BOX + 6)
                d.append(dw.Rectangle(x + 4, by, col - 8, BOX, rx=4, fill=KIND_COLOURS.get(e.kind, "#ffffff"),
                                      stroke="#8c8c8c", stroke_width=0.7))
                head = {"etcd": "etcd", "log": "flanneld logged", "add": "+ kernel", "del": "− kernel",
                        "miss": "? kernel asks"}.get(e.kind, e.kind)
                d.append(dw.Text(f"{head}   t={e.t:.3f}s", 9, x + 9, by + 11, fill="#595959", font_family=SANS))
                for m, line in enumerate(_wrap(e.text, chars, BOX_LINES - 1)):
                    d.append(dw.Text(line, 9, x + 9, by + 11 + LINE * (m + 1), font_family=MONO,
                                     font_style="italic" if e.kind == "log" else "normal"))
        y += heights[i]
    return d


# -- recording ----------------------------------------------------------------------------
def _nl_socket() -> socket.socket:
    """(In a node's namespace) an rtnetlink socket that hears neighbour and route changes."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE))
    return s


def describe_rtnl(msg: Any, ifindex: int, dev: str) -> tuple[str, str] | None:
    """(kind, words) for a parsed rtnetlink message about `dev`, or None for anything else.
    A pyroute2 message: event RTM_NEWNEIGH/RTM_DELNEIGH/RTM_GETNEIGH/RTM_NEWROUTE/RTM_DELROUTE."""
    ev = msg.get("event")
    if ev in ("RTM_NEWNEIGH", "RTM_DELNEIGH", "RTM_GETNEIGH"):
        if msg.get("ifindex") != ifindex:
            return None
        dst, mac, state = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR"), msg.get("state")
        if msg.get("family") == AF_BRIDGE:
            if ev == "RTM_GETNEIGH":
                return None
            return ("add" if ev == "RTM_NEWNEIGH" else "del"), f"FDB {mac} dst {dst} dev {dev}"
        if ev == "RTM_GETNEIGH" or (ev == "RTM_NEWNEIGH" and state == 0x01):
            return "miss", f"L3 miss: who has {dst}? (neighbour {dst} dev {dev} INCOMPLETE)"
        if ev == "RTM_DELNEIGH":
            return "del", f"ARP {dst} dev {dev}"
        if not mac:          # a deleted entry first turns FAILED: part of its removal
            return None
        return "add", f"ARP {dst} dev {dev} lladdr {mac} {NUD.get(state, state)}"
    if ev in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        if msg.get_attr("RTA_OIF") != ifindex or msg.get_attr("RTA_TABLE") != RT_TABLE_MAIN:
            return None
        dst = f"{msg.get_attr('RTA_DST') or '0.0.0.0'}/{msg.get('dst_len')}"
        gw = msg.get_attr("RTA_GATEWAY")
        words = f"route {dst}" + (f" via {gw}" if gw else "") + f" dev {dev}"
        if msg.get("flags", 0) & RTNH_F_ONLINK:
            words += " onlink"
        return ("add" if ev == "RTM_NEWROUTE" else "del"), words
    return None


def parse_glog(line: str, day: float) -> tuple[float, str] | None:
    """A glog line -> (epoch seconds, the line without its time stamp and pid)."""
    m = GLOG.match(line)
    if not m:
        return None
    secs = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
    return day + secs, m.group(5)


def _midnight(now: float) -> float:
    lt = time.localtime(now)
    return now - (lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec) - (now % 1)


class _Recorder:
    """Sockets and a watch, open while the actions run."""

    def __init__(self, lab: Lab, nodes: Sequence[str], dev: str) -> None:
        from ..capture import in_namespace
        self.lab, self.dev = lab, dev
        self.socks: dict[int, tuple[str, socket.socket, int]] = {}
        self.events: list[tuple[float, str, str, str]] = []     # (epoch, lane, kind, text)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.logs = {n: lab.state.node_dir(n, "log", "flanneld.log") for n in nodes}
        self.offsets = {n: (os.path.getsize(p) if os.path.exists(p) else 0) for n, p in self.logs.items()}
        try:
            for n in nodes:
                ns = lab.node(n).ns
                index = in_namespace(ns, socket.if_nametoindex, dev)
                s = in_namespace(ns, _nl_socket)
                self.socks[s.fileno()] = (n, s, index)
        except BaseException:
            self.close()
            raise
        self.watch: subprocess.Popen[str] | None = None
        self.watch_thread: threading.Thread | None = None
        if lab.spec.flavour != "legacy":
            self._watch_etcd()
        self.thread = threading.Thread(target=self._read, name="labkit-timeline", daemon=True)
        self.thread.start()

    def _watch_etcd(self) -> None:
        """`etcdctl watch --prefix <prefix>/subnets/` from the next revision (no event is missed
        while it connects), through etcd's unix socket in the lab's state folder: a child of this
        process and nothing else, so that stopping it closes its pipe. Not a watch of this
        process's gRPC client: a gRPC stream kept open here makes every later fork warn."""
        prefix = f"{self.lab.spec.prefix}/subnets/"
        base = ["etcdctl", "--endpoints", f"unix://{self.lab.state.etcd_socket}"]
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(base + ["get", prefix, "--prefix", "--keys-only", "--limit", "1", "-w", "json"],
                           env=env, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        rev = int(json.loads(r.stdout)["header"]["revision"])
        self.watch = subprocess.Popen(base + ["watch", "--prefix", prefix, "--rev", str(rev + 1), "-w", "json"],
                                      env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self.watch_thread = threading.Thread(target=self._etcd, args=(self.watch,), name="labkit-etcd-watch",
                                             daemon=True)
        self.watch_thread.start()

    def _etcd(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            try:
                events = json.loads(line).get("Events") or []
            except ValueError:
                continue
            for ev in events:
                kv = ev.get("kv", {})
                key = base64.b64decode(kv.get("key", "")).decode(errors="replace")
                if ev.get("type") == 1:
                    text = f"DELETE {key}"
                else:
                    text = f"PUT {key} {base64.b64decode(kv.get('value', '')).decode(errors='replace')}"
                with self.lock:
                    self.events.append((now, "etcd", "etcd", text))

    def _read(self) -> None:
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl
        marshal = MarshalRtnl()
        while True:
            ready, _, _ = select.select(list(self.socks), [], [], 0.1)
            if not ready and self.stop.is_set():
                return                     # stopped, and nothing left unread
            for fd in ready:
                node, s, index = self.socks[fd]
                try:
                    data = s.recv(1 << 16)
                except OSError:
                    continue
                now = time.time()
                for msg in marshal.parse(data):
                    said = describe_rtnl(msg, index, self.dev)
                    if said is not None:
                        with self.lock:
                            self.events.append((now, node, said[0], said[1]))

    def quiet_for(self, seconds: float, at_most: float) -> None:
        """Wait until nothing new has been recorded for `seconds` and no socket holds an unread
        message (at most `at_most`): on a loaded machine the reader can lag behind the kernel."""
        end = time.monotonic() + at_most
        seen, since = -1, time.monotonic()
        while time.monotonic() < end:
            with self.lock:
                n = len(self.events)
            unread = select.select(list(self.socks), [], [], 0)[0]
            if n != seen or unread:
                seen, since = n, time.monotonic()
            elif time.monotonic() - since >= seconds:
                return
            time.sleep(0.05)

    def log_lines(self) -> list[tuple[float, str, str, str]]:
        """What each node's flanneld logged since the last call (glog lines, with their times)."""
        out = []
        day = _midnight(time.time())
        for n, path in self.logs.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[n])
                    data = f.read()
            except OSError:
                continue
            self.offsets[n] += len(data)
            for line in data.decode(errors="replace").splitlines():
                parsed = parse_glog(line, day)
                if parsed is not None:
                    out.append((parsed[0], n, "log", parsed[1]))
        return out

    def take(self) -> list[tuple[float, str, str, str]]:
        with self.lock:
            got, self.events = self.events, []
        return got + self.log_lines()

    def close(self) -> None:
        self.stop.set()
        if getattr(self, "thread", None) is not None:
            self.thread.join(timeout=2)
        for _n, s, _i in self.socks.values():
            s.close()
        watch = getattr(self, "watch", None)
        if watch is not None:
            watch.terminate()
            try:
                watch.wait(timeout=2)
            except subprocess.TimeoutExpired:
                watch.kill()
                watch.wait()
            if self.watch_thread is not None:
                self.watch_thread.join(timeout=2)     # its pipe is at its end now
            if watch.stdout is not None and (self.watch_thread is None or not self.watch_thread.is_alive()):
                watch.stdout.close()


def watch_control_plane(lab: Lab, actions: Sequence[tuple[str, Callable[[], object]]],
                        nodes: Sequence[str] | None = None, dev: str = "flannel.1",
                        settle: float = 0.4, log_filter: Callable[[str], bool] | None = None) -> Timeline:
    """Run each (title, action) in turn while recording etcd, the kernel of `nodes` (default:
    every node there is now) and their flanneld logs; one phase per action.

    After each action the recording goes on until nothing new has happened for `settle`
    seconds (at most 5 s): a removed lease reaches the peers after remove_node returns.
    `log_filter` keeps only the log lines it accepts (default: all)."""
    watched = list(nodes) if nodes is not None else [n.name for n in lab.nodes]
    lanes = (["etcd"] if lab.spec.flavour != "legacy" else []) + watched
    rec = _Recorder(lab, watched, dev)
    tl = Timeline(phases=[])
    try:
        rec.take()
        for i, (title, action) in enumerate(actions):
            t0 = time.time()
            action()
            rec.quiet_for(settle, 5.0)
            tl.phases.append(Phase(title, lanes))
            for epoch, lane, kind, text in rec.take():
                if kind == "log" and log_filter is not None and not log_filter(text):
                    continue
                tl.events.append(Event(i, lane, kind, text, max(0.0, epoch - t0)))
    finally:
        rec.close()
    return tl


# -- two eras side by side ----------------------------------------------------------------
@dataclass
class EraTables:
    """One lab's flannel.1 tables on one node."""
    label: str
    routes: list[str]
    neigh: list[str]
    fdb: list[str]


def era_tables(lab: Lab, node: str, label: str, dev: str = "flannel.1") -> EraTables:
    """`ip route show dev DEV`, `ip neigh show dev DEV`, `bridge fdb show dev DEV` on `node`
    (one shell for the three: each node command starts a process), each sorted without its
    MACs: the kernel lists entries in hash order, and MACs are random."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", dev):
        raise ValueError(f"invalid device name {dev!r}")
    r = lab.sh(node, f"ip route show dev {dev}; echo --; ip neigh show dev {dev}; echo --; "
                     f"bridge fdb show dev {dev}", timeout=10)
    parts = (r.stdout.split("--\n") + ["", "", ""])[:3]
    routes, neigh, fdb = ([ln.strip() for ln in sorted(part.splitlines(), key=lambda ln: MAC.sub("", ln))
                           if ln.strip()] for part in parts)
    return EraTables(label, routes, neigh, fdb)


@dataclass
class Eras:
    left: EraTables
    right: EraTables

    ROWS = (("routes (ip route show dev flannel.1)", "routes"),
            ("ARP (ip neigh show dev flannel.1)", "neigh"),
            ("FDB (bridge fdb show dev flannel.1)", "fdb"))

    def text(self) -> str:
        out = []
        for title, attr in self.ROWS:
            out.append(title)
            for side in (self.left, self.right):
                rows = getattr(side, attr)
                out.append(f"  {side.label}: {len(rows)}")
                out.extend(f"    {r}" for r in rows)
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.text()

    def svg(self) -> str:
        return str(draw_eras(self).as_svg(randomize_ids=False))

    def _repr_svg_(self) -> str:
        return self.svg()


def draw_eras(eras: Eras, max_lines: int = 6) -> dw.Drawing:
    """Two columns (one lab each), three rows (routes, ARP, FDB), every entry listed."""
    col = (WIDTH - 30) / 2
    heights = [24 + LINE * max(1, min(max_lines, max(len(getattr(s, attr)) for s in (eras.left, eras.right))))
               + 8 for _t, attr in Eras.ROWS]
    height = 34 + sum(h + 8 for h in heights)
    d = dw.Drawing(WIDTH, height, id_prefix="eras")
    d.append(dw.Rectangle(0, 0, WIDTH, height, fill="white"))
    for j, side in enumerate((eras.left, eras.right)):
        d.append(dw.Text(side.label, 13, 10 + j * (col + 10) + col / 2, 20, text_anchor="middle",
                         font_weight="bold", font_family=SANS))
    y = 30.0
    for (title, attr), h in zip(Eras.ROWS, heights):
        for j, side in enumerate((eras.left, eras.right)):
            x = 10 + j * (col + 10)
            rows = getattr(side, attr)
            d.append(dw.Rectangle(x, y, col, h, rx=5, fill="#f7f9fc" if j else "#fbf7f2", stroke="#bfbfbf"))
            d.append(dw.Text(f"{title}: {len(rows)}", 10.5, x + 8, y + 15, font_weight="bold", font_family=SANS))
            shown = rows[:max_lines] if len(rows) <= max_lines else rows[: max_lines - 1]
            for k, r in enumerate(shown):
                d.append(dw.Text(r[:96], 9.5, x + 8, y + 30 + LINE * k, font_family=MONO))
            if len(shown) < len(rows):
                d.append(dw.Text(f"… and {len(rows) - len(shown)} more", 9.5, x + 8, y + 30 + LINE * len(shown),
                                 fill="#7f7f7f", font_family=SANS))
            if not rows:
                d.append(dw.Text("(none)", 9.5, x + 8, y + 30, fill="#7f7f7f", font_family=SANS))
        y += h + 8
    return d


def compare_eras(legacy: Lab, modern: Lab, node: str = "master") -> Eras:
    """flannel.1's route, ARP and FDB tables on `node` of a legacy (0.7.1) and a modern lab."""
    return Eras(era_tables(legacy, node, "flannel 0.7.1 (legacy)"), era_tables(modern, node, "flannel today (modern)"))
