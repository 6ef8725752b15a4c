"""A routed underlay: two L2 segments joined by <lab>-router (labkit up --segments 2).

host-gw needs every PublicIP on the local segment: across the router the kernel
refuses the route, flanneld logs it as flannel does and keeps running, and those
peers are unreachable. VXLAN with DirectRouting uses plain routes inside a segment
and encapsulates across it.
"""
import ipaddress
import json

import pytest

from tests.helpers import labkit, sh, unique_name, unreachable

SEG = {"master": 0, "node1": 1, "node2": 0, "node3": 1}   # nodes are dealt in turn


def leases_by_ip(lab):
    return {json.loads(v)["PublicIP"]: ipaddress.IPv4Network(sn) for sn, (_, v) in lab.leases().items()}


@pytest.fixture(scope="module")
def routed():
    """`labkit up --nodes 4 --segments 2 --backend host-gw --containers 1 --flannel-options=-v=2`."""
    from labkit.lab import Lab, clean
    name = unique_name("rt")
    try:
        # -v=2: vxlan_network.go logs "adding subnet" / "Adding direct route" at log.V(2)
        r = labkit("up", "--name", name, "--nodes", "4", "--segments", "2", "--backend", "host-gw",
                   "--containers", "1", "--flannel-options=-v=2")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "joined by" in r.stdout
        yield Lab.attach(name)
    finally:
        clean(name)


def test_two_segments_and_a_router(routed):
    addrs = {n.name: sh(routed, n.name, "ip -4 -o addr show dev eth0").split()[3] for n in routed.nodes}
    assert addrs == {"master": "192.168.50.1/25", "node1": "192.168.50.129/25",
                     "node2": "192.168.50.2/25", "node3": "192.168.50.130/25"}
    router = routed.state.netns("router")
    from labkit import netns
    out = netns.run(router, ["ip", "-4", "-o", "addr"]).stdout
    assert "eth0    inet 192.168.50.126/25" in out and "eth1    inet 192.168.50.254/25" in out, out
    assert "192.168.50.0/24 via 192.168.50.126 dev eth0" in sh(routed, "node2", "ip route")
    assert "192.168.50.0/24 via 192.168.50.254 dev eth0" in sh(routed, "node3", "ip route")
    # the underlay itself is routed: a node reaches the other segment (one hop: TTL 63)
    assert "ttl=63" in sh(routed, "node2", "ping -c 1 -W 2 192.168.50.130")
    assert "ttl=64" in sh(routed, "node1", "ping -c 1 -W 2 192.168.50.130")
    # etcd on the master is reached through the router from the far segment
    assert "Network" in sh(routed, "node3", "etcdctl get /coreos.com/network/config --print-value-only")


def test_status_and_its_picture_show_the_router_read_from_the_router(routed):
    from labkit.pictures import topology
    st = routed.status()
    assert [(s.network, s.bridge, s.router) for s in st.segments] == [
        ("192.168.50.0/25", "br0", "192.168.50.126/25"), ("192.168.50.128/25", "br1", "192.168.50.254/25")]
    assert st.router == routed.state.netns("router")
    assert {n.name: n.segment for n in st.nodes} == {"master": 0, "node1": 1, "node2": 0, "node3": 1}
    assert st.node("node3").uplink == {"name": "eth0", "addresses": ["192.168.50.130/25"], "mtu": 1500, "up": True}
    svg = topology(st).svg()
    assert svg.count('class="router"') == 1 and svg.count('class="switch"') == 2
    assert "192.168.50.254/25" in svg and "no device: peers via eth0" in svg


def test_host_gw_across_the_router_fails_the_way_flannel_fails(routed):
    by_ip = leases_by_ip(routed)
    for node in routed.nodes:
        log = node.service("flanneld").log()
        assert node.service("flanneld").is_active()          # flannel only logs, and carries on
        routes = sh(routed, node.name, "ip route")
        for peer in routed.nodes:
            if peer is node:
                continue
            sn = by_ip[str(peer.public_ip)]
            if SEG[peer.name] == SEG[node.name]:
                assert f"{sn} via {peer.public_ip} dev eth0" in routes
            else:
                assert f"{sn} via" not in routes
                assert (f"Error adding route to {{Ifindex: 2 Dst: {sn} Src: <nil> Gw: {peer.public_ip} "
                        f"Flags: [] Table: 0 Realm: 0}}: network is unreachable") in log, log[-800:]
    # the kernel says the same to an admin who tries it by hand
    sn2 = by_ip["192.168.50.129"]
    r = routed.sh("node2", f"ip route add {sn2} via 192.168.50.129 dev eth0")
    assert r.returncode != 0 and "Nexthop has invalid gateway" in r.stderr, r.stderr
    # pods reach each other inside a segment only
    assert unreachable(routed) == sorted(
        (f"{a}/c1", f"{b}/c1") for a in SEG for b in SEG if a != b and SEG[a] != SEG[b])


def test_vxlan_direct_routing_is_direct_inside_a_segment_and_encapsulated_across(routed):
    routed.switch_backend("vxlan", direct_routing=True)
    by_ip = leases_by_ip(routed)
    for node in routed.nodes:
        routes = sh(routed, node.name, "ip route")
        fdb = sh(routed, node.name, "bridge fdb show dev flannel.1")
        for peer in routed.nodes:
            if peer is node:
                continue
            sn = by_ip[str(peer.public_ip)]
            if SEG[peer.name] == SEG[node.name]:
                assert f"{sn} via {peer.public_ip} dev eth0" in routes, routes
                assert f"dst {peer.public_ip} " not in fdb
            else:
                assert f"{sn} via {sn.network_address} dev flannel.1 onlink" in routes, routes
                assert f"dst {peer.public_ip} self permanent" in fdb, fdb
        log = node.service("flanneld").log()
        assert "Adding direct route to subnet" in log and "adding subnet" in log
    assert unreachable(routed) == []


def test_a_node_added_later_joins_its_segment(routed):
    node = routed.add_node()                       # node4: dealt to the first segment
    assert node.name == "node4"
    assert sh(routed, "node4", "ip -4 -o addr show dev eth0").split()[3] == "192.168.50.3/25"
    assert "192.168.50.0/24 via 192.168.50.126 dev eth0" in sh(routed, "node4", "ip route")
    assert unreachable(routed) == []
