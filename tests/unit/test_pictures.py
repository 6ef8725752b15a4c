"""The packet walk and the control-plane timeline, drawn from synthetic data (no lab)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from labkit.pictures.timeline import (
    Eras,
    EraTables,
    Event,
    Phase,
    Timeline,
    describe_rtnl,
    draw_timeline,
    parse_glog,
)
from labkit.pictures.walk import Hop, Walk, _longest_match, _vxlan_line

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]


def geometry(svg: str) -> str:
    """The SVG without its words: what must not change when only addresses or MACs do."""
    return re.sub(r"<text[^>]*>.*?</text>", "", svg, flags=re.S)


def hops(mac: str = "aa:bb:cc:dd:ee:01", port_len: int = 98) -> list[Hop]:
    return [
        Hop("container → veth", "master/c1", "src", [("ip route get 10.1.2.2", "10.1.2.2 via 10.1.1.1 dev eth0")],
            "the default route", "master veth1234567 (in)", 98, "10.1.1.2 > 10.1.2.2 ICMP echo-request seq=1",
            [("Ethernet", 14), ("IP", 20), ("ICMP", 8), ("payload", 56)]),
        Hop("route lookup", "master", "src", [("ip route get 10.1.2.2", "10.1.2.2 via 10.1.2.0 dev flannel.1")]),
        Hop("neighbour (ARP)", "master", "src", [("ip neigh show 10.1.2.0", f"10.1.2.0 lladdr {mac} PERMANENT")]),
        Hop("eth0", "master", "src", [], "underlay", "master eth0 (out)", 148,
            "192.168.50.1 > 192.168.50.2 udp/8472 VXLAN vni=1 | 10.1.1.0 > 10.1.2.2 ICMP echo-request seq=1",
            [("Ethernet", 14), ("IP", 20), ("UDP", 8), ("VXLAN", 8), ("inner Ethernet", 14), ("inner IP", 20),
             ("inner ICMP", 8), ("payload", 56)]),
        Hop("switch", "switch", "wire", [("bridge fdb show", f"{mac} dev node1 master br0")]),
    ]


def test_walk_draws_every_hop_with_its_entry_and_bytes() -> None:
    walk = Walk("master/c1", "node1/c1", hops())
    words = texts(walk.svg())
    assert words[0] == "One echo request, master/c1 → node1/c1, hop by hop"
    for n in range(1, 6):
        assert str(n) in words
    assert "10.1.2.0 lladdr aa:bb:cc:dd:ee:01 PERMANENT" in words
    assert "master eth0 (out): 148 B" in words
    assert "no capture point: this step is inside the kernel" in words
    # the outer and the inner packet on a line each
    assert "192.168.50.1 > 192.168.50.2 udp/8472 VXLAN vni=1" in words
    assert "VXLAN 8" not in words and "8" in words          # a narrow header shows its size only
    text = walk.text()
    assert "bytes on master eth0 (out): 148 B = Ethernet 14 + IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14" in text
    assert "bytes: no capture point (inside the kernel)" in text


def test_walk_bars_share_one_scale() -> None:
    svg = Walk("a/c1", "b/c1", hops()).svg()
    widths = {}
    for r in ET.fromstring(svg).iter(f"{SVG}rect"):
        if r.get("height") == "16":
            widths.setdefault(r.get("y"), 0.0)
            widths[r.get("y")] += float(r.get("width", 0))
    small, big = sorted(widths.values())
    assert abs(big / small - 148 / 98) < 0.01


def test_walk_picture_does_not_depend_on_macs() -> None:
    a = Walk("a/c1", "b/c1", hops("aa:bb:cc:dd:ee:01")).svg()
    b = Walk("a/c1", "b/c1", hops("12:34:56:78:9a:bc")).svg()
    assert a != b and geometry(a) == geometry(b)
    assert a == Walk("a/c1", "b/c1", hops("aa:bb:cc:dd:ee:01")).svg()   # no random ids


def test_walk_highlight_frames_one_hop() -> None:
    svg = Walk("a/c1", "b/c1", hops()).svg(highlight=2)
    framed = [r for r in ET.fromstring(svg).iter(f"{SVG}rect") if r.get("stroke") == "#c00000"]
    assert len(framed) == 1


def test_walk_table_helpers() -> None:
    routes = "default via 10.0.0.1 dev eth0\n10.1.0.0/16 dev flannel.1\n10.1.2.0/24 via 10.1.2.0 dev flannel.1 onlink"
    assert _longest_match(routes) == "10.1.2.0/24 via 10.1.2.0 dev flannel.1 onlink"
    assert _longest_match("") == ""
    details = ("3: flannel.1: <BROADCAST> mtu 1450\n    link/ether aa:bb:cc:dd:ee:ff\n"
               "    vxlan id 1 local 192.168.50.1 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto")
    assert _vxlan_line(details) == "vxlan id 1 local 192.168.50.1 dev eth0 dstport 8472 nolearning"


def timeline(mac: str = "aa:bb:cc:dd:ee:01") -> Timeline:
    lanes = ["etcd", "master", "node1"]
    tl = Timeline([Phase("node2 joins", lanes), Phase("node2 leaves", lanes)])
    tl.events = [
        Event(0, "etcd", "etcd", "PUT /coreos.com/network/subnets/10.1.3.0-24 {}", 1.0),
        Event(0, "master", "log", f"vxlan_network.go] adding subnet: 10.1.3.0/24 VtepMAC: {mac}", 1.01),
        Event(0, "master", "add", f"ARP 10.1.3.0 dev flannel.1 lladdr {mac} PERMANENT", 1.02),
        Event(0, "master", "add", "route 10.1.3.0/24 via 10.1.3.0 dev flannel.1 onlink", 1.03),
        Event(0, "node1", "add", f"ARP 10.1.3.0 dev flannel.1 lladdr {mac} PERMANENT", 1.05),
        Event(1, "etcd", "etcd", "DELETE /coreos.com/network/subnets/10.1.3.0-24", 0.1),
        Event(1, "master", "del", "route 10.1.3.0/24 via 10.1.3.0 dev flannel.1 onlink", 0.2),
    ]
    return tl


def test_timeline_lanes_keep_kernel_order_and_put_log_lines_last() -> None:
    tl = timeline()
    assert [e.kind for e in tl.lane_events(0, "master")] == ["add", "add", "log"]
    assert tl.lane_events(1, "node1") == []
    text = tl.text()
    assert text.splitlines()[0] == "node2 joins"
    assert "  master  t=1.020s  +    ARP 10.1.3.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:01 PERMANENT" in text
    assert "  node1   (nothing)" in text
    words = texts(tl.svg())
    assert words[:3] == ["etcd", "master", "node1"]
    assert "watch" in words and "− kernel   t=0.200s" in words


def test_timeline_picture_does_not_depend_on_times_or_macs() -> None:
    a, b = timeline(), timeline("12:34:56:78:9a:bc")
    for e in b.events:
        e.t += 0.5
    assert geometry(draw_timeline(a).as_svg()) == geometry(draw_timeline(b).as_svg())


class Msg(dict):
    """A pyroute2-like message: fields as keys, attributes in 'attrs'."""

    def get_attr(self, name: str) -> object:
        return self.get("attrs", {}).get(name)


def test_describe_rtnl_names_arp_fdb_route_and_l3_miss() -> None:
    arp = Msg(event="RTM_NEWNEIGH", family=2, ifindex=3, state=0x80,
              attrs={"NDA_DST": "10.1.3.0", "NDA_LLADDR": "aa:bb:cc:dd:ee:01"})
    assert describe_rtnl(arp, 3, "flannel.1") == (
        "add", "ARP 10.1.3.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:01 PERMANENT")
    assert describe_rtnl(arp, 4, "flannel.1") is None                       # another device
    fdb = Msg(event="RTM_DELNEIGH", family=7, ifindex=3, state=0x80,
              attrs={"NDA_DST": "192.168.50.3", "NDA_LLADDR": "aa:bb:cc:dd:ee:01"})
    assert describe_rtnl(fdb, 3, "flannel.1") == ("del", "FDB aa:bb:cc:dd:ee:01 dst 192.168.50.3 dev flannel.1")
    miss = Msg(event="RTM_GETNEIGH", family=2, ifindex=3, state=0x01, attrs={"NDA_DST": "10.1.3.2"})
    assert describe_rtnl(miss, 3, "flannel.1")[0] == "miss"                # type: ignore[index]
    failing = Msg(event="RTM_NEWNEIGH", family=2, ifindex=3, state=0x20, attrs={"NDA_DST": "10.1.3.0"})
    assert describe_rtnl(failing, 3, "flannel.1") is None                   # part of a removal
    route = Msg(event="RTM_NEWROUTE", flags=4, dst_len=24,
                attrs={"RTA_OIF": 3, "RTA_TABLE": 254, "RTA_DST": "10.1.3.0", "RTA_GATEWAY": "10.1.3.0"})
    assert describe_rtnl(route, 3, "flannel.1") == ("add", "route 10.1.3.0/24 via 10.1.3.0 dev flannel.1 onlink")
    local = Msg(event="RTM_NEWROUTE", flags=0, dst_len=32,
                attrs={"RTA_OIF": 3, "RTA_TABLE": 255, "RTA_DST": "10.1.3.0"})
    assert describe_rtnl(local, 3, "flannel.1") is None                     # the local table is not the lesson


def test_parse_glog() -> None:
    assert parse_glog("I1130 06:52:59.363141   26672 vxlan_network.go] adding subnet: x", 1000.0) == (
        1000.0 + 6 * 3600 + 52 * 60 + 59.363141, "vxlan_network.go] adding subnet: x")
    assert parse_glog("flanneld.service: main process exited", 0.0) is None


def test_eras_side_by_side() -> None:
    left = EraTables("flannel 0.7.1 (legacy)", ["10.1.0.0/16"], ["10.1.3.2 lladdr aa:bb:cc:dd:ee:01 REACHABLE"], [])
    right = EraTables("flannel today (modern)", [f"10.1.{i}.0/24 via 10.1.{i}.0 onlink" for i in range(1, 9)], [], [])
    eras = Eras(left, right)
    words = texts(eras.svg())
    assert "routes (ip route show dev flannel.1): 1" in words and "routes (ip route show dev flannel.1): 8" in words
    assert "… and 3 more" in words and "(none)" in words
    assert "  flannel 0.7.1 (legacy): 1\n    10.1.0.0/16" in eras.text()


def test_stepper_frames_the_hop_the_slider_names() -> None:
    from labkit.notebook.stepper import Stepper
    stepper = Stepper(Walk("master/c1", "node1/c1", hops()))
    assert repr(stepper).startswith("packet walk stepper: 5 hops, master/c1 → node1/c1")
    assert "container → veth" in stepper.detail.value
    stepper.step(1)
    stepper.step(10)                                   # stops at the last hop
    assert stepper.slider.value == 5 and "switch" in stepper.detail.value
    assert stepper.picture.value == stepper.walk.svg(highlight=4)
    stepper.step(-10)
    assert stepper.slider.value == 1
