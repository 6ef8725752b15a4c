"""flanneld's behaviour over time: restarts, lease deletion, renewal, expiry, device rules."""
import os
import signal
import time

import pytest

from tests.helpers import sh, wait_for


def kernel(lab, node):
    from labkit import netns
    from labkit.status import kernel_state
    return netns.netlink.call(lab.node(node).ns, kernel_state, "flannel.1")


def peer_subnets(lab, node):
    return {r["dst"] for r in kernel(lab, node)["routes"] if r["dev"] == "flannel.1"}


def lease_of(lab, node):
    ip = str(lab.node(node).public_ip)
    return next(sn for sn, (_, v) in lab.leases().items() if f'"PublicIP":"{ip}"' in v)


def test_killed_and_restarted_flanneld_keeps_its_subnet(make_lab):
    lab = make_lab(nodes=3)
    before = lease_of(lab, "node1")
    svc = lab.service("node1", "flanneld")
    os.kill(svc.pid(), signal.SIGKILL)
    wait_for(lambda: not svc.is_active(), what="flanneld to die")
    # the kernel state stays while flanneld is away: nothing in it is flanneld's process
    assert len(peer_subnets(lab, "master")) == 2
    lab.start_flanneld([lab.node("node1")])
    assert lease_of(lab, "node1") == before
    assert "for current IP (192.168.50.2), reusing" in svc.log()
    assert all(lab.connectivity(["master", "node1", "node2"]).values())


def test_deleting_a_lease_removes_its_entries_on_the_other_nodes(make_lab):
    lab = make_lab(nodes=3, containers=1)
    sn = lease_of(lab, "node2")
    node2 = lab.status().node("node2")
    lab.etcd().delete(f"/coreos.com/network/subnets/{sn.replace('/', '-')}")
    for other in ("master", "node1"):
        wait_for(lambda other=other: sn not in peer_subnets(lab, other), what=f"route removal on {other}")
        k = kernel(lab, other)
        assert node2.vtep_mac not in {a["mac"] for a in k["arp"]}
        assert node2.public_ip not in {f["dst"] for f in k["fdb"]}
    # node2's own flanneld sees its lease revoked and stops, as flannel does
    wait_for(lambda: not lab.service("node2", "flanneld").is_active(), what="node2 flanneld to stop")
    assert "Lease has been revoked. Shutting down daemon." in lab.service("node2", "flanneld").log()
    # restarted, it takes its previous subnet back from subnet.env, and peers re-learn it
    lab.start_flanneld([lab.node("node2")])
    assert lease_of(lab, "node2") == sn
    assert "Found previously leased subnet (%s), reusing" % sn in lab.service("node2", "flanneld").log()
    wait_for(lambda: sn in peer_subnets(lab, "master"), what="route back on master")
    assert lab.ping("master/c1", "node2/c1")[0]


def test_lease_is_renewed_before_expiry_and_expires_without_flanneld(make_lab):
    lab = make_lab(nodes=2, lease_ttl=4, renew_margin=2)
    svc = lab.service("node1", "flanneld")
    sn = lease_of(lab, "node1")
    wait_for(lambda: "Lease renewed, new expiration" in svc.log(), timeout=8, what="a renewal")
    time.sleep(3)  # past the first TTL: only renewal keeps the key
    assert sn in lab.leases()
    # stopped, not killed: a SIGKILL is a failure that Restart=on-failure undoes (labkit/units.py);
    # flannel does not revoke its lease when it exits, so the lease only expires
    svc.stop()
    wait_for(lambda: sn not in lab.leases(), timeout=10, what="the lease to expire")
    wait_for(lambda: sn not in peer_subnets(lab, "master"), what="master to drop the expired peer")


def test_device_kept_unless_a_compared_field_changes(make_lab):
    """MTU is not compared (device kept); a Port change is (device recreated)."""
    lab = make_lab(nodes=2)
    svc = lab.service("node1", "flanneld")
    mac0 = kernel(lab, "node1")["device"]["mac"]
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","MTU":1400}}')
    svc.restart()
    wait_for(lambda: svc.log().count("Wrote subnet file") == 2, what="flanneld restart")
    dev = kernel(lab, "node1")["device"]
    assert dev["mac"] == mac0 and dev["mtu"] == 1450          # kept: MTU is not compared
    assert "FLANNEL_MTU=1350" in open(lab.node("node1").subnet_file).read()
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","Port":4789}}')
    svc.restart()
    wait_for(lambda: svc.log().count("Wrote subnet file") == 3, what="flanneld restart")
    assert ('"flannel.1" already exists with incompatible configuration: port: 4789 vs 8472; '
            "recreating device") in svc.log()
    dev = kernel(lab, "node1")["device"]
    assert dev["port"] == 4789 and dev["mac"] != mac0 and dev["mtu"] == 1450
    # the new VtepMAC reaches the peer through the lease
    wait_for(lambda: dev["mac"] in {a["mac"] for a in kernel(lab, "master")["arp"]}, what="new MAC on master")


def test_direct_routing_on_one_segment(make_lab):
    lab = make_lab(nodes=3, direct_routing=True, containers=1)
    for n in lab.status().nodes:
        k = n.kernel
        assert k["fdb"] == [] and k["arp"] == []
        peers = [r for r in k["routes"] if r["via"] and r["via"].startswith("192.168.50.")]
        assert len(peers) == 2 and all(r["dev"] == "eth0" for r in peers)
    assert all(lab.connectivity().values())


def test_out_of_subnets_is_flannels_error(make_lab):
    """A /22 has three usable /24s (the first is never used): the 4th node fails."""
    from labkit.errors import LabError
    with pytest.raises(LabError) as e:
        make_lab(nodes=4, network="10.5.0.0/22")
    assert "Error registering network: failed to acquire lease: out of subnets" in str(e.value)


def test_invalid_config_in_etcd_is_retried_with_flannels_message(make_lab):
    lab = make_lab(nodes=2, write_config=False)
    svc = lab.service("node1", "flanneld")
    svc.start()
    wait_for(lambda: "flannel config not found in etcd store. Did you create your config using "
                     "etcdv3 API?" in svc.log(), what="config-not-found message")
    lab.write_config('{"Network":"10.108.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan"}}')
    wait_for(lambda: "Couldn't fetch network config: SubnetLen must be less than /31" in svc.log(),
             what="validation message")
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan"}}')
    wait_for(lambda: os.path.exists(lab.node("node1").subnet_file), what="subnet.env")
    assert "Found network config - Backend type: vxlan" in svc.log()


def test_unknown_backend_in_etcd_stops_flanneld(make_lab):
    lab = make_lab(nodes=2, write_config=False)
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"carrier-pigeon"}}')
    svc = lab.service("node1", "flanneld")
    svc.start()
    wait_for(lambda: not svc.is_active(), what="flanneld to exit")
    assert "Error fetching backend: unknown backend type: carrier-pigeon" in svc.log()


def test_missing_backend_means_udp(make_lab):
    lab = make_lab(nodes=2, write_config=False)
    lab.write_config('{"Network":"10.108.0.0/16"}')
    svc = lab.service("node1", "flanneld")
    svc.start()
    wait_for(lambda: "Found network config - Backend type: udp" in svc.log(), what="udp")


def test_forward_rules_are_kept_and_ip_masq_comes_from_sysconfig(make_lab):
    """flanneld's FLANNEL-FWD rules come back after deletion; -ip-masq set in the node's
    /etc/sysconfig/flanneld adds FLANNEL-POSTRTG and FLANNEL_IPMASQ=true."""
    lab = make_lab(nodes=2, containers=1)
    rules = sh(lab, "node1", "iptables -S")
    assert '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD' in rules
    assert '-A FLANNEL-FWD -s 10.108.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT' in rules
    lab.sh("node1", "iptables -D FORWARD -m comment --comment 'flanneld forward' -j FLANNEL-FWD")
    wait_for(lambda: "-j FLANNEL-FWD" in sh(lab, "node1", "iptables -S FORWARD"), timeout=10,
             what="the resync to restore the FORWARD rule")
    assert "Some iptables rules are missing; deleting and recreating rules" in lab.service("node1", "flanneld").log()
    r = lab.sh("node1", "sed -i 's/^FLANNEL_OPTIONS=.*/FLANNEL_OPTIONS=\"-iface=eth0 -ip-masq\"/' "
                        "/etc/sysconfig/flanneld && systemctl restart flanneld")
    assert r.returncode == 0, r.stderr
    assert "FLANNEL_IPMASQ=true" in sh(lab, "node1", "cat /run/flannel/subnet.env")
    nat = sh(lab, "node1", "iptables -t nat -S FLANNEL-POSTRTG")
    assert "-s 10.108.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE" in nat
    assert "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000" in nat
    # the host's /etc is untouched; master kept its own sysconfig
    host_file = "/etc/sysconfig/flanneld"
    assert not os.path.exists(host_file) or "-ip-masq" not in open(host_file).read()
    assert "-ip-masq" not in sh(lab, "master", "cat /etc/sysconfig/flanneld")
    assert all(lab.connectivity().values())


def test_a_joining_node_is_learned_by_everyone(make_lab):
    lab = make_lab(nodes=2, containers=1)
    node = lab.add_node()
    assert node.name == "node2"
    sn = lease_of(lab, "node2")
    for other in ("master", "node1"):
        wait_for(lambda other=other: sn in peer_subnets(lab, other), what=f"{other} to learn node2")
    assert all(lab.connectivity().values())
    from labkit.lab import Lab
    assert [n.name for n in Lab.attach(lab.spec.name).nodes] == ["master", "node1", "node2"]
