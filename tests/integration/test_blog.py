"""The seed blog post, typed verbatim into node shells: the walkthrough and both problems.

Every command string below is copied from the blog (../shared/seed/); the assertions
check what the blog shows.
"""
import ipaddress
import re
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, labkit, sh, wait_for

SET_CONFIG = """etcdctl set /flannel/network/config '{"Network":"10.108.0.0/16","Backend": {"Type": "vxlan"}}'"""
RESTART = "systemctl restart flanneld docker"
RUN_C1 = "docker run -d --name c1 busybox sleep 3600"
IP_OF_C1 = "docker inspect -f '{{.NetworkSettings.IPAddress}}' c1"
FIX_PROBLEM_2 = "ip link del flannel.1;\nsystemctl restart flanneld docker"


@pytest.fixture
def blog_lab(lab_name):
    """`labkit up --blog`: legacy flannel, master + one node, no config in etcd yet."""
    from labkit.lab import Lab
    from labkit.spec import blog_spec

    def make(flavour="legacy"):
        return Lab(blog_spec(lab_name, flavour=flavour, seed=7)).up()
    return make


def ifconfig(lab, node, dev):
    return sh(lab, node, f"ifconfig {dev}")


def inet(text):
    m = re.search(r"inet (\S+)  netmask (\S+)", text)
    return m.group(1), m.group(2)


def walkthrough(lab):
    sh(lab, "master", SET_CONFIG)
    sh(lab, "master", RESTART)
    sh(lab, "node1", RESTART)


def run_containers_and_ping(lab, ok=True):
    """`docker run -d --name c1 busybox sleep 3600` on each node, then ping across."""
    for n in ("master", "node1"):
        sh(lab, n, RUN_C1)
    ip = sh(lab, "node1", IP_OF_C1).strip()
    r = lab.sh("master", f"docker exec c1 ping -c 3 -W 1 {ip}")
    return (r.returncode == 0), ip, r.stdout


def test_walkthrough_verbatim(blog_lab):
    lab = blog_lab()
    walkthrough(lab)
    net = ipaddress.IPv4Network("10.108.0.0/16")
    for node in ("master", "node1"):
        docker0 = ifconfig(lab, node, "docker0")
        flannel = ifconfig(lab, node, "flannel.1")
        d_ip, d_mask = inet(docker0)
        f_ip, f_mask = inet(flannel)
        assert ipaddress.IPv4Address(d_ip) in net and d_ip.endswith(".1") and d_mask == "255.255.255.0"
        assert ipaddress.IPv4Address(f_ip) in net and f_ip.endswith(".0") and f_mask == "255.255.255.255"
        assert d_ip.rsplit(".", 1)[0] == f_ip.rsplit(".", 1)[0]   # same /24: 10.108.X.1 and 10.108.X.0
        assert flannel.startswith("flannel.1: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1450")
        assert f"FLANNEL_SUBNET={d_ip}/24" in sh(lab, node, "cat /run/flannel/subnet.env")
    ok, ip, out = run_containers_and_ping(lab)
    assert ok, out
    assert "3 packets transmitted, 3 received" in out


def test_the_blog_through_labkit_exec_and_shell(blog_lab):
    """What a new user types: `labkit exec` with the blog's words, and an interactive `labkit shell`."""
    lab = blog_lab()
    name = lab.spec.name
    r = labkit("exec", "--name", name, "master", "--", "etcdctl", "set", "/flannel/network/config",
               '{"Network":"10.108.0.0/16","Backend": {"Type": "vxlan"}}', check=True)
    assert r.stdout.strip() == '{"Network":"10.108.0.0/16","Backend": {"Type": "vxlan"}}'
    for node in ("master", "node1"):
        labkit("exec", "--name", name, node, "--", "systemctl", "restart", "flanneld", "docker", check=True)
    script = f"hostname\n{RUN_C1}\nifconfig docker0\nexit\n"
    r = subprocess.run([sys.executable, "-m", "labkit.cli", "shell", "--name", name, "node1"], input=script,
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "node1"
    assert re.search(r"inet 10\.108\.\d+\.1  netmask 255\.255\.255\.0", r.stdout)
    r = labkit("exec", "--name", name, "node1", "--", "docker", "ps", check=True)
    assert "c1" in r.stdout and "busybox" in r.stdout


def test_problem_1_docker_not_restarted_after_flanneld(blog_lab):
    lab = blog_lab()
    # docker came up before flannel had a config: Docker's default bridge
    assert inet(ifconfig(lab, "master", "docker0")) == ("172.17.0.1", "255.255.0.0")
    sh(lab, "master", SET_CONFIG)
    sh(lab, "master", "systemctl restart flanneld")        # docker not restarted
    sh(lab, "node1", RESTART)                              # node1 done right
    assert inet(ifconfig(lab, "master", "docker0"))[0] == "172.17.0.1"
    assert lab.status().nodes[0].docker0_in_network is False
    ok, ip, out = run_containers_and_ping(lab)
    outside = sh(lab, "master", IP_OF_C1).strip()
    assert outside.startswith("172.17.")
    # master/c1's own pings get out only because docker (--ip-masq=true, its default) masquerades
    # 172.17.0.0/16 behind flannel.1's address; nothing on the other node can reach it
    assert ok, out
    r = lab.sh("node1", f"docker exec c1 ping -c 2 -W 1 {outside}")
    assert r.returncode != 0, "a container outside the flannel network must not be reachable"
    # the fix: restart docker (after flanneld). Docker stops its containers, so run c1 again.
    sh(lab, "master", "systemctl restart docker")
    assert inet(ifconfig(lab, "master", "docker0"))[0].startswith("10.108.")
    sh(lab, "master", "docker rm -f c1")
    sh(lab, "master", RUN_C1)
    assert lab.sh("master", f"docker exec c1 ping -c 3 -W 1 {ip}").returncode == 0
    inside = sh(lab, "master", IP_OF_C1).strip()
    assert lab.sh("node1", f"docker exec c1 ping -c 3 -W 1 {inside}").returncode == 0


def test_problem_1_docker_restarted_before_flanneld(blog_lab):
    """Restart order, the other way round: docker reads the subnet.env of the old network."""
    lab = blog_lab(flavour="modern")
    sh(lab, "master", SET_CONFIG.replace("etcdctl set", "etcdctl put"))
    for n in ("master", "node1"):
        sh(lab, n, RESTART)
    sh(lab, "master", SET_CONFIG.replace("etcdctl set", "etcdctl put").replace("10.108.", "10.109."))
    sh(lab, "master", "systemctl restart docker")     # docker first...
    sh(lab, "master", "systemctl restart flanneld")   # ...then flanneld
    assert inet(ifconfig(lab, "master", "docker0"))[0].startswith("10.108.")  # the old network
    assert "FLANNEL_NETWORK=10.109.0.0/16" in sh(lab, "master", "cat /run/flannel/subnet.env")
    sh(lab, "master", "systemctl restart docker")     # the fix
    assert inet(ifconfig(lab, "master", "docker0"))[0].startswith("10.109.")


def test_systemctl_orders_flanneld_before_docker_like_systemd(blog_lab):
    lab = blog_lab()
    sh(lab, "master", SET_CONFIG)
    sh(lab, "master", "systemctl restart docker flanneld")  # flanneld.service is Before=docker.service
    assert inet(ifconfig(lab, "master", "docker0"))[0].startswith("10.108.")
    out = sh(lab, "master", "systemctl status flanneld docker")
    assert "● flanneld.service - Flanneld overlay address etcd agent" in out
    assert "Active: active (running)" in out
    assert sh(lab, "master", "systemctl is-active flanneld").strip() == "active"
    sh(lab, "master", "systemctl stop docker")
    r = lab.sh("master", "systemctl is-active docker")
    assert r.returncode == 3 and r.stdout.strip() == "inactive"
    assert "Lease acquired" in sh(lab, "master", "journalctl -u flanneld")


def test_problem_2_legacy_network_change_needs_ip_link_del(blog_lab):
    lab = blog_lab()
    walkthrough(lab)
    old = inet(ifconfig(lab, "master", "flannel.1"))[0]
    sh(lab, "master", SET_CONFIG.replace("10.108.", "10.109."))
    for n in ("master", "node1"):
        sh(lab, n, RESTART)
    # the change "does not take effect": flannel.1 still shows (and uses) the old address
    assert inet(ifconfig(lab, "master", "flannel.1"))[0] == old
    assert "FLANNEL_NETWORK=10.109.0.0/16" in sh(lab, "master", "cat /run/flannel/subnet.env")
    routes = sh(lab, "master", "ip route")
    assert "10.108.0.0/16 dev flannel.1" in routes and "10.109.0.0/16 dev flannel.1" in routes
    ok, ip, _ = run_containers_and_ping(lab)
    assert ip.startswith("10.109.")
    # the node itself talks from its old address, which no lease covers any more
    assert lab.sh("master", f"ping -c 2 -W 1 {ip}").returncode != 0
    # the blog's fix, on every node
    for n in ("master", "node1"):
        sh(lab, n, FIX_PROBLEM_2)
    new = inet(ifconfig(lab, "master", "flannel.1"))[0]
    assert new.startswith("10.109.") and new.endswith(".0")
    assert "10.108.0.0/16" not in sh(lab, "master", "ip route")
    for n in ("master", "node1"):
        sh(lab, n, "docker rm -f c1")
    ok, ip, out = run_containers_and_ping(lab)
    assert ok, out
    assert lab.sh("master", f"ping -c 2 -W 1 {ip}").returncode == 0


def test_problem_2_legacy_vni_change(blog_lab):
    lab = blog_lab()
    walkthrough(lab)
    sh(lab, "master", SET_CONFIG.replace('"vxlan"}', '"vxlan", "VNI": 2}'))
    for n in ("master", "node1"):
        sh(lab, n, RESTART)
    links = sh(lab, "master", "ip -d link show")
    assert "flannel.1:" in links and "flannel.2:" in links
    # the old device's route for the Network is still the one in use
    assert "10.108.0.0/16 dev flannel.1" in sh(lab, "master", "ip route")
    for n in ("master", "node1"):
        sh(lab, n, FIX_PROBLEM_2)
    assert "10.108.0.0/16 dev flannel.2" in sh(lab, "master", "ip route")
    assert "vxlan id 2" in sh(lab, "master", "ip -d link show flannel.2")
    ok, _, out = run_containers_and_ping(lab)
    assert ok, out


def test_modern_flavour_same_changes(blog_lab):
    """flannel v0.2x: a Port change recreates the device; an MTU change does not; a Network
    change leaves the old address (outside the new Network) on flannel.1."""
    lab = blog_lab(flavour="modern")
    put = SET_CONFIG.replace("etcdctl set", "etcdctl put")
    sh(lab, "master", put)
    for n in ("master", "node1"):
        sh(lab, n, RESTART)
    sh(lab, "master", put.replace('"vxlan"}', '"vxlan", "Port": 4789}'))
    sh(lab, "master", "systemctl restart flanneld")
    assert "dstport 4789" in sh(lab, "master", "ip -d link show flannel.1")
    assert "already exists with incompatible configuration: port: 4789 vs 8472" in \
        sh(lab, "master", "journalctl -u flanneld")
    sh(lab, "master", put.replace('"vxlan"}', '"vxlan", "Port": 4789, "MTU": 1400}'))
    sh(lab, "master", "systemctl restart flanneld")
    assert " mtu 1450 " in sh(lab, "master", "ip link show flannel.1")      # kept
    assert "FLANNEL_MTU=1350" in sh(lab, "master", "cat /run/flannel/subnet.env")
    old = inet(ifconfig(lab, "master", "flannel.1"))[0]
    sh(lab, "master", put.replace("10.108.", "10.109."))
    sh(lab, "master", "systemctl restart flanneld")
    addrs = sh(lab, "master", "ip -4 -o addr show flannel.1")
    assert f"inet {old}/32" in addrs and re.search(r"inet 10\.109\.\d+\.0/32", addrs)
    sh(lab, "master", FIX_PROBLEM_2)
    addrs = sh(lab, "master", "ip -4 -o addr show flannel.1")
    assert old not in addrs and re.search(r"inet 10\.109\.\d+\.0/32", addrs)


def test_modern_flavour_etcdctl_set_explained(blog_lab):
    lab = blog_lab(flavour="modern")
    r = lab.sh("master", SET_CONFIG)
    assert r.returncode != 0
    assert 'Error: unknown command "set" for "etcdctl"' in r.stderr
    assert "use `etcdctl put /flannel/network/config '<json>'` instead" in r.stderr
    # the v2 API does accept it, but a v3 flanneld never sees v2 keys
    sh(lab, "master", "ETCDCTL_API=2 " + SET_CONFIG)
    svc = lab.service("master", "flanneld")
    deadline = time.monotonic() + 5
    while "Did you create your config using etcdv3 API?" not in svc.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ("Couldn't fetch network config: flannel config not found in etcd store. "
            "Did you create your config using etcdv3 API?") in svc.log()
    sh(lab, "master", SET_CONFIG.replace("etcdctl set", "etcdctl put"))
    sh(lab, "master", RESTART)
    assert inet(ifconfig(lab, "master", "docker0"))[0].startswith("10.108.")


def test_docker_restart_stops_containers_and_restart_always_brings_them_back(blog_lab):
    lab = blog_lab()
    walkthrough(lab)
    sh(lab, "node1", RUN_C1)
    sh(lab, "node1", "docker run -d --restart always --name web busybox sleep 3600")
    assert sh(lab, "node1", "docker inspect -f '{{.NetworkSettings.Gateway}}' web").strip() \
        == inet(ifconfig(lab, "node1", "docker0"))[0]
    sh(lab, "node1", "systemctl restart docker")
    ps = sh(lab, "node1", "docker ps -a")
    assert re.search(r"Exited \(137\)\s+c1", ps) and re.search(r"Up .*\s+web", ps)
    after = sh(lab, "node1", "docker inspect -f '{{.NetworkSettings.IPAddress}}' web").strip()
    assert ipaddress.IPv4Address(after) in ipaddress.IPv4Network("10.108.0.0/16")  # on the new docker0
    r = lab.sh("node1", "docker exec c1 true")
    assert r.returncode != 0 and "is not running" in r.stderr
    sh(lab, "node1", "docker start c1")
    assert re.search(r"Up .*\s+c1", sh(lab, "node1", "docker ps"))


def test_a_name_that_begins_another_containers_id_is_a_new_name(blog_lab):
    """docker looks names up before id prefixes, and `run --name` checks names only: the
    CI once failed when c1's random id began with "c2" and `docker run --name c2` said
    the name was in use."""
    lab = blog_lab()
    walkthrough(lab)
    sh(lab, "node1", RUN_C1)
    c1_id = sh(lab, "node1", "docker ps -q").strip()
    name = c1_id[:2]
    sh(lab, "node1", f"docker run -d --name {name} busybox sleep 3600")
    assert lab.address_of(f"node1/{name}") != lab.address_of("node1/c1")
    sh(lab, "node1", f"docker stop {name}")          # the name, not c1's id
    assert re.search(r"Up .*\s+c1", sh(lab, "node1", "docker ps"))
    sh(lab, "node1", f"docker stop {c1_id[:6]}")     # an id prefix still works, on c1's own record
    ps = sh(lab, "node1", "docker ps -a").splitlines()
    assert len(ps) == 3 and all("Exited" in row for row in ps[1:]), ps
    sh(lab, "node1", f"docker rm -f {c1_id[:6]}")
    assert [row.split()[-1] for row in sh(lab, "node1", "docker ps -a").splitlines()[1:]] == [name]


def test_docker_run_it_sh(blog_lab):
    lab = blog_lab()
    walkthrough(lab)
    r = subprocess.run([sys.executable, "-m", "labkit.cli", "exec", "--name", lab.spec.name, "node1", "--",
                        "docker", "run", "-it", "--rm", "--name", "box", "busybox", "sh"],
                       input="ip -4 -o addr show eth0\nexit 3\n", capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 3
    assert re.search(r"eth0\s+inet 10\.108\.\d+\.2/24", r.stdout)
    assert "box" not in sh(lab, "node1", "docker ps -a")  # --rm
    assert "IMAGE is accepted and not pulled" in sh(lab, "node1", "docker run --help")


def test_docker_options_a_debugging_session_types(blog_lab):
    """Options are parsed as docker parses them: `exec -e`, `stop -t 1` (the 1 is not a
    container), `ps --format/--filter`; one this lab does not have is refused, not ignored."""
    lab = blog_lab()
    walkthrough(lab)
    sh(lab, "node1", RUN_C1)
    assert sh(lab, "node1", "docker exec -e WHO=lab -it c1 sh -c 'echo $WHO'").strip() == "lab"
    assert sh(lab, "node1", "docker ps --format '{{.Names}} {{.State}}'").strip() == "c1 running"
    assert sh(lab, "node1", "docker stop -t 1 c1").strip() == "c1"
    assert sh(lab, "node1", "docker ps -a --filter status=exited --format '{{.Names}}'").strip() == "c1"
    assert sh(lab, "node1", "docker ps -q") == ""
    r = lab.sh("node1", "docker exec -d c1 true")
    assert r.returncode == 2 and "unrecognized arguments: -d" in r.stderr
    assert sh(lab, "node1", "docker rm -fv c1").strip() == "c1"
    # docker logs: what the command wrote; -f ends when the command does; --tail; a new
    # container of a removed one's name starts with an empty log
    sh(lab, "node1", "docker run -d --name w busybox sh -c 'echo one; echo two; sleep 0.3; echo three'")
    assert sh(lab, "node1", "docker logs -f w") == "one\ntwo\nthree\n"
    assert sh(lab, "node1", "docker logs --tail 1 w") == "three\n"
    assert sh(lab, "node1", "docker logs -n 0 w") == ""
    r = lab.sh("node1", "docker logs --tail x w")
    assert r.returncode == 2 and 'invalid value for "tail"' in r.stderr
    sh(lab, "node1", "docker rm -f w")
    sh(lab, "node1", "docker run -d --name w busybox echo fresh")
    assert sh(lab, "node1", "docker logs -f w") == "fresh\n"


def test_a_detached_containers_command_ends_as_in_docker(blog_lab):
    """dockerd looks every second for containers whose command ended: the container stops
    with the command's status and its namespace goes; --rm removes it; a restart policy
    starts it again (docker's back-off), until `docker stop`. It used to stay "Up" forever."""
    lab = blog_lab()
    walkthrough(lab)
    node_ns = lab.node("node1").ns

    def state(name):
        return sh(lab, "node1", f"docker inspect -f '{{{{.State.Status}}}} {{{{.State.ExitCode}}}}' {name}").strip()

    def names():
        return sh(lab, "node1", "docker ps -a --format '{{.Names}}'").split()
    sh(lab, "node1", "docker run -d --name e busybox sh -c 'exit 3'")
    sh(lab, "node1", "docker run -d --rm --name r busybox true")
    sh(lab, "node1", "docker run -d --restart on-failure --name f busybox sh -c 'echo try; exit 1'")
    sh(lab, "node1", "docker run -d --restart on-failure --name ok busybox true")
    wait_for(lambda: state("e") == "exited 3", what="e to exit with status 3")
    assert f"{node_ns}-e" not in sh(lab, "node1", "ip netns list")
    assert "Exited (3)" in sh(lab, "node1", "docker ps -a --filter name=e --format '{{.Status}}'")
    wait_for(lambda: "r" not in names(), what="r to be removed (--rm)")
    wait_for(lambda: state("ok") == "exited 0", what="ok to exit with 0 and stay down (on-failure)")
    wait_for(lambda: sh(lab, "node1", "docker logs f").count("try") >= 2, what="f to be started again")
    sh(lab, "node1", "docker stop f")
    tries = sh(lab, "node1", "docker logs f").count("try")
    time.sleep(2.5)   # no restart after a docker stop
    assert sh(lab, "node1", "docker logs f").count("try") == tries and state("f").startswith("exited")
    assert "restarting in 0.1s (--restart on-failure)" in lab.service("node1", "docker").log()
    sh(lab, "node1", "docker rm -f e f ok")
