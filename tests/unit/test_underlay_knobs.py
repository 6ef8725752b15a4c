"""The underlay knobs of LabSpec: each bad value is one line naming its field."""
import pytest

from labkit.errors import LabError
from labkit.spec import LabSpec, parse_node_values


@pytest.mark.parametrize("fields,message,field", [
    ({"node_mtu": {"node7": 1400}}, "--node-mtu: no node 'node7'", "node_mtu"),
    ({"node_mtu": {"node1": 100}}, "--node-mtu: node1's MTU must be between 576 and 9000", "node_mtu"),
    ({"node_mtu": {"node1": "1400"}}, "must be between 576 and 9000", "node_mtu"),
    ({"node_mtu": ["node1"]}, "--node-mtu must map node names to MTUs", "node_mtu"),
    ({"router_mtu": 1400}, "--router-mtu needs a router", "router_mtu"),
    ({"router_mtu": 10, "segments": 2}, "--router-mtu must be between 576 and 9000", "router_mtu"),
    ({"router_drop_icmp": True}, "--router-drop-icmp needs a router", "router_drop_icmp"),
    ({"router_drop_icmp": "yes", "segments": 2}, "router_drop_icmp must be true or false", "router_drop_icmp"),
    ({"nics": 3}, "--nics must be 1 or 2, got 3", "nics"),
    ({"iface": "eth1; reboot"}, "invalid --iface", "iface"),
    ({"iface": "x" * 16}, "invalid --iface", "iface"),
    ({"nat": ["master"]}, "--nat: the master stays on the underlay", "nat"),
    ({"nat": ["node5"]}, "--nat: no node 'node5'", "nat"),
    ({"nat": ["node1", "node1"]}, "--nat: a node is named twice", "nat"),
    ({"nat": "node1"}, "--nat must be a list of node names", "nat"),
    ({"nat_public_ip": True}, "--nat-public-ip needs a node behind a NAT", "nat_public_ip"),
    ({"nics": 2, "outside": True}, "cannot be combined with --nat or --outside", "nics"),
    ({"nics": 2, "network": "10.0.0.0/8"}, "overlaps the addresses of --nics 2", "network"),
    ({"nat": ["node1"], "network": "100.64.0.0/16"}, "overlaps the addresses of --nat", "network"),
    ({"outside": True, "underlay": "203.0.113.0/24"}, "overlaps the addresses of --outside", "underlay"),
    ({"outside": 1}, "outside must be true or false", "outside"),
    ({"outside": True, "nodes": 254}, "room for 253 nodes and the router", "underlay"),
])
def test_bad_knobs_are_one_line_with_their_field(fields, message, field):
    spec = LabSpec(name="h2u", **fields)
    if "nodes" in fields and "underlay" not in fields:
        spec.underlay = "192.168.50.0/24"
    with pytest.raises(LabError) as e:
        spec.validate()
    assert message in str(e.value) and "\n" not in str(e.value)
    assert e.value.field == field


def test_good_knobs_validate_and_shape_flanneld_flags():
    spec = LabSpec(nodes=3, nics=2).validate()
    assert spec.uplink_ifname() == "eth1"
    assert spec.flanneld_options("node1") == []                       # flannel's default: the default route's
    assert LabSpec(nodes=3, nics=2, iface="eth1").validate().flanneld_options("node1") == ["-iface=eth1"]
    assert LabSpec().validate().flanneld_options("master") == ["-iface=eth0"]   # unchanged default
    nat = LabSpec(nodes=3, nat=["node2"], nat_public_ip=True, ip_masq=True).validate()
    assert nat.flanneld_options("node2") == ["-iface=eth0", "-public-ip=192.168.50.3", "-ip-masq"]
    assert nat.flanneld_options("node1") == ["-iface=eth0", "-ip-masq"]
    assert [str(a) for a in nat.nat_private(2)] == ["100.64.2.2/24", "100.64.2.1"]
    spec = LabSpec(nodes=2, segments=2, router_mtu=1400, router_drop_icmp=True,
                   node_mtu={"node1": 1400}).validate()
    assert spec.link_mtu("node1") == 1400 and spec.link_mtu("master") == 1500
    assert LabSpec(outside=True).validate().has_router


def test_outside_keeps_a_router_address_free_in_the_default_underlay():
    assert LabSpec(nodes=254, outside=True).validate().underlay == "192.168.50.0/23"
    assert LabSpec(nodes=254).validate().underlay == "192.168.50.0/24"


def test_node_values_from_the_command_line():
    assert parse_node_values(["node1=1400", "master=9000"], "--node-mtu") == {"node1": 1400, "master": 9000}
    assert parse_node_values(None, "--node-mtu") == {}
    for bad in ("node1", "node1=big", "=1400x"):
        with pytest.raises(LabError) as e:
            parse_node_values([bad], "--node-mtu")
        assert "--node-mtu takes NODE=NUMBER" in str(e.value) and e.value.field == "node_mtu"


def test_knobs_survive_the_state_folder_round_trip():
    spec = LabSpec(nodes=3, nat=["node1"], node_mtu={"node2": 1400}, outside=True, ip_masq=True)
    assert LabSpec.from_dict(spec.to_dict()) == spec


def test_kernel_release_parsing():
    from labkit.underlay import kernel_release
    assert kernel_release("6.1.0-18-amd64") == (6, 1)
    assert kernel_release("5.3.0") == (5, 3) and kernel_release("4.19.0-25") < (5, 3)
    assert kernel_release("6.18.44-fc-v782") == (6, 18) and kernel_release("5.10rc1") == (5, 10)
    assert kernel_release("garbage") == (0, 0)
