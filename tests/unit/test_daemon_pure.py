"""Pure parts of our flanneld: Go-style flags, durations, device comparison, backend config."""
import pytest

from labkit.flannel.backends import UnknownBackend, get_backend
from labkit.flannel.backends.vxlan.device import links_incompat, new_hardware_addr
from labkit.flannel.backends.vxlan.vxlan import parse_backend_config
from labkit.flannel.daemon import FlagError, go_duration, parse_flags


def test_flags_accept_go_syntax_and_environment():
    o = parse_flags(["-etcd-endpoints=http://1.2.3.4:2379", "--etcd-prefix", "/flannel/network",
                     "-ip-masq", "-iface", "eth0", "-iface=eth1", "-subnet-lease-renew-margin=30"],
                    environ={"FLANNELD_PUBLIC_IP": "9.9.9.9"})
    assert o["etcd-endpoints"] == "http://1.2.3.4:2379" and o["etcd-prefix"] == "/flannel/network"
    assert o["ip-masq"] is True and o["iface"] == ["eth0", "eth1"]
    assert o["subnet-lease-renew-margin"] == 30 and o["public-ip"] == "9.9.9.9"
    defaults = parse_flags([], environ={})
    assert defaults["etcd-prefix"] == "/coreos.com/network"
    assert defaults["subnet-file"] == "/run/flannel/subnet.env"
    assert defaults["etcd-endpoints"] == "http://127.0.0.1:4001,http://127.0.0.1:2379"
    assert defaults["iptables-forward-rules"] is True and defaults["ip-masq"] is False


@pytest.mark.parametrize("argv,message", [
    (["-nope"], "flag provided but not defined: -nope"),
    (["-etcd-prefix"], "flag needs an argument: -etcd-prefix"),
    (["-ip-masq=maybe"], 'invalid boolean value "maybe" for -ip-masq'),
    (["-subnet-lease-renew-margin=x"], 'invalid value "x" for flag -subnet-lease-renew-margin'),
])
def test_bad_flags(argv, message):
    with pytest.raises(FlagError) as e:
        parse_flags(argv, environ={})
    assert message in str(e.value)


def test_go_duration():
    assert go_duration(23 * 3600) == "23h0m0s"
    assert go_duration(90) == "1m30s"
    assert go_duration(4.5) == "4.5s"
    assert go_duration(0.25) == "250ms"


BASE = {"type": "vxlan", "vni": 1, "vtep_index": 2, "src_addr": "192.168.50.2", "group": None,
        "l2miss": False, "port": 0, "gbp": False}


@pytest.mark.parametrize("have,expected", [
    ({}, ""),
    ({"port": 8472}, ""),                       # our Port 0 = "not set": not compared
    ({"vtep_index": 0}, ""),                    # unset on one side: not compared
    ({"type": "bridge"}, "link type: vxlan vs bridge"),
    ({"vni": 2}, "vni: 1 vs 2"),
    ({"vtep_index": 5}, "vtep (external) interface: 2 vs 5"),
    ({"src_addr": "192.168.50.9"}, "vtep (external) IP: 192.168.50.2 vs 192.168.50.9"),
    ({"l2miss": True}, "l2miss: false vs true"),
    ({"gbp": True}, "gbp: false vs true"),
])
def test_links_incompat(have, expected):
    assert links_incompat(BASE, {**BASE, **have}) == expected


def test_port_compared_only_when_both_set():
    assert links_incompat({**BASE, "port": 4789}, {**BASE, "port": 8472}) == "port: 4789 vs 8472"


def test_random_mac_is_local_unicast():
    for _ in range(50):
        first = int(new_hardware_addr().split(":")[0], 16)
        assert first & 0x02 and not first & 0x01


def test_vxlan_backend_config_defaults_and_case():
    assert parse_backend_config({"Type": "vxlan"}, 1500) == {
        "VNI": 1, "Port": 0, "GBP": False, "Learning": False, "DirectRouting": False, "MTU": 1500}
    cfg = parse_backend_config({"type": "vxlan", "vni": 42, "directrouting": True}, 9000)
    assert cfg["VNI"] == 42 and cfg["DirectRouting"] is True and cfg["MTU"] == 9000
    with pytest.raises(ValueError):
        parse_backend_config({"VNI": "one"}, 1500)


def test_backend_registry():
    assert get_backend("vxlan").__name__ == "VXLANBackend"
    with pytest.raises(UnknownBackend) as e:
        get_backend("carrier-pigeon")
    assert str(e.value) == "unknown backend type: carrier-pigeon"
    with pytest.raises(UnknownBackend) as e:
        get_backend("ipsec")
    assert "does not implement" in str(e.value)
