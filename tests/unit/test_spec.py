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


@pytest.mark.parametrize("fields,message", [
    ({"network": "10.108.0.0/33"}, "invalid network config"),
    ({"network": "nonsense"}, "invalid network config"),
    ({"subnet_len": 31}, "SubnetLen must be less than /31"),
    ({"subnet_len": 17}, "network must be able to accommodate at least four subnets"),
    ({"network": "10.0.0.0/29"}, "network is too small. Minimum useful network prefix is /28"),
    ({"backend": "nope"}, "unknown backend type: nope"),
    ({"backend": "ipsec"}, "does not implement yet"),
    ({"nodes": 0}, "--nodes must be between"),
    ({"nodes": 251}, "--nodes must be between"),
    ({"mtu": 100}, "underlay MTU"),
    ({"vni": 10 ** 7}, "VNI must be between"),
    ({"port": 70000}, "port must be between"),
    ({"containers": -1}, "--containers"),
    ({"prefix": "no-slash"}, "invalid etcd prefix"),
    ({"prefix": "/a b"}, "invalid etcd prefix"),
    ({"underlay": "192.168.50.1/24"}, "invalid underlay CIDR"),
    ({"network": "192.168.50.0/23"}, "overlaps the underlay"),
    ({"lease_ttl": 10, "renew_margin": 10}, "renew margin"),
])
def test_invalid_specs_are_refused(fields, message):
    with pytest.raises(LabError) as e:
        LabSpec(**fields).validate()
    assert message in str(e.value)


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
