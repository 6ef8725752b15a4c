"""The topology picture (labkit/pictures/topology.py), drawn from synthetic LabStatus objects:
what it draws, how it summarises a big lab, that it is stable between runs, and the SVG file."""
import os
import re
import stat
import xml.etree.ElementTree as ET

import pytest

from labkit.errors import LabError
from labkit.pictures import Topology, topology
from labkit.pictures.svgfile import check_svg_path, write_svg
from labkit.status import ContainerStatus, LabStatus, NodeStatus, SegmentStatus

SVG = "{http://www.w3.org/2000/svg}"


def lab_status(nodes=3, containers=1, backend="vxlan", segments=1, name="nbt", bad=(), no_device=(),
               etcd_error=None):
    """A LabStatus as lab_status() returns it, for `nodes` nodes; `bad` nodes have docker0
    outside their lease (the blog's first problem), `no_device` nodes have lost flannel.1."""
    names = ["master"] + [f"node{i}" for i in range(1, nodes)]
    out = []
    for i, node in enumerate(names):
        third = 10 + i % 240
        subnet, ip = f"10.108.{third}.0/24", f"192.168.50.{i + 1}"
        device = None
        if backend == "vxlan" and node not in no_device:
            device = {"name": "flannel.1", "mtu": 1450, "mac": f"0a:00:00:00:{i // 256:02x}:{i % 256:02x}",
                      "addresses": [f"10.108.{third}.0/32"], "vni": 1, "port": 8472, "local": ip,
                      "learning": False}
        elif backend == "udp":
            device = {"name": "flannel0", "mtu": 1472, "mac": None, "addresses": [f"10.108.{third}.0/32"],
                      "vni": None, "port": None, "local": None, "learning": None}
        peers = nodes - 1
        routes = [{"dst": f"10.108.{10 + j % 240}.0/24", "via": f"10.108.{10 + j % 240}.0", "dev": "flannel.1",
                   "onlink": True} for j in range(nodes) if j != i]
        routes.append({"dst": subnet, "via": None, "dev": "docker0", "onlink": False})
        docker0 = "172.17.0.1/16" if node in bad else f"10.108.{third}.1/24"
        out.append(NodeStatus(
            name=node, namespace=f"{name}-{node}", public_ip=ip, subnet=subnet,
            vtep_mac=device["mac"] if device else None, lease={"BackendType": backend}, docker0=docker0,
            docker0_in_network=node not in bad, in_range=node not in bad,
            services={"flanneld": "active", "docker": "active"}, subnet_env={},
            containers=[ContainerStatus(f"c{k + 1}", f"10.108.{third}.{k + 2}", True, f"veth{i:04x}{k:03x}")
                        for k in range(containers)],
            kernel={"device": device, "arp": [{}] * peers if device else [], "fdb": [{}] * peers if device else [],
                    "routes": routes, "docker0": [docker0]},
            segment=i % segments, uplink={"name": "eth0", "addresses": [f"{ip}/24"], "mtu": 1500, "up": True}))
    segs = [SegmentStatus(s, "192.168.50.0/24" if segments == 1 else f"192.168.50.{128 * s}/25", f"br{s}",
                          f"192.168.50.{126 + 128 * s}/25" if segments > 1 else None) for s in range(segments)]
    return LabStatus(name=name, network="10.108.0.0/16", backend=backend, prefix="/coreos.com/network", nodes=out,
                     etcd_error=etcd_error, underlay="192.168.50.0/24", segments=segs,
                     router=f"{name}-router" if segments > 1 else None, etcd="192.168.50.1:2379")


def parse(pic: Topology) -> ET.Element:
    return ET.fromstring(pic.svg().split("?>", 1)[-1])


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


def texts(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter(f"{SVG}text")]


def test_three_nodes_every_element_and_label():
    st = lab_status(3, containers=2)
    root = parse(topology(st))
    assert len(groups(root, "node")) == 3 and len(groups(root, "container")) == 6
    assert len(groups(root, "switch")) == 1 and not groups(root, "router") and not groups(root, "summary")
    words = "\n".join(texts(root))
    for n in st.nodes:
        assert n.name in words and f"lease {n.subnet}" in words and f"docker0 {n.docker0} ✓" in words
        assert f"flannel.1 {n.kernel['device']['addresses'][0]}" in words and f"VtepMAC {n.vtep_mac}" in words
        assert f"eth0 {n.public_ip}/24" in words and "ARP 2 · FDB 2 · routes 2" in words
        for c in n.containers:
            assert f"{c.name} {c.ip}" in words and f"{c.veth} ↔ eth0" in words
    assert words.count("etcd :2379") == 1                   # on the master only
    assert "switch · bridge br0 · 192.168.50.0/24" in words and "Network 10.108.0.0/16" in words
    assert "VXLAN in UDP 8472" in words
    assert root.find(f"{SVG}title").text == "topology of lab nbt"


def test_what_is_wrong_is_drawn_red():
    st = lab_status(3, bad={"node1"}, no_device={"node2"})
    root = parse(topology(st))
    red = {t.text for t in root.iter(f"{SVG}text") if t.get("fill") == "#c62828"}
    assert "docker0 172.17.0.1/16 ✗ not in lease" in red and "flannel.1 missing" in red
    st = lab_status(2)
    st.nodes[1].kernel["device"]["up"] = False              # ip link set flannel.1 down
    assert "flannel.1 10.108.11.0/32 DOWN" in texts(parse(topology(st)))
    st = lab_status(2, etcd_error="etcd is not reachable (Connection refused)")
    st.nodes[1].subnet = None
    words = texts(parse(topology(st)))
    assert "lease ? (etcd down)" in words and "etcd :2379 down" in words


@pytest.mark.parametrize("backend, device_line", [("host-gw", "no device: peers via eth0"),
                                                  ("udp", "flannel0 10.108.11.0/32")])
def test_other_backends_show_their_own_device(backend, device_line):
    words = texts(parse(topology(lab_status(2, backend=backend))))
    assert device_line in words and not any("flannel.1" in w for w in words)


def test_a_routed_underlay_has_a_router_with_a_leg_on_each_segment():
    root = parse(topology(lab_status(4, segments=2)))
    assert len(groups(root, "switch")) == 2 and len(groups(root, "router")) == 1
    words = texts(root)
    assert "segment 2 · switch · bridge br1 · 192.168.50.128/25" in words
    assert {"192.168.50.126/25", "192.168.50.254/25"} <= set(words)
    assert any("switch → router → switch" in w for w in words)


def test_ten_nodes_are_all_drawn_in_rows_of_four():
    pic = topology(lab_status(10))
    root = parse(pic)
    assert len(groups(root, "node")) == 10 and not groups(root, "summary")
    cards = [g.find(f"{SVG}rect") for g in groups(root, "node")]
    assert len({c.get("y") for c in cards}) == 3                     # 4 + 4 + 2
    assert pic.drawing.width <= 1400                                   # fits a notebook, scaled a little


def test_a_hundred_nodes_are_summarised_and_the_odd_one_drawn():
    pic = topology(lab_status(100, bad={"node57"}))
    root = parse(pic)
    nodes = groups(root, "node")
    assert [texts(g)[0] for g in nodes] == ["master", "node1", "node57"]
    (summary,) = groups(root, "summary")
    words = texts(summary)
    assert words[0] == "97 more nodes" and words[1] == "node2 … node99 but node57"
    assert "leases 97 of 97" in words and "docker0 in lease on 97 of 97" in words
    assert pic.drawing.width <= 1400 and pic.drawing.height <= 600   # one screen, not a poster
    assert repr(pic) == ("Topology(lab nbt: 100 nodes, 3 drawn, Network 10.108.0.0/16, vxlan, "
                         "underlay 192.168.50.0/24)")
    # with nothing wrong, the last node is drawn; summaries name what looks wrong
    assert [texts(g)[0] for g in groups(parse(topology(lab_status(100))), "node")][-1] == "node99"
    st = lab_status(100, bad={"node57"})
    st.nodes[57].in_range = True            # node57 fine now, five others not: the first is drawn
    for i in (60, 61, 62, 63, 64):
        st.nodes[i].services["flanneld"] = "failed"
    words = texts(groups(parse(topology(st)), "summary")[0])
    assert "✗ node61: flanneld failed" in words and "✗ and 1 more" in words


def test_the_picture_does_not_depend_on_the_labs_name():
    """A test run's labs are called nb01x1a2b3; nbval compares the picture with `nb01`'s."""
    a, b = topology(lab_status(3, name="nb01")).svg(), topology(lab_status(3, name="nb01x1a2b3")).svg()
    assert a == b.replace("nb01x1a2b3", "nb01")
    assert a == topology(lab_status(3, name="nb01")).svg()             # and no random ids
    pic = topology(lab_status(3))
    assert pic._repr_svg_() == pic.svg() and not re.search(r'id="[a-zA-Z]{8}', pic.svg())


# -- the file --------------------------------------------------------------------------------------
def test_svg_file_names_are_checked(tmp_path):
    fifo = tmp_path / "pipe.svg"
    os.mkfifo(fifo)
    for bad, why in [(str(tmp_path), "it is a directory"), (str(tmp_path / "x.png"), "must end in .svg"),
                     (str(tmp_path / "no" / "x.svg"), "does not exist"), ("", "invalid file name '' for the picture"),
                     ("a\0.svg", "invalid file name"), (str(fifo), "not a regular file"),
                     (str(tmp_path / "x.svg") + "/", "it is a directory")]:
        with pytest.raises(LabError, match=why):
            check_svg_path(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.svg"]   # nothing written


def test_svg_file_is_replaced_whole(tmp_path):
    path = tmp_path / "lab.svg"
    path.write_text("old")
    os.chmod(path, 0o600)
    pic = topology(lab_status(2))
    assert pic.save(str(path)) == str(path)
    assert path.read_text() == pic.svg() and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.svg"]    # no temporary file left
    with pytest.raises(LabError, match="must end in .svg"):
        write_svg(str(tmp_path / "lab.txt"), "x")


def test_cli_refuses_a_bad_file_name_before_reading_the_lab(tmp_path, capsys):
    from labkit.cli import main
    assert main(["status", "--name", "nosuchlab", "--svg", str(tmp_path / "missing" / "x.svg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("labkit: error: cannot write the picture") and "does not exist" in err
    assert err.count("\n") == 1


def test_the_topology_sits_below_the_cli_and_the_notebook_layer():
    """Both the CLI and the notebooks draw the topology: it reads a LabStatus and imports
    nothing from above it (no Lab, no CLI, no notebook layer, no namespaces)."""
    from tests.unit.test_widgets import imports_of
    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "labkit" / "pictures"
    for path in (root / "topology.py", root / "svgfile.py"):
        above = {m for m in imports_of(path) if m.split(".")[-1] in ("lab", "cli", "notebook", "jupyter", "widgets",
                                                                     "magics", "netns", "scenario")}
        assert not above, (path.name, above)
