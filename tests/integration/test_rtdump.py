"""labkit/rtdump.py (the convergence checks' netlink dumps) reads what `ip` and `bridge` read.

One namespace of a lab name nobody uses (`clean` of that name removes it in any case), with
a veth as the "underlay" device, hundreds of routes inside and outside a flannel Network (with and
without a gateway, in the main table and another), and a VXLAN device with PERMANENT and
other ARP entries, FDB entries with and without a remote VTEP, and onlink routes."""
import ipaddress
import json
import os
import random
import subprocess

import pytest

from labkit import netns, rtdump
from tests.helpers import unique_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")


UNDERLAY = ["link add d0 type veth peer name d1", "link set d1 up", "link set d0 up", "addr add 192.168.77.1/24 dev d0"]


@pytest.fixture()
def ns():
    from labkit.lab import clean
    name = unique_name("rtd")
    ns = f"{name}-master"
    netns.add(ns)
    try:
        yield ns
    finally:
        netns.delete(ns)
        clean(name)


def _batch(ns, cmd, lines):
    r = subprocess.run([cmd, "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n", text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_gateway_routes_are_the_main_tables_routes_into_the_network_with_a_gateway(ns):
    rng = random.Random(5)
    net = ipaddress.IPv4Network("10.108.0.0/16")
    _batch(ns, "ip", UNDERLAY)
    lines, expected = [], set()
    for _ in range(600):   # more than one recv() of dump messages
        plen = rng.choice([15, 16, 23, 24, 24, 25, 32])
        sn = ipaddress.IPv4Network(f"10.{rng.choice([107, 108, 109])}.{rng.randrange(256)}.0/{plen}", strict=False)
        gw, table = rng.random() < 0.7, rng.choice(["main", "main", "100"])
        lines.append(f"route replace {sn} {'via 192.168.77.2 ' if gw else ''}dev d0 table {table}")
    _batch(ns, "ip", lines)
    shown = json.loads(subprocess.run(["ip", "-n", ns, "-4", "-j", "route", "show", "table", "main"],
                                      capture_output=True, text=True, check=True).stdout)
    for r in shown:
        if r.get("gateway") and r["dst"] != "default":
            sn = ipaddress.IPv4Network(r["dst"] if "/" in r["dst"] else r["dst"] + "/32")
            if sn.subnet_of(net):
                expected.add((int(sn.network_address), sn.prefixlen))
    got = rtdump.gateway_routes(ns, int(net.network_address), net.prefixlen)
    assert got == expected
    assert 30 < len(got) < 600
    # every table, as `ip route show table all` (IPv4 only)
    every = subprocess.run(["ip", "-n", ns, "-4", "-j", "route", "show", "table", "all"],
                           capture_output=True, text=True, check=True).stdout
    assert len(rtdump.routes(ns)) == len(json.loads(every))


def test_vxlan_peers_counts_what_ip_and_bridge_show(ns):
    _batch(ns, "ip", UNDERLAY + [
                      "link add flannel.7 type vxlan id 7 dev d0 local 192.168.77.1 dstport 8472 nolearning",
                      "link set flannel.7 up", "addr add 10.108.1.0/32 dev flannel.7",
                      "link add other type bridge", "link set d1 master other", "link set other up"])
    ip_lines, fdb_lines = [], []
    for k in range(2, 40):
        mac = f"02:00:00:00:01:{k:02x}"
        if k % 5:   # what flanneld adds per peer
            ip_lines += [f"neigh replace 10.108.{k}.0 lladdr {mac} dev flannel.7 nud permanent",
                         f"route replace 10.108.{k}.0/24 via 10.108.{k}.0 dev flannel.7 onlink"]
            fdb_lines.append(f"fdb replace {mac} dev flannel.7 dst 192.168.77.{k} self permanent")
        else:       # entries the count must leave out
            ip_lines.append(f"neigh replace 10.108.{k}.9 lladdr {mac} dev flannel.7 nud reachable")
            fdb_lines.append(f"fdb replace {mac} dev d1 master static")   # another device
            ip_lines.append(f"route replace 10.108.{k}.0/24 dev flannel.7")
    _batch(ns, "ip", ip_lines)
    _batch(ns, "bridge", fdb_lines)

    def out(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    want = {"routes": sum(" via " in x for x in out("ip", "-n", ns, "route", "show", "dev", "flannel.7")),
            "arp": sum(" lladdr " in x for x in out("ip", "-n", ns, "neigh", "show", "dev", "flannel.7",
                                                       "nud", "permanent")),
            "fdb": sum(" dst " in x for x in out("bridge", "-n", ns, "fdb", "show", "dev", "flannel.7"))}
    assert want == {"routes": 31, "arp": 31, "fdb": 31}
    assert rtdump.vxlan_peers(ns, "flannel.7") == want
    assert rtdump.vxlan_peers(ns, "flannel.8") == {"routes": 0, "arp": 0, "fdb": 0}


def test_a_missing_namespace_is_an_error_not_a_new_namespace():
    from labkit.errors import LabError
    name = unique_name("rtd") + "-master"
    with pytest.raises(LabError, match="does not exist"):
        rtdump.routes(name)
    assert not netns.exists(name)
