"""Docker profiles and the blog's start-up chain (flanneld ExecStartPost -> /run/flannel/docker ->
docker), the node's unit files, and Restart=on-failure, on real labs."""
import os
import re
import signal
import time

from tests.helpers import wait_for

SET_CONFIG = """etcdctl set /flannel/network/config '{"Network":"10.108.0.0/16","Backend": {"Type": "vxlan"}}'"""


def sh(lab, node, line, ok=True):
    r = lab.sh(node, line)
    if ok:
        assert r.returncode == 0, f"{node}$ {line}\n{r.stdout}{r.stderr}"
    return r.stdout


def test_blog_hosts_docker_1_12_chain(lab_name):
    """The blog's hosts (legacy flannel, docker 1.12): ip_forward is 0 until docker starts; the
    restart writes /run/flannel/docker from subnet.env, docker0 comes from it, with docker's
    MASQUERADE and chains, and the FORWARD policy stays ACCEPT."""
    from labkit.lab import Lab
    from labkit.spec import blog_spec
    lab = Lab(blog_spec(lab_name, seed=7)).up()
    assert lab.spec.docker_profile == "1.12"
    # flanneld had no config yet: no /run/flannel/docker, and docker found ip_forward at 0
    assert not os.path.exists(lab.node("master").docker_opts_file)
    assert "net.ipv4.ip_forward was 0: set it to 1" in sh(lab, "master", "journalctl -u docker")
    sh(lab, "master", "systemctl stop docker")
    sh(lab, "master", SET_CONFIG)
    sh(lab, "master", "systemctl restart flanneld")
    sn = lab.node("master").subnet_env()["FLANNEL_SUBNET"]
    assert sh(lab, "master", "cat /run/flannel/docker") == (
        f'DOCKER_OPT_BIP="--bip={sn}"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1450"\n'
        f'DOCKER_NETWORK_OPTIONS=" --bip={sn} --ip-masq=true --mtu=1450"\n')
    sh(lab, "master", "systemctl start docker")
    assert sh(lab, "master", "sysctl -n net.ipv4.ip_forward").strip() == "1"   # docker did it
    assert f"inet {sn.split('/')[0]}/24" in sh(lab, "master", "ip -4 addr show docker0")
    net = sn.rsplit(".", 1)[0] + ".0/24"
    nat = sh(lab, "master", "iptables -t nat -S POSTROUTING")
    assert f"-A POSTROUTING -s {net} ! -o docker0 -j MASQUERADE" in nat
    assert "172.17.0.0/16" not in nat       # the default bridge's rule went with it
    filt = sh(lab, "master", "iptables -S")
    assert "-P FORWARD ACCEPT" in filt
    assert "-A FORWARD -j DOCKER-ISOLATION" in filt and "-A FORWARD -o docker0 -j DOCKER" in filt
    # docker0 of the default bridge, before any config: 172.17.0.1/16 (problem 1)
    assert "inet 172.17.0.1/16" in sh(lab, "node1", "ip -4 addr show docker0")


def _ping_all(lab):
    return all(lab.connectivity().values())


def test_docker_1_13_with_legacy_flannel_drops_cross_node_traffic_until_forward_accept(make_lab):
    lab = make_lab(nodes=2, flavour="legacy", docker_version="1.13", containers=1)
    assert "-P FORWARD DROP" in sh(lab, "node1", "iptables -S FORWARD")
    assert not lab.ping("master/c1", "node1/c1")[0] and not lab.ping("node1/c1", "master/c1")[0]
    for n in ("master", "node1"):
        sh(lab, n, "iptables -P FORWARD ACCEPT")      # the hand fix of flannel #603
    assert _ping_all(lab)
    # docker 1.13 sets DROP again at every start
    sh(lab, "node1", "systemctl restart docker")
    assert "-P FORWARD DROP" in sh(lab, "node1", "iptables -S FORWARD")


def test_modern_flannel_forward_rules_let_docker_24_traffic_through(make_lab):
    lab = make_lab(nodes=2, containers=1)
    assert lab.spec.docker_profile == "24.0"
    filt = sh(lab, "node1", "iptables -S")
    assert "-P FORWARD DROP" in filt and "-j FLANNEL-FWD" in filt and "-A FORWARD -j DOCKER-USER" in filt
    assert _ping_all(lab)


def test_units_order_and_restart_on_failure(lab_name):
    from labkit.lab import Lab
    from labkit.spec import blog_spec
    lab = Lab(blog_spec(lab_name, seed=7)).up()
    cat = sh(lab, "master", "systemctl cat flanneld")
    assert cat.startswith("# /usr/lib/systemd/system/flanneld.service\n[Unit]\n")
    assert "Before=docker.service" in cat and "Restart=on-failure" in cat and "RestartSec=2s" in cat
    assert "EnvironmentFile=-/run/flannel/docker" in sh(lab, "master", "systemctl cat docker")
    sh(lab, "master", SET_CONFIG)
    sh(lab, "master", "systemctl restart docker flanneld")   # reversed on the command line
    fl = lab.service("master", "flanneld")
    dk = lab.service("master", "docker")
    assert os.stat(fl.pid_path).st_mtime_ns < os.stat(dk.pid_path).st_mtime_ns
    assert re.search(r"inet 10\.108\.\d+\.1/24", sh(lab, "master", "ip -4 addr show docker0"))
    # SIGKILL: not a stop, so Restart=on-failure brings flanneld back after RestartSec
    old = fl.pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: "activating (auto-restart)" in sh(lab, "master", "systemctl status flanneld", ok=False),
             timeout=5, what="activating (auto-restart)")
    wait_for(lambda: fl.pid() not in (None, old), timeout=10, what="flanneld restarted")
    out = sh(lab, "master", "systemctl status flanneld")
    assert "Active: active (running)" in out and "Restarts: 1" in out
    log = sh(lab, "master", "journalctl -u flanneld")
    assert "main process exited, code=killed, status=9/KILL" in log
    assert "Scheduled restart job, restart counter is at 1." in log
    # a stop is never restarted
    sh(lab, "master", "systemctl stop flanneld")
    time.sleep(2.5)
    assert fl.pid() is None
    name = lab.spec.name
    lab.down()
    left = [p for p in os.listdir("/proc") if p.isdigit() and _mentions(p, name)]
    assert left == []


def _mentions(pid, name):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return any(name.encode() in w for w in words)


def test_docker_restart_then_start_leaves_one_container_on_docker0(lab_name):
    """`systemctl restart docker` stops the containers; `docker start c1` brings c1 back with one
    veth on docker0. The stopped namespace must not linger (an open netlink socket of the
    process that built it kept it alive, its veth on docker0 answering for c1's address)."""
    from labkit import bench
    from labkit.lab import Lab
    from labkit.spec import LabSpec
    lab = Lab(LabSpec(name=lab_name, nodes=2, containers=1, seed=3)).up()
    try:
        sh(lab, "node1", "systemctl restart docker && docker start c1 > /dev/null")
        ports = [ln for ln in sh(lab, "node1", "bridge link").splitlines() if "master docker0" in ln]
        assert len(ports) == 1, ports
        assert bench.tcp(lab, "master/c1", "node1/c1", 1)["gbps"] > 0   # TCP reaches the new c1
    finally:
        lab.down()
