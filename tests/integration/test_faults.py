"""Faults injected into real labs: what flannel does about each, and that nothing leaks.

Small labs (2 nodes), short lease TTLs; one lab is shared by the tests whose faults are
independent and that leave it as they found it. Already covered in test_flanneld.py and
not repeated here: a deleted lease (peers drop its entries, its owner stops with "Lease
has been revoked. Shutting down daemon.", a restart takes the subnet back) and lease
expiry without flanneld (test_lease_is_renewed_before_expiry_and_expires_without_flanneld);
here renewal is checked across an etcd outage instead.
"""
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, labkit, sh, unique_name, unreachable, wait_for

PREFIX = "/coreos.com/network"
WATCH_CLOSED = f"etcd watch channel for {PREFIX}/subnets closed ("  # registry.go, watchSubnets
RENEW_FAILED = "Error renewing lease (trying again in 1 min)"       # local_manager.go
RENEWED = "Lease renewed, new expiration"


def nothing_left(name):
    from labkit.state import leftovers
    left = {k: v for k, v in leftovers(name).items() if v}
    assert not left, f"lab {name} left behind: {left}"


@pytest.fixture(scope="module")
def lab():
    """One 2-node lab with a container each and a 6 s lease TTL (renewed every 3 s)."""
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    name = unique_name("ct")
    try:
        yield Lab(LabSpec(name=name, nodes=2, containers=1, lease_ttl=6, renew_margin=3)).up()
    finally:
        clean(name)
        nothing_left(name)


def cli(lab, *args, **kw):
    return labkit(*args, "--name", lab.spec.name, **kw)


def lease_of(lab, node):
    ip = str(lab.node(node).public_ip)
    return next(sn for sn, (_, v) in lab.leases().items() if f'"PublicIP":"{ip}"' in v)


def flannel_routes(lab, node):
    r = lab.sh(node, "ip -4 route show dev flannel.1", timeout=30)
    return {ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()}


FAKE = "10.108.250.0/24"  # a lease nobody runs: only the watch can tell the nodes about it


def peers_learn_a_new_lease(lab):
    """Put a lease into etcd as a joining node would: every flanneld must program it, then
    drop it when it is deleted. Only a live watch does that."""
    key = f"{PREFIX}/subnets/{FAKE.replace('/', '-')}"
    lab.etcd().put(key, '{"PublicIP":"192.168.50.99","PublicIPv6":null,"BackendType":"vxlan",'
                        '"BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}')
    for node in ("master", "node1"):
        wait_for(lambda node=node: FAKE in flannel_routes(lab, node), timeout=10, what=f"{node} to learn {FAKE}")
    lab.etcd().delete(key)
    for node in ("master", "node1"):
        wait_for(lambda node=node: FAKE not in flannel_routes(lab, node), timeout=10, what=f"{node} to drop {FAKE}")


@pytest.mark.timeout(60)
def test_etcd_restart_keeps_the_watch_and_renewal(lab):
    logs = {n: lab.service(n, "flanneld").log() for n in ("master", "node1")}
    renewals = lab.service("node1", "flanneld").log().count(RENEWED)
    r = cli(lab, "service", "master", "etcd", "restart")
    assert r.returncode == 0, r.stderr
    # `restart` returns once etcd answers /health, as systemctl does for a notify unit
    assert lab.etcd().get(f"{PREFIX}/config")[0] is not None
    peers_learn_a_new_lease(lab)
    for node in ("master", "node1"):
        new = lab.service(node, "flanneld").log()[len(logs[node]):]
        assert WATCH_CLOSED in new, new
        # one line per failure, in flannel's words: no multi-line gRPC dump
        assert "_MultiThreadedRendezvous" not in new and "\n\t" not in new
        assert all(ln[:1] in "IWEF" for ln in new.splitlines())
    wait_for(lambda: lab.service("node1", "flanneld").log().count(RENEWED) > renewals, timeout=10,
             what="a renewal after the restart")
    assert not unreachable(lab)


@pytest.mark.timeout(60)
def test_etcd_down_beyond_a_renewal_then_started_from_a_node_shell(lab):
    svc = lab.service("master", "etcd")
    fl = lab.service("node1", "flanneld")
    before = fl.log()
    svc.stop()
    wait_for(lambda: RENEW_FAILED in fl.log()[len(before):], timeout=10, what="a failed renewal")
    r = lab.sh("master", "systemctl start etcd", timeout=30)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: RENEWED in fl.log()[len(before):].split(RENEW_FAILED, 1)[1], timeout=10,
             what="the renewal retried and done")
    assert lease_of(lab, "node1")
    peers_learn_a_new_lease(lab)


@pytest.mark.timeout(30)
def test_a_watch_behind_compaction_relists_the_leases(lab, capfd):
    """registry.go: a watch whose revision etcd compacted away lists every lease again
    (the daemon diffs that snapshot) and goes on from the list's revision."""
    import queue
    import threading

    from labkit.flannel.etcd_manager import LocalManager, Snapshot
    client = lab.etcd()
    rev = client.put(f"{PREFIX}/scratch", "1").header.revision
    client.put(f"{PREFIX}/scratch", "2")
    client.compact(rev + 1)
    got, stop = queue.Queue(), threading.Event()
    LocalManager(client, PREFIX).watch_leases(got.put, rev, stop)
    try:
        snap = got.get(timeout=10)
        assert isinstance(snap, Snapshot)
        assert {str(ls.subnet) for ls in snap} == set(lab.leases())
        peers_learn_a_new_lease(lab)  # the daemons' own watches were not disturbed
        added = got.get(timeout=10)   # and this watch goes on from the list's revision
        assert [str(e.lease.subnet) for e in added] == [FAKE]
    finally:
        stop.set()
        client.delete(f"{PREFIX}/scratch")
    err = capfd.readouterr().err
    assert (f"etcd watch for {PREFIX}/subnets fell behind compaction horizon (compact rev {rev + 1}), "
            "re-listing and resuming") in err


@pytest.mark.timeout(60)
def test_flanneld_restart_exit_status_is_systemds(lab):
    sn = lease_of(lab, "node1")
    r = cli(lab, "service", "node1", "flanneld", "restart")
    assert r.returncode == 0, r.stderr
    assert lease_of(lab, "node1") == sn
    assert f"Found lease (ip: {sn} ipv6: ::/0) for current IP (192.168.50.2), reusing" in \
        lab.service("node1", "flanneld").log()
    good = lab.network_config()
    lab.write_config('{"Network":"10.108.0.0/16","Backend":{"Type":"bogus"}}')
    try:
        r = cli(lab, "service", "node1", "flanneld", "restart")
        assert r.returncode == 1
        assert "Job for flanneld.service failed because the control process exited with error code." in r.stderr
        assert "Error fetching backend: unknown backend type: bogus" in lab.service("node1", "flanneld").log()
        r = lab.sh("node1", "systemctl restart flanneld", timeout=30)
        assert r.returncode == 1
        assert "Job for flanneld.service failed because the control process exited with error code." in r.stderr
        assert cli(lab, "service", "node1", "flanneld", "status").returncode == 3
    finally:
        lab.write_config(good)
    assert cli(lab, "service", "node1", "flanneld", "start").returncode == 0
    assert lease_of(lab, "node1") == sn
    assert not unreachable(lab)


@pytest.mark.timeout(60)
def test_flanneld_kill9_then_systemctl_start_keeps_the_subnet(lab):
    sn = lease_of(lab, "node1")
    svc = lab.service("node1", "flanneld")
    os.kill(svc.pid(), signal.SIGKILL)
    wait_for(lambda: not svc.is_active(), what="flanneld to die")
    assert lab.sh("master", "ping -c1 -W2 " + lab.resolve("node1/c1")[1].ip, timeout=30).returncode == 0
    r = lab.sh("node1", "systemctl start flanneld", timeout=30)
    assert r.returncode == 0, r.stderr
    assert lease_of(lab, "node1") == sn
    own = ipaddress.IPv4Interface(lab.node("node1").subnet_env()["FLANNEL_SUBNET"]).network
    assert own == ipaddress.IPv4Network(sn)
    assert not unreachable(lab)


@pytest.mark.timeout(60)
def test_uplink_down_and_up(lab):
    """flannel does nothing about a link going down: the overlay pauses and comes back
    with the link, with the same flanneld, lease and kernel entries."""
    pid, routes = lab.service("node1", "flanneld").pid(), flannel_routes(lab, "node1")
    lab.sh("node1", "ip link set eth0 down", timeout=30)
    try:
        assert not lab.ping("master/c1", "node1/c1")[0]
    finally:
        lab.sh("node1", "ip link set eth0 up", timeout=30)
    wait_for(lambda: lab.ping("master/c1", "node1/c1")[0], timeout=15, what="the overlay back")
    assert lab.service("node1", "flanneld").pid() == pid
    assert flannel_routes(lab, "node1") == routes
    assert not unreachable(lab)


@pytest.mark.timeout(60)
def test_docker_restart_on_a_node(lab):
    from labkit.docker import containers
    bip = sh(lab, "node1", "ip -4 -o addr show docker0").split()[3]
    r = lab.sh("node1", "systemctl restart docker", timeout=30)
    assert r.returncode == 0, r.stderr
    assert sh(lab, "node1", "ip -4 -o addr show docker0").split()[3] == bip  # --bip from subnet.env
    # without live-restore, stopping dockerd stopped the container: `docker start` it
    assert not containers.get(lab.state, "node1", "c1").running
    containers.start(lab.state, "node1", "c1")
    assert not unreachable(lab)


@pytest.mark.timeout(60)
def test_flannel_device_deleted_is_back_after_a_restart(lab):
    """Whether flanneld re-created it meanwhile (v0.27.4+) or not (before), a restart
    creates or keeps flannel.1 with this node's lease, and every pair answers."""
    lab.sh("node1", "ip link del flannel.1", timeout=30)
    assert not lab.ping("master/c1", "node1/c1")[0]
    assert cli(lab, "service", "node1", "flanneld", "restart").returncode == 0
    assert flannel_routes(lab, "node1")
    wait_for(lambda: not unreachable(lab), timeout=15, what="every pair to answer")


def vtep_mac_in_lease(lab, node):
    sn = lease_of(lab, node)
    return json.loads(lab.leases()[sn][1])["BackendData"]["VtepMAC"]


def device_mac(lab, node):
    return lab.sh(node, "cat /sys/class/net/flannel.1/address", timeout=30).stdout.strip()


def arp_mac(lab, node, ip):
    out = lab.sh(node, f"ip neigh show {ip} dev flannel.1", timeout=30).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


@pytest.mark.timeout(60)
def test_flannel_device_deleted_is_recreated_by_a_running_flanneld(lab):
    """flannel >= v0.27.4 (vxlan_network.go: watchVXLANDevice, reCreateVxlan; commit 73af8ea7,
    PR #2247) sees the deletion over netlink and creates the device again, with the lease's
    /32, up. Only the device: its routes, ARP and FDB entries went with the old one and come
    back only with each peer's next lease event (a renewal, every 3 s in this lab); its MAC is
    new but the lease is not written again, so the peers keep the old VtepMAC and their
    packets to node1 are dropped. A flanneld restart publishes the new MAC; then every pair
    answers again."""
    svc = lab.service("node1", "flanneld")
    before = len(svc.log())
    sn = lease_of(lab, "node1")
    gw = ipaddress.ip_network(sn).network_address
    master_sn = lease_of(lab, "master")
    old_mac = vtep_mac_in_lease(lab, "node1")
    assert device_mac(lab, "node1") == old_mac == arp_mac(lab, "master", gw)
    lab.sh("node1", "ip link del flannel.1", timeout=30)
    try:
        wait_for(lambda: "VXLAN device flannel.1 recreated successfully" in svc.log()[before:],
                 timeout=5, what="flanneld to recreate flannel.1")
        log = svc.log()[before:]
        steps = ["Interface flannel.1 deleted", "vxlan device missing, attempting to recreate...",
                 "VXLAN device flannel.1 recreated successfully"]
        assert all(f"vxlan_network.go] {step}" in log for step in steps), log
        assert [log.index(step) for step in steps] == sorted(log.index(step) for step in steps)
        assert svc.is_active()
        addr = lab.sh("node1", "ip -4 -o addr show dev flannel.1", timeout=30).stdout
        assert f"inet {gw}/32 " in addr
        assert "UP" in lab.sh("node1", "ip link show flannel.1", timeout=30).stdout.split("<")[1].split(">")[0]
        # the new device has a new MAC; the lease, and the master's ARP entry, keep the old one
        new_mac = device_mac(lab, "node1")
        assert new_mac != old_mac
        assert vtep_mac_in_lease(lab, "node1") == old_mac
        assert arp_mac(lab, "master", gw) == old_mac
        # the master's next renewal (a PUT: an Added event) puts its route back on node1 ...
        wait_for(lambda: master_sn in flannel_routes(lab, "node1"), timeout=10,
                 what="node1 to program the master's lease again")
        # ... but the master's packets still carry node1's old MAC: dropped
        assert not lab.ping("master/c1", "node1/c1", timeout=1)[0]
        assert not lab.ping("node1/c1", "master/c1", timeout=1)[0]
        # a restart keeps the re-created device and advertises its MAC; the peers learn it
        assert cli(lab, "service", "node1", "flanneld", "restart").returncode == 0
        assert device_mac(lab, "node1") == new_mac
        assert vtep_mac_in_lease(lab, "node1") == new_mac
        wait_for(lambda: arp_mac(lab, "master", gw) == new_mac, timeout=10,
                 what="the master to learn node1's new VtepMAC")
        wait_for(lambda: not unreachable(lab), timeout=15, what="every pair to answer")
    finally:
        if unreachable(lab):
            cli(lab, "service", "node1", "flanneld", "restart")


@pytest.mark.timeout(90)
def test_etcd_kill9_stale_socket_then_add_node(lab):
    """Last user of the shared lab: it grows by a node."""
    svc = lab.service("master", "etcd")
    os.kill(svc.pid(), signal.SIGKILL)
    wait_for(lambda: not svc.is_active(), what="etcd to die")
    assert os.path.exists(lab.state.etcd_socket)  # the dead etcd's socket file stays
    r = cli(lab, "service", "master", "etcd", "start")
    assert r.returncode == 0, r.stderr + svc.log()[-2000:]
    assert "address already in use" not in svc.log()
    assert cli(lab, "service", "master", "etcd", "status").returncode == 0
    r = cli(lab, "add-node", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    from labkit.lab import Lab
    grown = Lab.attach(lab.spec.name)
    sn = lease_of(grown, "node2")
    for node in ("master", "node1"):
        assert sn in flannel_routes(grown, node)
    assert not unreachable(grown)


# -- building and removing labs ----------------------------------------------------------

@pytest.mark.timeout(90)
def test_two_ups_with_one_name(lab_name_ct):
    name = lab_name_ct
    cmd = [sys.executable, "-m", "labkit.cli", "up", "--name", name, "--nodes", "2"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [(p.wait(timeout=80), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in outs) == [0, 1], outs
    _, _, err = next(o for o in outs if o[0] == 1)
    assert (f"lab {name} is being built or removed by another process" in err
            or f"a lab named '{name}' already exists" in err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # the finished lab was not touched by the loser, and a third `up` is refused too
    assert "2 of 2 pairs reachable" in labkit("check", "--name", name).stdout
    r = labkit("up", "--name", name, "--nodes", "2")
    assert r.returncode == 1 and f"a lab named '{name}' already exists" in r.stderr
    assert "2 of 2 pairs reachable" in labkit("check", "--name", name).stdout
    assert labkit("down", "--name", name).returncode == 0
    nothing_left(name)


@pytest.fixture
def lab_name_ct():
    from labkit.lab import clean
    name = unique_name("ct")
    yield name
    clean(name)


STEPS = ["underlay", "etcd", "network config", "flanneld", "docker", "containers", "converge"]


def _signal_up_in_step(name, step, sig, nodes):
    """`labkit up` with one container per node, sent `sig` 5 ms into `step`; returns the
    process, ended, and every line it printed. The last steps are short (a 2-node converge
    is one round of netlink dumps, about 5 ms): when `up` finished before the signal came,
    the lab is removed and `up` is tried again, at once on seeing the step's line.
    The child starts with SIGTERM and SIGHUP at their defaults, as in a terminal: a runner
    under `nohup` ignores SIGHUP, and labkit rightly keeps a disposition someone chose.
    coreutils' env resets them, not a preexec_fn: a fork that runs Python code in this
    process, whose gRPC threads (other tests' etcd clients) restart in the child, once
    aborted the child before its exec (gRPC: "epoll_wait error: Bad file descriptor")."""
    from labkit.lab import clean
    for delay in (0.005, 0, 0, 0, 0):
        p = subprocess.Popen(["env", "--default-signal=TERM,HUP", sys.executable, "-m", "labkit.cli", "up",
                              "--name", name, "--nodes", str(nodes), "--containers", "1"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.rstrip().endswith(f"] {step} ..."):
                time.sleep(delay)
                p.send_signal(sig)
                break
        seen += p.stdout.readlines()
        p.wait(timeout=30)
        if p.returncode != 0 or not any(f"lab {name} is up in" in line for line in seen):
            return p, seen
        clean(name)  # `up` was done before the signal: nothing was interrupted
    return p, seen


@pytest.mark.timeout(40)
@pytest.mark.parametrize("step", STEPS)
def test_sigkill_of_up_at_each_step_then_clean_leaves_nothing(step, lab_name_ct):
    name = lab_name_ct
    p, seen = _signal_up_in_step(name, step, signal.SIGKILL, nodes=2)
    assert p.returncode == -signal.SIGKILL, "".join(seen)
    from labkit.state import leftovers
    assert any(leftovers(name).values())  # something to clean
    r = labkit("clean", "--name", name)
    assert r.returncode == 0, r.stderr
    nothing_left(name)
    assert labkit("clean", "--name", name).returncode == 0  # twice is harmless
    nothing_left(name)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("step", ["underlay", "etcd", "flanneld", "docker"])
def test_sigterm_of_up_removes_the_half_built_lab(step, lab_name_ct):
    """`kill` (SIGTERM) or a closed terminal (SIGHUP) is not SIGKILL: `up` removes what it
    built, says why in one line and exits 128 + the signal; nothing is left to clean."""
    name = lab_name_ct
    sig = signal.SIGTERM if step != "docker" else signal.SIGHUP
    p, seen = _signal_up_in_step(name, step, sig, nodes=3)
    assert p.returncode == 128 + sig, "".join(seen)
    assert any("removing the half-built lab" in line for line in seen), "".join(seen)
    assert seen[-1].strip() == f"labkit: terminated by {sig.name}" and "Traceback" not in "".join(seen)
    from labkit.state import leftovers
    assert not any(leftovers(name).values()), leftovers(name)
    nothing_left(name)


@pytest.mark.timeout(60)
def test_a_node_namespace_deleted_before_its_flanneld_starts_is_named(lab_name_ct):
    """A flanneld that cannot even start (here: its node's namespace was deleted under the lab)
    gave "flanneld on node1 exited:" and nothing after the colon: the reason went to the
    zygote's own log. It is now in the service's log, where `up` and `labkit logs` read."""
    from labkit import netns
    from labkit.errors import LabError
    from labkit.lab import Lab
    from labkit.spec import LabSpec

    class Sabotaged(Lab):
        def start_flanneld(self, nodes=None, *args, **kwargs):
            netns.delete(self.node("node1").ns)
            return super().start_flanneld(nodes, *args, **kwargs)

    with pytest.raises(LabError) as err:
        Sabotaged(LabSpec(name=lab_name_ct, nodes=2)).up()
    assert str(err.value) == (f"flanneld on node1 exited:\nlabkit: cannot start flanneld: network "
                              f"namespace {lab_name_ct}-node1 does not exist")
    nothing_left(lab_name_ct)


@pytest.mark.timeout(60)
def test_status_of_a_lab_whose_node_namespace_was_deleted_shows_the_node(lab_name_ct):
    """`ip netns del` of a node's namespace under a running lab: `status` failed with "network
    namespace ... does not exist". It now shows every node, that one marked, and `down` still
    removes everything (the namespace lives on, unnamed, while the node's processes run)."""
    from labkit.lab import Lab
    from labkit.spec import LabSpec
    name = lab_name_ct
    Lab(LabSpec(name=name, nodes=3)).up()
    subprocess.run(["ip", "netns", "del", f"{name}-node1"], check=True)   # the name only: its processes run on
    st = Lab.attach(name).status()
    assert [(n.name, n.namespace_gone) for n in st.nodes] == [("master", False), ("node1", True), ("node2", False)]
    assert st.node("node1").in_range is None and st.node("node2").in_range is True
    r = labkit("status", "--name", name)
    assert r.returncode == 0, r.stderr
    assert f"WARNING: network namespace {name}-node1 of node node1 no longer exists" in r.stdout
    assert f"{name}-node1 (gone)" in r.stdout
    # what needs every node is refused before anything changes (reconfigure stopped at its
    # third step, with the new backend already in etcd and flanneld stopped everywhere)
    for argv in (["reconfigure", "--backend", "host-gw"], ["add-node"]):
        r = labkit(*argv, "--name", name)
        assert r.returncode == 1 and r.stderr.strip() == (
            f"labkit: error: {argv[0]} needs every node, and the network namespace of node1 ({name}-node1) no "
            f"longer exists (deleted under the lab?): nothing was changed; rebuild it with `labkit down --name "
            f"{name}`, then `labkit up`"), r.stdout + r.stderr
    after = Lab.attach(name)
    assert after.spec.backend == "vxlan" and len(after.nodes) == 3
    assert [n.services["flanneld"] for n in after.status().nodes] == ["active"] * 3
    r = labkit("exec", "--name", name, "node1", "--", "true")
    assert r.returncode == 1 and r.stderr.strip() == f"nsexec: network namespace {name}-node1 does not exist"
    assert labkit("down", "--name", name).returncode == 0
    nothing_left(name)


def test_a_convergence_timeout_says_what_the_node_behind_is_doing(lab):
    """When the mesh does not converge, the error names the node furthest behind, whether its
    flanneld runs, and that flanneld's last lines (a big bench removes the lab on failure,
    so the message is what is left to read)."""
    from labkit.errors import LabError
    sh(lab, "node1", "systemctl stop flanneld")
    # every peer route goes (earlier tests of this module's lab may have left a stale one)
    sh(lab, "node1", "ip route flush dev flannel.1")
    try:
        with pytest.raises(LabError) as err:
            lab.wait_converged(timeout=0.3)
        msg = str(err.value)
        assert "'node1': 0}" in msg
        assert "node1's flanneld is not running, its last lines: " in msg and "Exiting cleanly" in msg
    finally:  # the module's lab as it was: flanneld lists the leases again and routes every peer
        sh(lab, "node1", "systemctl start flanneld")
        lab.wait_converged(timeout=30)
