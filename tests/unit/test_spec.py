"""LabSpec validation: every bad value is refused before anything is built."""
import pytest

from labkit.errors import LabError
from labkit.spec import LabSpec, check_container_name, check_lab_name, node_names


def test_defaults_are_the_blogs_network_and_a_valid_spec():
    spec = LabSpec().validate()
    assert spec.network_config() == {"Network": "10.108.0.0/16", "Backend": {"Type": "vxlan"}}
    assert spec.node_names == ["master", "node1"]
    assert str(spec.public_ip(0)) == "192.168.50.1" and str(spec.public_ip(2)) == "192.168.50.3"


def test_network_config_carries_every_option():
    spec = LabSpec(subnet_len=26, vni=7, port=4789, direct_routing=True)
    assert spec.network_config_json() == ('{"Network":"10.108.0.0/16","SubnetLen":26,"Backend":'
                                          '{"Type":"vxlan","VNI":7,"Port":4789,"DirectRouting":true}}')


@pytest.mark.parametrize("fields,message,field", [
    ({"network": "10.108.0.0/33"}, "invalid network config: invalid CIDR address: 10.108.0.0/33", "network"),
    ({"network": "nonsense"}, "invalid network config: invalid CIDR address: nonsense", "network"),
    ({"network": "fc00::/48"}, "invalid network config: invalid IPv4 CIDR format", "network"),
    ({"network": None}, "invalid network config", "network"),
    ({"subnet_len": 31}, "SubnetLen must be less than /31", "subnet_len"),
    ({"subnet_len": 17}, "network must be able to accommodate at least four subnets", "subnet_len"),
    ({"subnet_len": "24"}, "SubnetLen must be a whole number", "subnet_len"),
    ({"network": "10.0.0.0/29"}, "network is too small. Minimum useful network prefix is /28", "network"),
    ({"network": "0.0.0.0/0"}, "please define a correct Network parameter in the flannel config", "network"),
    ({"backend": "nope"}, "unknown backend type: nope", "backend"),
    ({"backend": "ipsec"}, "does not implement yet", "backend"),
    ({"nodes": 0}, "--nodes must be between 1 and 1000", "nodes"),
    ({"nodes": 1001}, "--nodes must be between 1 and 1000", "nodes"),
    ({"nodes": 10 ** 8}, "--nodes must be between 1 and 1000, got 100000000", "nodes"),
    ({"nodes": True}, "--nodes must be between", "nodes"),
    ({"nodes": 3, "segments": 5}, "--segments must be between 1 and 4", "segments"),
    ({"mtu": 100}, "underlay MTU", "mtu"),
    ({"vni": 10 ** 7}, "VNI must be between", "vni"),
    ({"port": 70000}, "port must be between", "port"),
    ({"containers": -1}, "--containers", "containers"),
    ({"prefix": "no-slash"}, "invalid etcd prefix", "prefix"),
    ({"prefix": "/a b"}, "invalid etcd prefix", "prefix"),
    ({"underlay": "192.168.50.1/24"},
     "invalid underlay '192.168.50.1/24': it has host bits set; the network is 192.168.50.0/24", "underlay"),
    ({"underlay": "192.168.50.0/abc"}, "invalid underlay '192.168.50.0/abc': write an IPv4 network", "underlay"),
    ({"underlay": "fd00::/64"}, "invalid underlay 'fd00::/64': the underlay is IPv4", "underlay"),
    ({"underlay": "192.168.50.0"}, "give the prefix length", "underlay"),
    ({"underlay": "192.168.50.0/30", "nodes": 3}, "underlay 192.168.50.0/30 has room for 2 nodes, 3 asked",
     "underlay"),
    ({"underlay": "127.1.0.0/24"}, "the lab refuses underlay 127.1.0.0/24 because it overlaps 127.0.0.0/8",
     "underlay"),
    ({"network": "192.168.50.0/23"}, "overlaps the underlay", "network"),
    ({"network": "127.0.0.0/8"}, "the lab refuses Network 127.0.0.0/8 because it overlaps 127.0.0.0/8 "
                                 "(loopback)", "network"),
    ({"network": "224.0.0.0/4"}, "the lab refuses Network 224.0.0.0/4 because it overlaps 224.0.0.0/4 "
                                 "(multicast)", "network"),
    ({"network": "0.0.0.0/1"}, "because it overlaps 127.0.0.0/8 (loopback)", "network"),
    ({"lease_ttl": 10, "renew_margin": 10}, "renew margin", "renew_margin"),
])
def test_invalid_specs_are_refused(fields, message, field):
    with pytest.raises(LabError) as e:
        LabSpec(name="bt1", **fields).validate()
    assert message in str(e.value)
    assert e.value.field == field


def test_network_with_host_bits_is_read_as_flannel_reads_it():
    """flannel's IP4Net goes through net.ParseCIDR, which drops the host bits."""
    spec = LabSpec(network="10.108.0.1/16").validate()
    assert spec.network == "10.108.0.0/16"
    assert spec.network_config()["Network"] == "10.108.0.0/16"


@pytest.mark.parametrize("network", ["240.1.0.0/16", "0.0.0.0/8", "169.254.0.0/16", "172.17.0.0/16",
                                     "255.255.0.0/16"])
def test_networks_linux_routes_are_accepted(network):
    """Tried with a real lab: these converge and ping (Linux routes class E and 0/8)."""
    assert LabSpec(network=network).validate().network == network


def test_default_underlay_widens_for_many_nodes():
    assert LabSpec().validate().underlay == "192.168.50.0/24"
    assert LabSpec(nodes=254).validate().underlay == "192.168.50.0/24"
    assert LabSpec(nodes=255).validate().underlay == "192.168.50.0/23"
    assert LabSpec(nodes=1000).validate().underlay == "192.168.48.0/22"
    assert LabSpec(nodes=300, segments=4).validate().underlay == "192.168.50.0/23"  # 4 x /25
    assert LabSpec(nodes=600, segments=4).validate().underlay == "192.168.48.0/22"  # 150 per segment
    spec = LabSpec(nodes=1000).validate()
    assert str(spec.public_ip(999)) == "192.168.51.232"
    with pytest.raises(LabError) as e:  # a given underlay is never changed
        LabSpec(nodes=300, underlay="192.168.50.0/24").validate()
    assert e.value.field == "underlay"


def test_node_names_are_built_once():
    spec = LabSpec(nodes=1000)
    names = spec.node_names
    assert spec.node_names is names and names[999] == "node999"
    spec.nodes = 3
    assert spec.node_names == ["master", "node1", "node2"]


def test_lab_error_field():
    e = LabError("bad", field="network")
    assert str(e) == "bad" and e.field == "network"
    assert LabError("bad").field is None


@pytest.mark.parametrize("name", ["", "Lab", "a-b", "1abc", "abcdefghijklm", "a/b", "a b", None])
def test_lab_names(name):
    with pytest.raises(LabError):
        check_lab_name(name)


def test_good_names():
    assert check_lab_name("lab") == "lab" and check_lab_name("a12345678901") == "a12345678901"
    assert check_container_name("c1") == "c1"
    with pytest.raises(LabError):
        check_container_name("-rf")
    assert node_names(3) == ["master", "node1", "node2"]


def test_spec_round_trips_through_dict():
    spec = LabSpec(name="x", nodes=5, seed=3)
    assert LabSpec.from_dict(spec.to_dict()) == spec
