"""Bug reports whose symptom depends on the flannel release, tried as the reporter would: the
symptom at the affected release, none at the fixed one (labkit/flannel/versions.py has the
switches and their sources). And the blog's udp cluster migrated to vxlan, typed verbatim."""
import json
import time

import pytest

from tests.helpers import wait_for

VXLAN_CONFIG = '{"Network":"10.108.0.0/16","Backend": {"Type": "vxlan"}}'  # the blog's, verbatim


def owners(lab):
    """{subnet: PublicIP} from etcd (v2 or v3, as the lab's release speaks)."""
    return {sn: json.loads(v)["PublicIP"] for sn, (_, v) in lab.leases().items()}


def ping(lab, node, container, ip, count=1):
    return lab.sh(node, f"docker exec {container} ping -c{count} -W1 {ip}")


def container_ip(lab, node, name="c1"):
    return lab.sh(node, f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' {name}").stdout.strip()


@pytest.mark.parametrize("release,stolen", [("0.17.0", True), ("0.18.0", False)])
def test_1289_returning_host_with_old_subnet_env_takes_another_nodes_lease(make_lab, release, stolen):
    """flannel #1289, fixed by PR #1505 in v0.18.0. node1 leaves (flanneld stopped, its lease
    gone, as after 24 h); node2 joins and gets node1's old subnet; node1 comes back with its old
    subnet.env. Before v0.18.0 flanneld re-puts that subnet's lease with its own PublicIP."""
    # three subnets, seed 1: master takes 10.108.3.0, node1 10.108.1.0; node2 then gets 10.108.1.0
    lab = make_lab(nodes=2, flannel_version=release, seed=1,
                   extra_config={"SubnetMin": "10.108.1.0", "SubnetMax": "10.108.3.0"})
    node1_ip, node2_ip = "192.168.50.2", "192.168.50.3"
    old = next(sn for sn, ip in owners(lab).items() if ip == node1_ip)
    rm = "etcdctl rm" if lab.spec.etcd_v2 else "etcdctl del"
    assert lab.sh("node1", "systemctl stop flanneld").returncode == 0
    assert lab.sh("master", f"{rm} /coreos.com/network/subnets/{old.replace('/', '-')}").returncode == 0
    node2 = lab.add_node()
    assert node2.subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0/") == old, "precondition: node2 got node1's subnet"
    r = lab.sh("node1", "systemctl start flanneld")
    assert r.returncode == 0, r.stdout + r.stderr
    log = lab.service("node1", "flanneld").log()
    if stolen:
        assert f"Found lease ({old}) matching previously leased subnet, reusing" in log
        assert owners(lab)[old] == node1_ip  # node2's lease now points at node1 ...
        both = {node2.subnet_env()["FLANNEL_SUBNET"], lab.node("node1").subnet_env()["FLANNEL_SUBNET"]}
        assert len(both) == 1  # ... and both nodes own the subnet
    else:
        assert "matching previously leased subnet" not in log
        assert owners(lab)[old] == node2_ip
        assert lab.node("node1").subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0/") != old


@pytest.mark.parametrize("release,reachable", [("0.9.0", False), ("0.9.1", True)])
def test_834_docker_1_13_forward_drop(make_lab, release, reachable):
    """flannel #834 (and #603): docker >= 1.13 sets the FORWARD policy to DROP; flannel's own
    FORWARD ACCEPT rules for its Network came with PR #872, released in v0.9.1."""
    lab = make_lab(nodes=2, containers=1, flannel_version=release, docker_version="1.13")
    rules = lab.sh("node1", "iptables -S FORWARD").stdout
    assert "-P FORWARD DROP" in rules
    assert ("-A FORWARD -s 10.108.0.0/16 -j ACCEPT" in rules) is reachable
    r = ping(lab, "master", "c1", container_ip(lab, "node1"))
    assert (r.returncode == 0) is reachable, r.stdout


@pytest.mark.parametrize("release,stale", [("0.8.0", True), ("0.9.0", False)])
def test_533_1036_peers_keep_the_old_vtep_mac_after_a_reboot(make_lab, release, stale):
    """flannel #533/#1036: a node's flannel.1 comes back with a new MAC (a reboot: here the
    device is deleted and flanneld started again), its lease gets the new VtepMAC, and the
    peers keep the old MAC in their neighbour table. Up to 0.8.x the entries were answered on
    demand (L3 misses) and a lease event left them alone: traffic to the node's pods goes to
    the old MAC until the kernel asks again. From v0.9.0 (PR #785) each lease event replaces
    the peer's PERMANENT entry. (docker 1.12 in both, so #834 stays out of the way.)"""
    lab = make_lab(nodes=2, containers=1, flannel_version=release, docker_version="1.12")
    ip = container_ip(lab, "node1")
    assert ping(lab, "master", "c1", ip).returncode == 0
    old = lab.sh("node1", "cat /sys/class/net/flannel.1/address").stdout.strip()
    r = lab.sh("node1", "systemctl stop flanneld && ip link del flannel.1 && systemctl start flanneld")
    assert r.returncode == 0, r.stdout + r.stderr
    new = lab.sh("node1", "cat /sys/class/net/flannel.1/address").stdout.strip()
    assert new != old
    wait_for(lambda: new in lab.sh("master", "bridge fdb show dev flannel.1").stdout, timeout=10,
             what="the master's FDB entry for the new VtepMAC")
    neigh = lab.sh("master", "ip neigh show dev flannel.1").stdout
    assert (old in neigh) is stale, neigh
    assert (ping(lab, "master", "c1", ip, count=2).returncode != 0) is stale


def test_blog_udp_cluster_migrated_to_vxlan_verbatim(make_lab):
    """The blog's story at flannel 0.7.1: a udp cluster (flannel0, the proxy: ttl 60), then the
    blog's commands typed as they are, and the containers talk over flannel.1."""
    lab = make_lab(nodes=2, containers=1, flavour="legacy", prefix="/flannel/network", backend="udp")
    tun = lab.sh("master", "ip -o addr show flannel0").stdout
    assert "/16" in tun  # 0.7.1: the lease's address with the Network's prefix
    assert "mtu 1472" in lab.sh("master", "ip link show flannel0").stdout
    ip1 = container_ip(lab, "node1")
    r = ping(lab, "master", "c1", ip1)
    assert r.returncode == 0 and "ttl=60" in r.stdout, r.stdout  # both proxies count as hops
    before = owners(lab)
    for node, line in [("master", f"etcdctl set /flannel/network/config '{VXLAN_CONFIG}'"),
                       ("master", "systemctl restart flanneld docker"),
                       ("node1", "systemctl restart flanneld docker")]:
        r = lab.sh(node, line)
        assert r.returncode == 0, f"{node}$ {line}\n{r.stdout}{r.stderr}"
    assert set(owners(lab)) == set(before)  # each node kept its subnet (reused by PublicIP)
    for node in ("master", "node1"):
        assert "flannel0" not in lab.sh(node, "ip link").stdout  # the TUN went with the udp flanneld
        assert "mtu 1450" in lab.sh(node, "ifconfig flannel.1").stdout
        assert lab.sh(node, "docker run -d --name c2 busybox sleep 3600").returncode == 0
    deadline = time.time() + 10
    while True:
        r = ping(lab, "master", "c2", container_ip(lab, "node1", "c2"))
        if r.returncode == 0 or time.time() > deadline:
            break
    assert r.returncode == 0 and "ttl=62" in r.stdout, r.stdout  # kernel forwarding only: two hops
