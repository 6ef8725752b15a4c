"""udp, host-gw, ipip and wireguard on real labs; switching backends in a running lab."""
import ipaddress
import json
import os
import re

import pytest

from tests.helpers import labkit, sh, unique_name, unreachable, wait_for

NET = "10.108.0.0/16"


def footprint(lab, node):
    from labkit import netns
    from labkit.flannel.backends.footprint import footprint as fp
    return netns.netlink.call(lab.node(node).ns, fp, lab.spec.network)


def own_subnet(lab, node):
    return ipaddress.IPv4Interface(lab.node(node).subnet_env()["FLANNEL_SUBNET"]).network


@pytest.fixture(scope="module")
def udp_lab():
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    name = unique_name("udp")
    try:
        yield Lab(LabSpec(name=name, nodes=3, backend="udp", containers=1)).up()
    finally:
        clean(name)


def test_udp_flannel0_is_a_tun_with_one_route_for_the_network(udp_lab):
    for node in udp_lab.nodes:
        link = sh(udp_lab, node.name, "ip -d link show flannel0")
        assert " mtu 1472 " in link and "tun type tun pi off" in link, link
        addrs = sh(udp_lab, node.name, "ip -4 -o addr show dev flannel0")
        assert addrs.count("inet ") == 1 and f"inet {own_subnet(udp_lab, node.name).network_address}/32 " in addrs
        routes = sh(udp_lab, node.name, "ip route").splitlines()
        assert f"{NET} dev flannel0 " in "\n".join(routes) + " "
        # no per-peer kernel routes: the per-peer table is in the proxy
        flannel_routes = [r for r in routes if r.startswith("10.108.")]
        assert len(flannel_routes) == 2, routes   # the Network via flannel0, own subnet via docker0
        assert "FLANNEL_MTU=1472" in open(node.subnet_file).read()
        assert " mtu 1472 " in sh(udp_lab, node.name, "ip link show docker0")


def test_udp_lease_has_no_backend_type(udp_lab):
    values = sorted(v for _, v in udp_lab.leases().values())
    assert values == sorted(f'{{"PublicIP":"192.168.50.{i}","PublicIPv6":null}}' for i in (1, 2, 3))


def test_udp_proxy_listens_on_8285_and_runs_as_flanneld_child(udp_lab):
    for node in udp_lab.nodes:
        ss = sh(udp_lab, node.name, "ss -H -lun")
        assert f"{node.public_ip}:8285" in ss, ss
        pid = node.service("flanneld").pid()
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        cmdlines = [open(f"/proc/{c}/cmdline").read() for c in children]
        assert any("labkit.flannel.backends.udp.proxy" in c for c in cmdlines), cmdlines


def test_udp_carries_pings_and_a_tcp_stream(udp_lab):
    assert unreachable(udp_lab) == []
    ok, out = udp_lab.ping("master/c1", "node1/c1")
    # 64 - node (forward) - proxy - proxy - node (forward): both proxies decrement the TTL
    assert ok and "ttl=60" in out, out
    from labkit import bench
    res = bench.tcp(udp_lab, "master/c1", "node1/c1", seconds=1)   # iperf3 -t 1: it completes
    assert res["gbps"] > 0


def test_udp_unknown_subnet_gets_icmp_net_unreachable_from_the_proxy(udp_lab):
    """10.108.0.0/24 is never leased (flannel skips the first subnet), so the proxy has no
    route: it writes an ICMP net unreachable back into flannel0, from flannel0's own
    address. The kernel then drops it as a martian (a packet *arriving* with one of the
    node's own addresses as its source), so the sender only sees a timeout; with
    accept_local on flannel0 the error reaches the socket and connect() fails at once."""
    own = own_subnet(udp_lab, "master").network_address
    probe = "timeout 2 bash -c 'exec 3<>/dev/tcp/10.108.0.9/80'"
    r = udp_lab.sh("master", f"timeout 6 tcpdump -lni flannel0 -c 1 icmp 2>/dev/null & sleep 1; {probe}; "
                             "echo rc=$?; wait")
    assert f"IP {own} > {own}: ICMP net 10.108.0.9 unreachable" in r.stdout, r.stdout
    assert "rc=124" in r.stdout                     # the ICMP never reached the socket
    r = udp_lab.sh("master", f"sysctl -qw net.ipv4.conf.flannel0.accept_local=1; {probe}; echo rc=$?; "
                             "sysctl -qw net.ipv4.conf.flannel0.accept_local=0")
    assert "rc=1" in r.stdout and "Network is unreachable" in r.stderr, r.stdout + r.stderr
    # never about an ICMP packet (RFC 792): a ping gets nothing back from the proxy
    r = udp_lab.sh("master", "timeout 4 tcpdump -lni flannel0 -c 2 icmp 2>/dev/null & sleep 1; "
                             "ping -c 1 -W 1 10.108.0.9; wait")
    assert "unreachable" not in r.stdout


def test_udp_removed_lease_is_removed_from_the_proxy_and_flannel0_goes_with_flanneld(udp_lab):
    sn = own_subnet(udp_lab, "node2")
    node2 = udp_lab.node("node2")
    svc = node2.service("flanneld")
    udp_lab.etcd().delete(f"/coreos.com/network/subnets/{sn.network_address}-{sn.prefixlen}")
    wait_for(lambda: f"Subnet removed: {sn}" in udp_lab.service("master", "flanneld").log(), what="removal")
    r = udp_lab.sh("master", f"timeout 6 tcpdump -lni flannel0 -c 1 icmp 2>/dev/null & sleep 1; "
                             f"timeout 2 bash -c 'exec 3<>/dev/tcp/{sn.network_address + 1}/80'; wait")
    assert f"ICMP net {sn.network_address + 1} unreachable" in r.stdout, r.stdout
    # node2's flanneld sees its lease revoked and stops; its TUN device dies with it
    wait_for(lambda: not svc.is_active(), what="node2 flanneld to stop")
    wait_for(lambda: "flannel0" not in sh(udp_lab, "node2", "ip link"), what="flannel0 to vanish")
    assert "10.108.0.0/16" not in sh(udp_lab, "node2", "ip route")


@pytest.fixture(scope="module")
def hostgw_lab():
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    name = unique_name("hgw")
    try:
        yield Lab(LabSpec(name=name, nodes=3, backend="host-gw", containers=1)).up()
    finally:
        clean(name)


def test_host_gw_routes_via_public_ips(hostgw_lab):
    leases = hostgw_lab.leases()
    by_ip = {json.loads(v)["PublicIP"]: sn for sn, (_, v) in leases.items()}
    for _, v in leases.values():
        assert re.fullmatch(r'\{"PublicIP":"192\.168\.50\.\d","PublicIPv6":null,"BackendType":"host-gw"\}', v), v
    for node in hostgw_lab.nodes:
        routes = sh(hostgw_lab, node.name, "ip route")
        for peer in hostgw_lab.nodes:
            if peer is not node:
                assert f"{by_ip[str(peer.public_ip)]} via {peer.public_ip} dev eth0 \n" in routes, routes
        fp = footprint(hostgw_lab, node.name)
        assert fp["devices"] == [] and fp["arp"] == [] and fp["fdb"] == []
        assert "FLANNEL_MTU=1500" in open(node.subnet_file).read()
    assert unreachable(hostgw_lab) == []


def test_host_gw_route_check_puts_a_deleted_route_back(hostgw_lab):
    sn = own_subnet(hostgw_lab, "node2")
    sh(hostgw_lab, "node1", f"ip route del {sn}")
    assert str(sn) not in sh(hostgw_lab, "node1", "ip route")
    wait_for(lambda: f"Route recovered {sn} : 192.168.50.3" in hostgw_lab.service("node1", "flanneld").log(),
             timeout=15, what="the 10 s route check")
    assert f"{sn} via 192.168.50.3 dev eth0" in sh(hostgw_lab, "node1", "ip route")


def test_host_gw_refuses_a_public_ip_that_is_not_the_interfaces(hostgw_lab):
    node = hostgw_lab.node("node1")
    argv = node.service("flanneld").argv + ["-public-ip=192.168.50.99",
                                            "-subnet-file=/run/flannel/nat-test.env"]
    r = node.sh(argv, timeout=60)
    assert r.returncode == 1
    assert ("Error fetching backend: your PublicIP differs from interface IP, meaning that probably "
            "you're on a NAT, which is not supported by host-gw backend") in r.stderr + r.stdout
    assert not os.path.exists(node.dir("run", "flannel", "nat-test.env"))


def _kernel_lacks(kind):
    from labkit.flannel.backends.kernel import link_kind_available
    return link_kind_available(kind) is False


@pytest.mark.parametrize("backend", ["ipip", "wireguard"])
def test_missing_link_type_is_refused_before_anything_is_built(backend):
    if not _kernel_lacks(backend):
        pytest.skip(f"this kernel has {backend}")
    name = unique_name("nolink")
    try:
        r = labkit("up", "--name", name, "--backend", backend)
        assert r.returncode == 1
        assert f"no {backend} link type" in r.stderr and "Unknown device type" in r.stderr, r.stderr
        assert "fall back" in r.stderr
        assert not [n for n in os.listdir("/run/netns") if n.startswith(name + "-") or "labkit_probe" in n]
        assert not os.path.exists(f"/run/labkit/{name}")
    finally:
        labkit("clean", "--name", name)


def test_flanneld_names_the_missing_link_type(make_lab):
    if not (_kernel_lacks("ipip") and _kernel_lacks("wireguard")):
        pytest.skip("this kernel has ipip or wireguard")
    lab = make_lab(nodes=2, write_config=False)
    svc = lab.service("node1", "flanneld")
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"ipip"}}')
    svc.start()
    wait_for(lambda: not svc.is_active(), timeout=20, what="flanneld to exit")
    assert ("Error registering network: failed to create flannel.ipip: this kernel has no ipip link type"
            in svc.log()), svc.log()[-600:]
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"wireguard"}}')
    svc.start()
    wait_for(lambda: not svc.is_active(), timeout=20, what="flanneld to exit")
    assert ("Error registering network: could not create wireguard interface: this kernel has no wireguard "
            "link type") in svc.log(), svc.log()[-600:]
    # nothing was left half-made, and no fallback to another backend
    assert footprint(lab, "node1")["devices"] == []


EXPECTED = {  # backend -> (device, MTU)
    "vxlan": (["flannel.1"], 1450), "udp": (["flannel0"], 1472), "host-gw": ([], 1500),
}


def check_only(lab, backend):
    """Every node carries the current backend's objects, and nothing of another backend."""
    devices, mtu = EXPECTED[backend]
    for node in lab.nodes:
        fp = footprint(lab, node.name)
        assert fp["devices"] == devices, (node.name, fp)
        if backend == "vxlan":
            assert len(fp["fdb"]) == len(fp["arp"]) == 2
            assert all(r["dev"] == "flannel.1" for r in fp["routes"]) and len(fp["routes"]) == 2
        elif backend == "udp":
            assert fp["arp"] == fp["fdb"] == []
            assert fp["routes"] == [{"dst": NET, "via": None, "dev": "flannel0"}]
        else:
            assert fp["arp"] == fp["fdb"] == []
            assert len(fp["routes"]) == 2 and all(r["dev"] == "eth0" for r in fp["routes"])
        assert f"FLANNEL_MTU={mtu}" in open(node.subnet_file).read()
        assert f" mtu {mtu} " in sh(lab, node.name, "ip link show docker0")
        assert f" mtu {mtu} " in sh(lab, f"{node.name}/c1", "ip link show eth0")
    assert unreachable(lab) == [], backend


def test_switching_vxlan_udp_host_gw_vxlan_leaves_nothing_stale(make_lab):
    lab = make_lab(nodes=3, containers=1)
    subnets = {n.name: own_subnet(lab, n.name) for n in lab.nodes}
    check_only(lab, "vxlan")
    for backend in ("udp", "host-gw", "vxlan"):
        lab.switch_backend(backend)
        check_only(lab, backend)
        # every node kept its subnet: the lease is found again by PublicIP
        assert {n.name: own_subnet(lab, n.name) for n in lab.nodes} == subnets
        if backend == "udp":
            assert "192.168.50.2:8285" in sh(lab, "node1", "ss -H -lun")
    from labkit.lab import Lab
    assert Lab.attach(lab.spec.name).spec.backend == "vxlan"   # spec.json follows the switch


def test_switch_without_cleaning_shows_what_flannel_leaves_behind(make_lab):
    """flanneld does not remove the previous backend's device: host-gw replaces the
    conflicting routes, but flannel.1 stays with its ARP and FDB entries."""
    lab = make_lab(nodes=2, containers=1)
    lab.switch_backend("host-gw", clean=False)
    fp = footprint(lab, "node1")
    assert fp["devices"] == ["flannel.1"] and len(fp["fdb"]) == 1 and len(fp["arp"]) == 1
    assert [r["dev"] for r in fp["routes"]] == ["eth0"]
    assert "Replacing existing route to" in lab.service("node1", "flanneld").log()
    assert unreachable(lab) == []


def test_labkit_bench_prints_every_figure(lab_name):
    r = labkit("bench", "--name", lab_name, "--seconds", "1", "--backends", "host-gw,udp", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    table = r.stdout[r.stdout.index("path"):]
    for path in ("underlay", "host-gw", "udp"):
        assert re.search(rf"^{path}\s+\d+\s+[\d.]+\s+[\d.]+", table, re.M), table
    assert not os.path.exists(f"/run/labkit/{lab_name}")
