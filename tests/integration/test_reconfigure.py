"""Lab.reconfigure on small running labs: network, nodes joining and leaving, refusals,
a failed join, and `labkit status` with etcd down."""
import ipaddress
import json

import pytest

from labkit.errors import LabError
from labkit.lab import Lab
from tests.helpers import labkit, wait_for


def leased_ips(lab):
    return sorted(json.loads(v)["PublicIP"] for _, v in lab.leases().values())


def routes_to(lab, node, subnet):
    return ipaddress.IPv4Network(subnet) in lab.gateway_subnets(lab.node(node))


def test_cli_reconfigure_changes_the_network_and_reports_each_step(make_lab):
    lab = make_lab(nodes=2, containers=1)
    r = labkit("reconfigure", "--name", lab.spec.name, "--network", "10.20.0.0/22", check=True)
    assert "etcdctl put /coreos.com/network/config '{\"Network\":\"10.20.0.0/22\"" in r.stdout
    assert "containers: start again the ones docker stopped: master/c1=10.20." in r.stdout
    assert "changed network in 7 steps" in r.stdout
    lab = Lab.attach(lab.spec.name)
    assert lab.spec.network == "10.20.0.0/22" and lab.network_config().startswith('{"Network":"10.20.0.0/22"')
    assert all(n.subnet.startswith("10.20.") and n.in_range for n in lab.status().nodes)
    assert all(lab.connectivity().values())
    # what only a rebuild changes is refused, by name, and nothing is touched
    with pytest.raises(LabError, match="cannot change mtu, flavour .*needs a rebuild"):
        lab.reconfigure(lab.spec.__class__(**{**lab.spec.to_dict(), "flavour": "legacy", "mtu": 9000}))
    assert Lab.attach(lab.spec.name).spec.flavour == "modern"


def test_nodes_join_and_leave_with_their_lease_revoked(make_lab):
    lab = make_lab(nodes=2, containers=1)
    import dataclasses
    res = lab.reconfigure(dataclasses.replace(lab.spec, nodes=3))
    assert [s.step for s in res.steps] == ["add a node: underlay, flanneld, docker, containers",
                                           "wait for routes to every peer"]
    assert res.steps[0].detail.startswith("node2 joined with 10.108.") and res.steps[0].seconds > 0
    assert leased_ips(lab) == ["192.168.50.1", "192.168.50.2", "192.168.50.3"]
    assert all(lab.connectivity().values()) and len(lab.endpoints()) == 3
    node2 = lab.node("node2")
    sn = str(ipaddress.IPv4Interface(node2.subnet_env()["FLANNEL_SUBNET"]).network)
    assert routes_to(lab, "master", sn)
    res = lab.reconfigure(dataclasses.replace(lab.spec, nodes=2))
    assert "lease " + sn + " revoked" in res.steps[0].detail
    assert leased_ips(lab) == ["192.168.50.1", "192.168.50.2"]
    assert not routes_to(lab, "master", sn) and not routes_to(lab, "node1", sn)
    assert not any(ns.startswith(node2.ns) for ns in __import__("labkit.netns").netns.list_names())
    assert Lab.attach(lab.spec.name).spec.nodes == 2 and [n.name for n in lab.nodes] == ["master", "node1"]
    assert all(lab.connectivity().values())


def test_a_node_that_leaves_without_revoking_stays_routed_until_its_lease_expires(make_lab):
    lab = make_lab(nodes=3)
    sn = str(ipaddress.IPv4Interface(lab.node("node2").subnet_env()["FLANNEL_SUBNET"]).network)
    r = labkit("reconfigure", "--name", lab.spec.name, "--nodes", "2", "--no-revoke", check=True)
    assert "leave its lease to expire" in r.stdout
    lab = Lab.attach(lab.spec.name)
    assert "192.168.50.3" in leased_ips(lab)            # as after a crash: the lease lives on
    assert routes_to(lab, "master", sn)                 # and the peers still route to it
    assert len(lab.nodes) == 2 and not lab.status().etcd_error


def test_a_failed_add_node_leaves_the_lab_as_it_was(make_lab):
    lab = make_lab(nodes=3, network="10.20.0.0/22")     # 3 subnets: a 4th node gets none
    with pytest.raises(LabError, match="flanneld on node3 exited"):
        lab.add_node()
    assert [n.name for n in lab.nodes] == ["master", "node1", "node2"] and lab.spec.nodes == 3
    assert Lab.attach(lab.spec.name).spec.nodes == 3
    assert not any(ns.startswith(f"{lab.spec.name}-node3") for ns in __import__("labkit.netns").netns.list_names())
    assert leased_ips(lab) == ["192.168.50.1", "192.168.50.2", "192.168.50.3"]


def test_status_says_when_etcd_is_down(make_lab):
    lab = make_lab(nodes=2)
    lab.service("master", "etcd").stop()
    wait_for(lambda: lab.etcd_health() is not None, what="etcd to be down")
    r = labkit("status", "--name", lab.spec.name, timeout=30)
    assert r.returncode != 0 and "WARNING: etcd is not reachable" in r.stdout, r.stdout + r.stderr
    assert all(line.split()[6] == "?" for line in r.stdout.splitlines()[3:]), r.stdout
    r = labkit("status", "--name", lab.spec.name, "--json", timeout=30)
    st = json.loads(r.stdout)
    assert r.returncode != 0 and st["etcd_error"].startswith("etcd is not reachable")
    assert [n["subnet"] for n in st["nodes"]] == [None, None] and st["nodes"][0]["docker0"]
