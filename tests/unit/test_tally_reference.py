"""Summaries for big labs (labkit/tally.py), `status` at scale, and the reference overlay's
pure parts (labkit/reference.py): addresses, subnets, the VXLAN device's arguments."""
import io
import ipaddress

import pytest

from labkit import reference, tally
from labkit.cli import STATUS_ROWS, _status_nodes
from labkit.status import ContainerStatus, NodeStatus


def test_listing_small_lists_every_item():
    assert tally.listing({"master": "10.108.84.1/24", "node1": "10.108.27.1/24"}) == \
        "master=10.108.84.1/24, node1=10.108.27.1/24"


def test_listing_big_summarises_with_an_address_range():
    items = {f"node{i}": f"10.108.{i}.1/24" for i in range(1, 101)}
    items["node50"] = "10.108.1.1/24"     # a shared lease
    items["node51"] = "-"
    text = tally.listing(items, "subnets")
    # sorted as addresses, not as text (10.108.100 > 10.108.99)
    assert text == "100 subnets: 10.108.1.1/24 .. 10.108.100.1/24 (98 distinct), 1 without one"
    assert "node" not in text


def test_slowest_and_counts():
    assert tally.slowest({"a": 0.1}) == ""
    assert tally.slowest({"a": 0.1, "b": 0.9, "c": 0.3}) == "slowest b 0.90s (median 0.30s)"
    text = tally.counts({f"n{i}": 99 for i in range(10)} | {"n3": 97, "n7": 98}, 99)
    assert text == "8/10 nodes have all 99; fewest: n3 97, n7 98"


def test_bar():
    assert tally.bar(0, 4, 8) == "[........] 0/4"
    assert tally.bar(2, 4, 8) == "[####....] 2/4"
    assert tally.bar(4, 4, 8) == "[########] 4/4"


def test_terminal_bar_is_silent_without_a_tty():
    out = io.StringIO()
    tally.TerminalBar(out)("flanneld", 3, 10)
    assert out.getvalue() == ""


def _node(i: int, healthy: bool = True) -> NodeStatus:
    return NodeStatus(name=f"node{i}", namespace=f"x-node{i}", public_ip=f"192.168.50.{i + 1}",
                      subnet=f"10.108.{i}.0/24", vtep_mac=None, lease=None, docker0=f"10.108.{i}.1/24",
                      docker0_in_network=True, in_range=healthy,
                      services={"flanneld": "active", "docker": "active"},
                      containers=[ContainerStatus("c1", f"10.108.{i}.2", True)])


def test_status_of_a_big_lab_fits_a_screen_and_shows_problems_first():
    nodes = [_node(i, healthy=i not in (40, 77)) for i in range(100)]
    shown, note = _status_nodes(nodes, everything=False)
    assert len(shown) == STATUS_ROWS
    names = [n.name for n in shown]
    assert "node40" in names and "node77" in names          # the problems are always shown
    assert names == sorted(names, key=lambda s: int(s[4:]))  # in node order
    assert note.startswith(f"{STATUS_ROWS} of 100 nodes shown (2 with a problem first); 98 healthy")
    assert "labkit status --all" in note
    shown, note = _status_nodes(nodes, everything=True)
    assert len(shown) == 100 and note == ""
    small = nodes[:5]
    assert _status_nodes(small, everything=False) == (small, "")


def test_reference_free_addresses_skip_nodes_and_the_router():
    net = ipaddress.IPv4Network("192.168.50.0/24")
    used = [ipaddress.IPv4Address("192.168.50.1"), ipaddress.IPv4Address("192.168.50.253")]
    got = [str(a) for a in reference.free_addresses(net, used)]
    assert got == ["192.168.50.252", "192.168.50.251", "192.168.50.250", "192.168.50.249"]
    with pytest.raises(Exception, match="no free address"):
        reference.free_addresses(ipaddress.IPv4Network("192.168.50.0/29"),
                                 [ipaddress.IPv4Address(f"192.168.50.{i}") for i in range(1, 4)])


def test_reference_subnets_are_the_networks_last():
    got = reference.ref_subnets(ipaddress.IPv4Network("10.108.0.0/16"), 24)
    assert [str(s) for s in got] == ["10.108.252.0/24", "10.108.253.0/24", "10.108.254.0/24", "10.108.255.0/24"]


def test_reference_vxlan_args_copy_the_labs_device():
    data = {"id": 1, "local": "192.168.50.1", "link": "eth0", "port": 8472, "learning": False, "ttl": 0,
            "df": "unset", "ageing": 300, "udp_csum": True, "mtu": 1450}
    assert reference.vxlan_args(data, ipaddress.IPv4Address("192.168.50.252")) == \
        "id 1 local 192.168.50.252 dev eth0 dstport 8472 nolearning ttl auto udpcsum ageing 300"
