"""Underlay knobs (README "Underlay knobs"): each reproduces what flannel bug reports describe.

MTU: a node's smaller uplink silently drops full-size VXLAN packets; a router hop with a
smaller MTU answers "Frag needed" (or, with ICMP dropped, is a PMTU black hole). The
Vagrant trap (two NICs, eth0 10.0.2.15 everywhere) and its --iface eth1 fix. A node
behind a NAT and -public-ip. Unplugging, replugging and re-creating a node's NIC. An
outside network reached from pods through flanneld's masquerade.
"""
import ipaddress
import json
import subprocess
import time

from labkit import netns
from tests.helpers import labkit, sh, unreachable


def ping(lab, src, dst, *args):
    r = lab.exec(src, ["ping", "-c", "2", "-i", "0.2", "-W", "1", *args, str(dst)], timeout=20)
    return r.returncode == 0, r.stdout + r.stderr


def public_ips(lab):
    return sorted(json.loads(v)["PublicIP"] for _, v in lab.leases().values())


def test_node_mtu_black_hole_on_the_underlay(make_lab):
    lab = make_lab(nodes=2, node_mtu={"node1": 1400}, containers=1)
    assert "mtu 1400" in sh(lab, "node1", "ip link show eth0")
    assert "mtu 1400" in netns.run(lab.state.netns("switch"), ["ip", "link", "show", "node1"]).stdout
    assert "mtu 1500" in sh(lab, "master", "ip link show eth0")
    assert "mtu 1350" in sh(lab, "node1", "ip link show flannel.1")          # flannel derives it from eth0
    ok, out = ping(lab, "master", "192.168.50.2", "-M", "do", "-s", "1472")
    assert not ok and "Frag needed" not in out and "100% packet loss" in out, out   # dropped, nobody says so
    assert ping(lab, "master", "192.168.50.2", "-M", "do", "-s", "1372")[0]
    dst = lab.address_of("node1/c1")
    assert ping(lab, "master/c1", dst)[0]                                       # small packets pass
    # a full-size pod packet (1450) makes a 1500-byte VXLAN frame, more than node1's switch port
    # takes: the switch drops it, as a real one does (no netfilter there to fragment it), silently
    ok, out = ping(lab, "master/c1", dst, "-M", "do", "-s", "1422")
    assert not ok and "Frag needed" not in out and "100% packet loss" in out, out
    assert ping(lab, "master/c1", dst, "-M", "do", "-s", "1322")[0]            # node1's own size passes


def test_router_mtu_frag_needed_then_black_hole(lab_name):
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    far = "192.168.50.129"                      # node1, on the other segment
    with Lab(LabSpec(name=lab_name, nodes=2, segments=2, router_mtu=1400, containers=1)) as lab:
        ok, out = ping(lab, "master", far, "-M", "do", "-s", "1472")
        assert not ok and "Frag needed and DF set (mtu = 1400)" in out, out
        assert ping(lab, "master", far, "-M", "do", "-s", "1372")[0]
        # VXLAN's outer packet carries no DF: the router fragments it, the pods never notice
        assert ping(lab, "master/c1", lab.address_of("node1/c1"), "-M", "do", "-s", "1422")[0]
    clean(lab_name)
    with Lab(LabSpec(name=lab_name, nodes=2, segments=2, router_mtu=1400, router_drop_icmp=True)) as lab:
        ok, out = ping(lab, "master", far, "-M", "do", "-s", "1472")
        assert not ok and "Frag needed" not in out and "100% packet loss" in out, out   # the black hole
        assert ping(lab, "master", far)[0]


def test_vagrant_trap_shares_one_lease_and_iface_eth1_fixes_it(lab_name):
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    # seeded: flanneld starts node by node. Started at once, two flanneld with one PublicIP can
    # both create a lease before either sees the other's (flannel races the same way)
    with Lab(LabSpec(name=lab_name, nodes=3, nics=2, containers=1, seed=1)) as lab:
        assert "10.0.2.15/24" in sh(lab, "node1", "ip -4 -o addr show dev eth0")
        assert "default via 10.0.2.2 dev eth0" in sh(lab, "node2", "ip route")
        assert 'FLANNEL_OPTIONS=""' in sh(lab, "node1", "cat /etc/sysconfig/flanneld")
        assert "Using 10.0.2.15 as external address" in lab.node("node1").service("flanneld").log()
        assert public_ips(lab) == ["10.0.2.15"]                        # every node reuses the one lease
        res = lab.connectivity()
        assert list(res.duplicates.values()) == [["master/c1", "node1/c1", "node2/c1"]]
        assert not any(res.values())                   # flagged, never scored reachable
        r = labkit("check", "--name", lab_name)
        assert r.returncode == 1 and "SAME address" in r.stdout, r.stdout
    clean(lab_name)
    with Lab(LabSpec(name=lab_name, nodes=3, nics=2, iface="eth1", containers=1)) as lab:
        assert public_ips(lab) == ["192.168.50.1", "192.168.50.2", "192.168.50.3"]
        res = lab.connectivity()
        assert all(res.values()) and res.duplicates == {}


def test_nat_node_needs_public_ip(lab_name):
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    with Lab(LabSpec(name=lab_name, nodes=3, nat=["node1"], containers=1)) as lab:
        assert public_ips(lab) == ["100.64.1.2", "192.168.50.1", "192.168.50.3"]   # the private address
        assert {p for p in unreachable(lab)} == {(a, b) for a in lab.endpoints() for b in lab.endpoints()
                                                 if a != b and "node1/c1" in (a, b)}
    clean(lab_name)
    # modern flannel (>= v0.27.4) makes the public IP flannel.1's local address: not on the
    # node, so the kernel cannot send from it; peers reach node1 (DNAT), node1 answers nobody
    with Lab(LabSpec(name=lab_name, nodes=3, nat=["node1"], nat_public_ip=True, containers=1)) as lab:
        assert public_ips(lab) == ["192.168.50.1", "192.168.50.2", "192.168.50.3"]
        assert "local 192.168.50.2" in sh(lab, "node1", "ip -d link show flannel.1")
        assert not ping(lab, "master/c1", lab.address_of("node1/c1"))[0]
        dnat = netns.run(lab.state.netns("nat-node1"), ["iptables", "-t", "nat", "-L", "PREROUTING", "-v", "-n",
                                                         "-x"]).stdout
        assert int([ln for ln in dnat.splitlines() if "DNAT" in ln][0].split()[0]) > 0, dnat
    clean(lab_name)
    # flannel 0.7.1 keeps the interface address as the local one: -public-ip + DNAT work
    with Lab(LabSpec(name=lab_name, nodes=3, nat=["node1"], nat_public_ip=True, flavour="legacy",
                     containers=1)) as lab:
        assert "local 100.64.1.2" in sh(lab, "node1", "ip -d link show flannel.1")
        assert unreachable(lab) == []


def test_link_down_up_del_add(make_lab):
    lab = make_lab(nodes=3, containers=1)
    with_node1 = sorted((a, b) for a in lab.endpoints() for b in lab.endpoints() if a != b and "node1/c1" in (a, b))
    assert "unplugged" in lab.link("node1", "down")
    assert "NO-CARRIER" in sh(lab, "node1", "ip link show eth0")
    assert unreachable(lab) == with_node1
    lab.link("node1", "up")
    assert unreachable(lab) == []
    lab.link("node1", "del")
    assert lab.sh("node1", "ip link show eth0").returncode != 0
    assert unreachable(lab) == with_node1
    r = labkit("link", "--name", lab.spec.name, "node1", "del")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no eth0 to delete" in r.stderr
    assert "re-created with 192.168.50.2/24" in lab.link("node1", "add")
    assert "inet 192.168.50.2/24" in sh(lab, "node1", "ip -4 addr show dev eth0")
    # flanneld re-creates flannel.1 (flannel #2247) with a new MAC the lease does not carry:
    # pods stay cut off until flanneld restarts and publishes it
    deadline = time.monotonic() + 40
    while "recreated successfully" not in lab.node("node1").service("flanneld").log():
        assert time.monotonic() < deadline, lab.node("node1").service("flanneld").log()[-800:]
        time.sleep(0.2)
    assert lab.node("node1").service("flanneld").start_ready(restart=True) is None
    lab.wait_converged()
    assert unreachable(lab) == []


def _source_seen_by_outside(lab, src):
    """The source address of `src`'s ping as the outside namespace sees it."""
    cap = subprocess.Popen(netns.nsexec_argv(lab.state.netns("outside"),
                                             ["timeout", "5", "tcpdump", "-lni", "eth0", "-c", "1",
                                              "icmp[icmptype] = icmp-echo"]),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.7)
    ok, _ = ping(lab, src, "203.0.113.1")
    out, _ = cap.communicate(timeout=10)
    return ok, out.split(" > ")[0].split()[-1] if " > " in out else out


def test_outside_reached_through_masquerade_only(lab_name):
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    with Lab(LabSpec(name=lab_name, nodes=2, outside=True, containers=1)) as lab:
        assert "default via 192.168.50.254" in sh(lab, "node1", "ip route")
        assert ping(lab, "node1", "203.0.113.1")[0]
        # flanneld without -ip-masq: mk-docker-opts gives docker --ip-masq=true, docker's rule masquerades
        bip = ipaddress.IPv4Interface(lab.node("node1").subnet_env()["FLANNEL_SUBNET"]).network
        rule = f"-A POSTROUTING -s {bip} ! -o docker0 -j MASQUERADE"
        assert rule in sh(lab, "node1", "iptables -t nat -S POSTROUTING")
        ok, seen = _source_seen_by_outside(lab, "node1/c1")
        assert ok and seen == "192.168.50.2"                        # docker's masquerade: the node's address
        sh(lab, "node1", "iptables -t nat " + rule.replace("-A ", "-D ", 1))
        ok, seen = _source_seen_by_outside(lab, "node1/c1")
        assert not ok and seen == str(lab.address_of("node1/c1"))   # a pod address: no way back
    clean(lab_name)
    with Lab(LabSpec(name=lab_name, nodes=2, outside=True, ip_masq=True, containers=1)) as lab:
        assert "--ip-masq=false" in sh(lab, "node1", "cat /run/flannel/docker")
        assert "-o docker0 -j MASQUERADE" not in sh(lab, "node1", "iptables -t nat -S POSTROUTING")
        ok, seen = _source_seen_by_outside(lab, "node1/c1")
        assert ok and seen == "192.168.50.2"                        # flanneld's masquerade: the node's address
        assert all(lab.connectivity().values())                     # pod to pod is not masqueraded
