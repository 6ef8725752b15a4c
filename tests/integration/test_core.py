"""The core issue's acceptance checks, on a real 3-node lab built with the CLI."""
import ipaddress
import json
import re

import pytest

from tests.helpers import labkit, sh, unique_name

LEASE_RE = re.compile(r'^\{"PublicIP":"(192\.168\.50\.\d+)","PublicIPv6":null,"BackendType":"vxlan",'
                      r'"BackendData":\{"VNI":1,"VtepMAC":"([0-9a-f]{2}(?::[0-9a-f]{2}){5})"\}\}$')


@pytest.fixture(scope="module")
def lab3():
    """`labkit up --nodes 3 --network 10.108.0.0/16 --backend vxlan --containers 1`."""
    from labkit.lab import Lab, clean
    name = unique_name("core")
    r = labkit("up", "--name", name, "--nodes", "3", "--network", "10.108.0.0/16",
               "--backend", "vxlan", "--containers", "1")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "etcd healthy" in r.stdout and "is up in" in r.stdout  # progress output
        yield Lab.attach(name)
    finally:
        clean(name)


def test_three_distinct_leases_with_flannels_json(lab3):
    leases = lab3.leases()
    assert len(leases) == 3
    net = ipaddress.IPv4Network("10.108.0.0/16")
    publics = set()
    for subnet, (key, value) in leases.items():
        sn = ipaddress.IPv4Network(subnet)
        assert sn.prefixlen == 24 and sn.subnet_of(net) and sn != ipaddress.IPv4Network("10.108.0.0/24")
        assert key == f"/coreos.com/network/subnets/{sn.network_address}-24"
        m = LEASE_RE.match(value)
        assert m, value
        publics.add(m.group(1))
    assert publics == {"192.168.50.1", "192.168.50.2", "192.168.50.3"}


def test_etcdctl_works_on_every_node(lab3):
    for node in lab3.nodes:
        out = sh(lab3, node.name, "etcdctl get /coreos.com/network/config --print-value-only")
        assert json.loads(out) == {"Network": "10.108.0.0/16", "Backend": {"Type": "vxlan"}}


def test_flannel1_device_on_every_node(lab3):
    for node in lab3.nodes:
        env = node.subnet_env()
        subnet = ipaddress.IPv4Interface(env["FLANNEL_SUBNET"]).network
        link = sh(lab3, node.name, "ip -d link show flannel.1")
        assert re.search(rf"vxlan id 1 local {node.public_ip} dev eth0 .*dstport 8472 nolearning", link), link
        assert " mtu 1450 " in link
        addr = sh(lab3, node.name, "ip -4 -o addr show dev flannel.1")
        assert f"inet {subnet.network_address}/32 " in addr
        assert addr.count("inet ") == 1


def test_each_peer_has_arp_fdb_and_onlink_route(lab3):
    st = lab3.status().nodes
    for me in st:
        neigh = sh(lab3, me.name, "ip neigh show dev flannel.1")
        fdb = sh(lab3, me.name, "bridge fdb show dev flannel.1")
        routes = sh(lab3, me.name, "ip route")
        for peer in st:
            if peer is me:
                continue
            sn = ipaddress.IPv4Network(peer.subnet)
            assert f"{sn.network_address} lladdr {peer.vtep_mac} PERMANENT" in neigh
            assert f"{peer.vtep_mac} dst {peer.public_ip} self permanent" in fdb
            assert f"{sn} via {sn.network_address} dev flannel.1 onlink" in routes
        assert len(neigh.strip().splitlines()) == 2 and len(fdb.strip().splitlines()) == 2


def test_subnet_env_per_node(lab3):
    for node in lab3.nodes:
        text = sh(lab3, node.name, "cat /run/flannel/subnet.env")
        m = re.fullmatch(r"FLANNEL_NETWORK=10\.108\.0\.0/16\nFLANNEL_SUBNET=(10\.108\.\d+\.1)/24\n"
                         r"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n", text)
        assert m, text
        assert node.subnet_env()["FLANNEL_SUBNET"] == m.group(1) + "/24"
    files = {n.name: n.subnet_env()["FLANNEL_SUBNET"] for n in lab3.nodes}
    assert len(set(files.values())) == 3  # each node sees its own file


def test_docker0_and_containers(lab3):
    for node in lab3.status().nodes:
        sn = ipaddress.IPv4Network(node.subnet)
        assert node.docker0 == f"{sn.network_address + 1}/24"
        assert node.docker0_in_network and node.in_range
        (c,) = node.containers
        assert ipaddress.IPv4Address(c.ip) in sn
        route = sh(lab3, f"{node.name}/c1", "ip route")
        assert f"default via {sn.network_address + 1} dev eth0" in route
        assert "mtu 1450" in sh(lab3, f"{node.name}/c1", "ip link show eth0")


def test_every_container_pings_every_other(lab3):
    matrix = lab3.connectivity()
    assert len(matrix) == 6
    assert all(matrix.values()), matrix


def test_status_json_shape(lab3):
    r = labkit("status", "--name", lab3.spec.name, "--json", check=True)
    st = json.loads(r.stdout)
    assert [n["name"] for n in st["nodes"]] == ["master", "node1", "node2"]
    for n in st["nodes"]:
        assert n["namespace"] == f"{lab3.spec.name}-{n['name']}"
        assert set(n) >= {"name", "namespace", "public_ip", "subnet", "vtep_mac", "docker0", "containers"}
        assert [set(c) >= {"name", "ip"} for c in n["containers"]] == [True]


def test_status_svg_draws_the_running_lab(lab3, tmp_path):
    """`labkit status --svg FILE`: every address in the picture is the kernel's or the lease's
    (the veths are the ports docker0 has now), and the file is replaced whole."""
    path = tmp_path / "lab.svg"
    path.write_text("an older picture")
    r = labkit("status", "--name", lab3.spec.name, "--svg", str(path), check=True)
    assert r.stdout.splitlines()[-1].startswith(f"picture: {path} (topology of lab {lab3.spec.name}, 3 of 3")
    svg = path.read_text()
    assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    assert [p.name for p in tmp_path.iterdir()] == ["lab.svg"]
    assert svg.count('class="node"') == 3 and svg.count('class="container"') == 3
    for n in lab3.status().nodes:
        ports = sh(lab3, n.name, "ip -o link show master docker0").split()
        veths = [w.split("@")[0] for w in ports if w.startswith("veth")]
        assert len(veths) == 1 and f"{veths[0]} ↔ eth0" in svg
        assert f"lease {n.subnet}" in svg and f"docker0 {n.docker0} ✓" in svg and f"VtepMAC {n.vtep_mac}" in svg
    assert f"etcd {lab3.master.public_ip}:2379" in svg


def test_cli_ping_exec_check_logs(lab3):
    name = lab3.spec.name
    r = labkit("ping", "--name", name, "master/c1", "node2/c1", "-c", "1", check=True)
    assert "1 received" in r.stdout
    r = labkit("exec", "--name", name, "node1", "--", "cat", "/run/flannel/subnet.env", check=True)
    assert r.stdout.startswith("FLANNEL_NETWORK=10.108.0.0/16\n")
    r = labkit("check", "--name", name, check=True)
    assert "6 of 6 pairs reachable" in r.stdout
    r = labkit("logs", "--name", name, "node1", "flanneld", check=True)
    assert "Wrote subnet file to /run/flannel/subnet.env" in r.stdout
    r = labkit("ping", "--name", name, "master/c1", "8.8.8.8")
    assert r.returncode == 1 and "not an address of this lab" in r.stderr


def test_bench_json_is_json_alone_on_stdout():
    """`labkit bench ... --json` is read by programs: its standard output is the JSON alone,
    progress and the summary go to standard error."""
    name = unique_name("b")
    r = labkit("bench", "scale", "--sizes", "2", "--no-bringup", "--json", "--name", name, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert [x["nodes"] for x in res["results"]] == [2] and res["results"][0]["mesh"]["converged"]
    assert res["results"][0]["pings_passed"] == res["results"][0]["pings_tried"] == 2   # node to peer, overlay
    assert "2 nodes" in r.stderr
