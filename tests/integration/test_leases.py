"""Leases as in production: the TTL (lab flag, CLI, FLANNEL_OPTIONS), reservations, a new
VtepMAC for a re-created flannel.1 in a seeded lab, flannel's -v levels, and status finding
each node's own lease."""
import ipaddress
import json
import time

from tests.helpers import labkit, wait_for


def key_of(sn: str, prefix: str = "/coreos.com/network") -> str:
    return f"{prefix}/subnets/{sn.replace('/', '-')}"


def lease_of(lab, node, public_ip=None):
    ip = public_ip or str(lab.node(node).public_ip)
    return next(sn for sn, (_, v) in lab.leases().items() if json.loads(v)["PublicIP"] == ip)


def etcd_ttl(lab, sn):
    """(granted TTL, etcd lease id) of a lease key; (None, 0) for a key without a lease."""
    _, meta = lab.etcd().get(key_of(sn))
    if not meta.lease_id:
        return None, 0
    return lab.etcd().get_lease_info(meta.lease_id).grantedTTL, meta.lease_id


def set_options(lab, node, options):
    """Edit the node's /etc/sysconfig/flanneld as an admin would, and restart flanneld."""
    r = lab.sh(node, f"sed -i 's/^FLANNEL_OPTIONS=.*/FLANNEL_OPTIONS=\"{options}\"/' /etc/sysconfig/flanneld "
                     "&& systemctl restart flanneld")
    assert r.returncode == 0, r.stdout + r.stderr


def test_lease_ttl_from_the_cli_and_from_flannel_options_which_wins(lab_name):
    from labkit.lab import Lab
    r = labkit("up", "--name", lab_name, "--nodes", "2", "--lease-ttl", "40", "--flannel-options=-v=2")
    assert r.returncode == 0, r.stdout + r.stderr
    lab = Lab.attach(lab_name)
    assert lab.spec.lease_ttl == 40 and lab.spec.renew_margin == 10
    assert etcd_ttl(lab, lease_of(lab, "node1"))[0] == 40
    log = lab.service("node1", "flanneld").log()
    assert "Waiting for 29." in log or "Waiting for 30s" in log  # 40 s - a 10 s margin
    # the node's own FLANNEL_OPTIONS wins over the lab's flag (it comes last on the command line)
    set_options(lab, "node1", "-iface=eth0 -v=2 -lab-subnet-ttl=12")
    sn = lease_of(lab, "node1")
    assert etcd_ttl(lab, sn)[0] == 12
    assert etcd_ttl(lab, lease_of(lab, "master"))[0] == 40
    # with its TTL alone given, the renewal margin follows the TTL (not the lab's 10 s of 40)
    svc = lab.service("node1", "flanneld")
    wait_for(lambda: "Lease renewed, new expiration" in svc.log(), timeout=15, what="a renewal")
    assert svc.is_active() and sn in lab.leases()


def test_reservation_is_used_kept_over_restarts_and_never_renewed(make_lab):
    """Documentation/reservations.md: a lease key without a TTL is a reservation."""
    lab = make_lab(nodes=2, containers=1, lease_ttl=6, renew_margin=3)
    sn = lease_of(lab, "node1")
    key = key_of(sn)
    value, _ = lab.etcd().get(key)
    lab.etcd().put(key, value)  # `etcdctl put` without --lease: the TTL is gone
    assert etcd_ttl(lab, sn) == (None, 0)
    svc = lab.service("node1", "flanneld")
    for restarts in (1, 2):  # it used to crash here (an infinite renewal time)
        r = lab.sh("node1", "systemctl restart flanneld")
        assert r.returncode == 0, r.stdout + r.stderr
        assert svc.is_active()
        assert svc.log().count("Found lease (ip: %s ipv6: ::/0) for current IP (192.168.50.2), reusing" % sn) \
            == restarts
        assert etcd_ttl(lab, sn) == (None, 0), "a reused reservation stays a reservation"
    time.sleep(8)  # past the lab's 6 s TTL: a lease would have been renewed
    assert etcd_ttl(lab, sn) == (None, 0) and sn in lab.leases()
    assert "Lease renewed" not in svc.log().split("Found lease")[-1]
    assert svc.is_active() and lab.service("master", "flanneld").is_active()  # master still renews its own
    assert all(lab.connectivity().values())


def test_seeded_lab_gives_a_recreated_flannel1_a_new_vtep_mac(make_lab):
    lab = make_lab(nodes=2, containers=1, seed=5)
    sn = lease_of(lab, "node1")
    mac0 = json.loads(lab.leases()[sn][1])["BackendData"]["VtepMAC"]
    assert lab.sh("node1", "systemctl stop flanneld").returncode == 0
    assert lab.sh("node1", "ip link del flannel.1").returncode == 0
    assert lab.sh("node1", "systemctl start flanneld").returncode == 0
    assert lease_of(lab, "node1") == sn  # the seed keeps the subnet...
    mac1 = json.loads(lab.leases()[sn][1])["BackendData"]["VtepMAC"]
    assert mac1 != mac0  # ...but, as in flannel, not the MAC of a new device
    assert lab.sh("node1", "cat /sys/class/net/flannel.1/address").stdout.strip() == mac1
    wait_for(lambda: f"{sn.split('/')[0]} lladdr {mac1}" in lab.sh("master", "ip neigh show dev flannel.1").stdout,
             what="master to learn the new VtepMAC")
    assert f"{mac1} dst 192.168.50.2" in lab.sh("master", "bridge fdb show dev flannel.1").stdout
    assert all(lab.connectivity().values())


def test_v2_lines_only_with_v2(make_lab):
    """vxlan_network.go logs `adding subnet: ...` at log.V(2)."""
    lab = make_lab(nodes=2)
    log = lab.service("master", "flanneld").log()
    assert "watching for new subnet leases" in log and "adding subnet:" not in log
    set_options(lab, "master", "-iface=eth0 -v=2")
    assert (f"adding subnet: {lease_of(lab, 'node1')} PublicIP: 192.168.50.2 VtepMAC: "
            in lab.service("master", "flanneld").log())
    assert "CLI flags config: {" in log and " v:0 " in log
    assert " v:2 " in lab.service("master", "flanneld").log().split("Exiting cleanly")[-1]


def test_out_of_subnets_logs_picking_first(make_lab):
    """A /22 has three usable /24s; with them all taken a restarted node picks and fails."""
    lab = make_lab(nodes=2, network="10.5.0.0/22")
    taken = set(lab.leases())
    free = next(s for s in ("10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24") if s not in taken)
    other = '{"PublicIP":"192.168.50.99","PublicIPv6":null,"BackendType":"vxlan",' \
            '"BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}'
    lab.etcd().put(key_of(free), other)
    lab.etcd().put(key_of(lease_of(lab, "node1")), other)  # node1's subnet now held by another IP
    svc = lab.service("node1", "flanneld")
    lab.sh("node1", "systemctl restart flanneld")
    wait_for(lambda: not svc.is_active(), what="flanneld to exit")
    log = svc.log().split("CLI flags config")[-1]
    picking = log.index("Picking subnet in range 10.5.1.0 ... 10.5.3.0")
    assert picking < log.index("Error registering network: failed to acquire lease: out of subnets")


def test_status_finds_the_lease_of_a_node_with_public_ip(make_lab):
    """-public-ip in FLANNEL_OPTIONS: the lease carries that IP, not the node's address; two
    nodes given the same one (Vagrant's 10.0.2.15, flannel #98) share one lease."""
    lab = make_lab(nodes=3, lease_ttl=60, renew_margin=30)
    old = lease_of(lab, "node1")
    set_options(lab, "node1", "-iface=eth0 -public-ip=10.0.2.15")
    assert lab.sh("node1", "systemctl restart docker").returncode == 0
    new = lease_of(lab, "node1", "10.0.2.15")
    assert new != old and old in lab.leases()  # the old lease lives on until it expires
    st = lab.status().node("node1")
    assert st.subnet == new and st.lease["PublicIP"] == "10.0.2.15"
    assert ipaddress.IPv4Interface(st.docker0).ip in ipaddress.IPv4Network(new) and st.in_range is True
    set_options(lab, "node2", "-iface=eth0 -public-ip=10.0.2.15")
    assert lab.sh("node2", "systemctl restart docker").returncode == 0
    assert "for current IP (10.0.2.15), reusing" in lab.service("node2", "flanneld").log()
    st = lab.status()
    assert st.node("node2").subnet == st.node("node1").subnet == new
    assert st.node("node2").in_range is True
    r = labkit("status", "--name", lab.spec.name, "--json")
    nodes = {n["name"]: n for n in json.loads(r.stdout)["nodes"]}
    assert nodes["node1"]["subnet"] == new and nodes["master"]["subnet"] == lease_of(lab, "master")


def test_status_with_the_vagrant_trap_finds_the_shared_lease(make_lab):
    """--nics 2 without -iface: flanneld takes the default route's eth0, 10.0.2.15 on every
    node (flannel #98); they all reuse one lease, and status shows it for each of them."""
    lab = make_lab(nodes=3, nics=2, seed=1)   # node by node: started at once, two may race to two leases
    (sn, (_, value)), = lab.leases().items()
    assert json.loads(value)["PublicIP"] == "10.0.2.15"
    st = lab.status()
    assert [n.subnet for n in st.nodes] == [sn, sn, sn]
    assert all(n.in_range for n in st.nodes)
