"""State bundles on real labs: hand-made changes exported, replayed under another name, diffed.

One 3-node lab gets what a person debugging flannel does by hand, each change typed the way
a learner types it (a %node line through Lab.sh, `labkit exec` argv, an interactive `labkit
shell`): the network config in etcd, flanneld's flags in /etc/sysconfig/flanneld (and a
restart), a link MTU, a deleted FDB entry, an iptables rule. Its bundle, replayed as another
lab, must give an empty `labkit diff` and the same connectivity matrix (with the deleted FDB
entry's pairs still broken); a change made afterwards must show up in the diff.
"""
import json
import os
import time

import pytest

from tests.helpers import labkit, sh, unique_name, wait_for

CONFIG = '{"Network":"10.108.0.0/16","SubnetMax":"10.108.200.0","Backend":{"Type":"vxlan"}}'


@pytest.fixture
def two_names():
    from labkit.lab import clean
    names = unique_name("bx"), unique_name("by")
    yield names
    for n in names:
        clean(n)


@pytest.mark.timeout(150)
def test_hand_made_changes_replayed_under_another_name_give_an_empty_diff(two_names, tmp_path):
    from labkit.lab import Lab
    from labkit.spec import LabSpec
    a_name, b_name = two_names
    lab = Lab(LabSpec(name=a_name, nodes=3, containers=1)).up()
    sh(lab, "master", f"etcdctl put /coreos.com/network/config '{CONFIG}'")                 # config
    sh(lab, "node1", "sed -i 's/-iface=eth0/-iface=eth0 -v=2/' /etc/sysconfig/flanneld")   # flags
    sh(lab, "node1", "systemctl restart flanneld")
    lab.exec("node2", ["ip", "link", "set", "dev", "eth0", "mtu", "1400"])                  # link MTU
    lab.exec("node1", ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "DROP"])  # iptables
    labkit("shell", "--name", a_name, "node2", input="")   # an interactive shell: noted, not replayed
    node1 = lab.node("node1")
    vtep = next(json.loads(v)["BackendData"]["VtepMAC"] for _, v in lab.leases().values()
                if json.loads(v)["PublicIP"] == str(node1.public_ip))
    # the peers handle node1's renewed lease (after its restart) within this second; replay keeps
    # the pace, so in the copy too the entry is deleted after they have, not re-added by them
    time.sleep(1.0)
    labkit("exec", "--name", a_name, "master", "--", "bridge", "fdb", "del", vtep, "dev", "flannel.1", "dst",
           str(node1.public_ip), check=True)                                               # a deleted FDB entry
    broken = [("master/c1", "node1/c1"), ("node1/c1", "master/c1")]
    before = dict(lab.connectivity())
    if sorted(p for p, ok in before.items() if not ok) != broken:   # a ping lost to load: once more
        before = dict(lab.connectivity())
    assert sorted(p for p, ok in before.items() if not ok) == broken

    bundle = str(tmp_path / "report.json")
    r = labkit("export", "--name", a_name, "-o", bundle, check=True)
    assert "6 commands in the transcript" in r.stdout, r.stdout
    assert os.path.getsize(bundle) < 200_000
    with open(bundle) as f:
        text = f.read()
    data = json.loads(text)
    assert "/home" not in text and "-iface=eth0 -v=2" in data["nodes"]["node1"]["sysconfig"]
    config = {"key": "/coreos.com/network/config", "value": CONFIG, "ttl": None, "granted_ttl": None}
    assert config in data["etcd"]["v3"]
    assert "mtu 1400" in data["nodes"]["node2"]["ip_link"]
    assert "--dport 9999" in data["nodes"]["node1"]["iptables_save"]

    r = labkit("replay", bundle, "--name", b_name, check=True, timeout=120)
    assert "[not replayed] interactive shell on node2" in r.stdout and "[exit" not in r.stdout, r.stdout
    r = labkit("diff", "--name", b_name, bundle)
    if r.returncode != 0:   # a unit still starting on a loaded machine: the state settles, the diff empties
        r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(labkit("diff", "--name", b_name, bundle)),
                     timeout=20, what=f"an empty diff; it was:\n{r.stdout}{r.stderr}")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout
    copy = Lab.attach(b_name)
    assert {n.name: n.subnet_env()["FLANNEL_SUBNET"] for n in copy.nodes} == \
        {n.name: n.subnet_env()["FLANNEL_SUBNET"] for n in lab.nodes}
    got = dict(copy.connectivity())
    if got != before:   # a ping lost to load is tried again; a broken pair stays broken
        got = dict(copy.connectivity())
    assert got == before

    # the bundle seeds a scenario file that the scenario loader accepts
    seeded = str(tmp_path / "from-report.yaml")
    r = labkit("scenario", "from-bundle", bundle, "-o", seeded, check=True)   # checked by the scenario loader
    with open(seeded) as f:
        text = f.read()
    assert "name: from-report\n" in text and "  nodes: 3\n" in text and "run: ip link set dev eth0 mtu 1400" in text

    # a real difference: a rule made in the copy only, named in the diff (exit 1)
    copy.exec("node2", ["iptables", "-I", "FORWARD", "-p", "udp", "--dport", "8472", "-j", "DROP"])
    r = wait_for(lambda: (lambda r: r if r.returncode == 1 else None)(labkit("diff", "--name", b_name, bundle)),
                 timeout=30, what="a diff")
    assert f"--- lab {b_name}: node2: iptables-save\n+++ bundle {a_name}: node2: iptables-save\n" in r.stdout
    assert "--A FORWARD -p udp -m udp --dport 8472 -j DROP" in r.stdout
    assert "-node2$ [\"iptables\", \"-I\", \"FORWARD\"" in r.stdout    # and the command, in the transcript


def test_a_hostile_bundle_builds_nothing(tmp_path, lab_name):
    from labkit.spec import LabSpec
    from labkit.state import leftovers
    doc = {"format": "labkit-bundle", "version": 1, "lab": "evil", "spec": LabSpec().to_dict(),
           "etcd": {"api": "v3", "v3": [], "v2": []}, "nodes": {},
           "transcript": [{"t": 1.0, "via": "%node", "step": {"on": "node1", "run": "cat /root/.ssh/id_rsa"}}]}
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(doc))
    r = labkit("replay", str(path), "--name", lab_name)
    assert r.returncode == 1 and r.stdout == ""
    assert "transcript[0].step.run: expected paths inside the node" in r.stderr and "/root/.ssh/id_rsa" in r.stderr
    assert not any(leftovers(lab_name).values())
    r = labkit("replay", str(path), "--name", "Bad Name")
    assert r.returncode == 1 and "invalid lab name" in r.stderr
