"""Capture, the widgets' Apply and the %node magic against real labs."""
import os
import shutil
import subprocess
import threading
import time

import pytest

from labkit import capture as C
from labkit.errors import LabError
from tests.helpers import labkit


@pytest.fixture
def lab(make_lab):
    return make_lab(nodes=2, containers=1, seed=11)


def test_one_ping_seen_at_every_hop(lab, tmp_path):
    own_ns = os.readlink("/proc/thread-self/ns/net")
    veth = C.container_veth(lab, "master/c1")
    caps = C.capture_many(lab, [("master", veth, "icmp"), ("master", "docker0", "icmp"),
                                ("master", "flannel.1", "icmp"), ("master", "eth0", "udp port 8472"),
                                ("node1", "eth0", "udp port 8472"), ("node1/c1", "eth0", "icmp")],
                          count=2, timeout=5, traffic=C.ping(lab, "master/c1", "node1/c1"),
                          pcap_dir=str(tmp_path))
    assert [c.stopped for c in caps] == ["count"] * 6
    src, dst = str(lab.address_of("master/c1")), str(lab.address_of("node1/c1"))
    # past docker0, docker's MASQUERADE (--ip-masq=true, from mk-docker-opts.sh) gives the packet
    # flannel.1's address as source: <lease>.0
    masq = lab.node("master").subnet_env()["FLANNEL_SUBNET"].split("/")[0].rsplit(".", 1)[0] + ".0"
    for i, c in enumerate(caps):
        req = c.first("echo-request")
        if i >= 2:
            src = masq
        if c.iface == "eth0" and "/" not in c.target:
            assert len(req.data) == 148
            assert req.summary() == (f"192.168.50.1 > 192.168.50.2 udp/8472 VXLAN vni=1 | "
                                     f"{src} > {dst} ICMP echo-request seq=1")
        else:
            assert len(req.data) == 98 and req.summary() == f"{src} > {dst} ICMP echo-request seq=1"
    # the VXLAN payload is, byte for byte, the frame flannel.1 sent
    from scapy.layers.vxlan import VXLAN
    outer = caps[3].first("echo-request")
    assert bytes(outer.scapy[VXLAN].payload) == caps[2].first("echo-request").data
    assert [r["layer"] for r in outer.layers()][:5] == ["Ethernet", "IP", "UDP", "VXLAN", "inner Ethernet"]
    assert {p.direction for p in caps[3].packets} == {"in", "out"}
    # pcap files that tcpdump reads, and no thread of ours left in a node
    assert os.path.exists(caps[3].pcap)
    if shutil.which("tcpdump"):
        r = subprocess.run(["tcpdump", "-nn", "-T", "vxlan", "-r", caps[3].pcap], capture_output=True, text=True)
        assert r.returncode == 0 and "vni 1" in r.stdout and "ICMP echo request" in r.stdout
    assert os.readlink("/proc/thread-self/ns/net") == own_ns
    assert not [t for t in threading.enumerate() if t.name.startswith("labkit-in-")]


def test_a_capture_stops_at_its_timeout_and_at_its_count(lab):
    t = time.monotonic()
    quiet = C.capture(lab, "node1", "eth0", filter="tcp port 9", count=5, timeout=0.5)
    assert quiet.packets == [] and quiet.stopped == "timeout" and time.monotonic() - t < 3
    one = C.capture(lab, "node1", "flannel.1", filter="icmp", count=1, timeout=5,
                    traffic=C.ping(lab, "master/c1", "node1/c1", count=3))
    assert len(one.packets) == 1 and one.stopped == "count"


def test_capture_errors_are_clear(lab):
    with pytest.raises(LabError, match="no interface 'nosuch'"):
        C.capture(lab, "master", "nosuch", timeout=0.2)
    with pytest.raises(LabError, match="invalid capture filter"):
        C.capture(lab, "master", "eth0", filter="udp port", timeout=0.2)
    with pytest.raises(LabError):
        C.capture(lab, "node7", "eth0", timeout=0.2)
    assert "flannel.1" in C.interfaces(lab, "node1") and C.interfaces(lab, "node1/c1") == ["eth0", "lo"]


def test_capture_cli(lab, tmp_path):
    out = tmp_path / "x.pcap"
    r = labkit("capture", "--name", lab.spec.name, "master", "eth0", "udp", "port", "8472", "-c", "2",
               "-w", str(out), "--ping", "master/c1", "node1/c1", "--layers")
    assert r.returncode == 0, r.stderr
    assert "stopped by count" in r.stdout and "VXLAN vni=1" in r.stdout
    assert "inner frame 98 B + encapsulation 50 B" in r.stdout and out.stat().st_size > 24
    r = labkit("capture", "--name", lab.spec.name, "master", "eth0", "-f", "tcp port 9", "-t", "0.3")
    assert r.returncode == 1 and "0 packet(s)" in r.stdout


def test_apply_changes_the_network_on_every_node(lab):
    """The config panel's Apply is lab.reconfigure: the plan it shows is the one it runs."""
    from labkit.widgets import ConfigPanel
    panel = ConfigPanel(lab)
    panel.network.value = "10.20.0.0/22"
    table = panel.apply(echo=False)
    assert [s.step for s in panel.last_result.steps] == panel.plan and panel.plan[0].startswith("etcdctl put")
    assert all(r[2].startswith("10.20.") and r[-1] == "✓" for r in table.rows), table.text()
    assert lab.spec.network == "10.20.0.0/22"
    assert lab.node("node1").subnet_env()["FLANNEL_NETWORK"] == "10.20.0.0/22"
    assert all(lab.connectivity().values())          # the containers came back, in the new subnets


def test_node_magic_runs_at_the_node_prompt(lab, capsys):
    from labkit.jupyter import use
    from labkit.magics import node_cell, node_line
    use(lab)
    node_line("node1 cat /run/flannel/subnet.env")
    node_cell("master", "echo '{\"a\": {\"b\": 1}}'\nhostname\nfalse")
    out, err = capsys.readouterr()
    assert "FLANNEL_SUBNET=" in out and '{"a": {"b": 1}}' in out and "[exit 1]" in err


def test_a_notebook_lab_is_removed_when_its_kernel_is_killed(lab_name):
    """nbval kills its kernels (no atexit): the lab's reaper removes the lab anyway."""
    import signal
    import sys

    from labkit.state import LabState
    name = "nbk" + lab_name[1:]                  # unique to this test
    code = ("from labkit.jupyter import start; import time, sys\n"
            f"start({name!r}, nodes=1, quiet=True); print('up', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        assert LabState(name).exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while LabState(name).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not LabState(name).exists()
    finally:
        proc.kill()
        from labkit.lab import clean
        clean(name)


def test_a_notebook_refuses_to_remove_a_lab_made_by_labkit_up(lab_name):
    from labkit.notebook.session import start
    from labkit.state import LabState
    labkit("up", "--name", lab_name, "--nodes", "1", check=True)
    assert LabState(lab_name).owner()["by"] == "labkit up"
    with pytest.raises(LabError, match=r"created by `labkit up` \(pid \d+, exited; the lab lives on\)"):
        start(lab_name, nodes=1, quiet=True)
    assert LabState(lab_name).exists() and LabState(lab_name).owner()["by"] == "labkit up"
