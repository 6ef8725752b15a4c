"""Pure parts of the route backends, the routed-underlay spec and the convergence rules."""
import ipaddress

import pytest

from labkit.errors import LabError
from labkit.flannel.backends import get_backend
from labkit.flannel.backends.footprint import device_name, peers_handled
from labkit.flannel.backends.hostgw import NAT_REFUSAL, HostgwBackend
from labkit.flannel.backends.ipip import parse_backend_config as ipip_config
from labkit.flannel.backends.kernel import missing_link_type
from labkit.flannel.backends.route_network import RTNH_F_ONLINK, Route
from labkit.flannel.iface import ExternalInterface
from labkit.spec import LabSpec

N = ipaddress.IPv4Network
A = ipaddress.IPv4Address


def test_registry_knows_the_new_backends():
    assert get_backend("udp").__name__ == "UdpBackend"
    assert get_backend("host-gw").__name__ == "HostgwBackend"
    assert get_backend("ipip").__name__ == "IPIPBackend"
    assert get_backend("wireguard").__name__ == "WireguardBackend"


def test_route_prints_like_netlink_route():
    r = Route(dst=N("10.108.3.0/24"), gw=A("192.168.50.130"), link_index=2)
    assert str(r) == "{Ifindex: 2 Dst: 10.108.3.0/24 Src: <nil> Gw: 192.168.50.130 Flags: [] Table: 0 Realm: 0}"
    r2 = Route(dst=N("10.108.3.0/24"), gw=A("192.168.50.130"), link_index=7, flags=RTNH_F_ONLINK)
    assert "Flags: [onlink]" in str(r2)


def test_route_equality_is_flannels_route_equal():
    a = Route(dst=N("10.108.3.0/24"), gw=A("192.168.50.3"), link_index=2)
    assert a.equal(Route(dst=N("10.108.3.0/24"), gw=A("192.168.50.3"), link_index=2, flags=4, table=254))
    assert not a.equal(Route(dst=N("10.108.3.0/24"), gw=A("192.168.50.4"), link_index=2))
    assert not a.equal(Route(dst=N("10.108.3.0/24"), gw=A("192.168.50.3"), link_index=3))


def test_host_gw_refuses_a_nat():
    ext = ExternalInterface("eth0", 2, 1500, A("192.168.50.2"), A("203.0.113.9"))
    with pytest.raises(RuntimeError) as e:
        HostgwBackend(None, ext, None)
    assert str(e.value) == NAT_REFUSAL
    assert "not supported by host-gw backend" in NAT_REFUSAL


def test_ipip_config():
    assert ipip_config({"Type": "ipip"}) == {"DirectRouting": False}
    assert ipip_config({"directrouting": True}) == {"DirectRouting": True}


def test_device_per_backend():
    assert device_name("vxlan", 7) == "flannel.7" and device_name("udp") == "flannel0"
    assert device_name("host-gw") is None and device_name("ipip") == "flannel.ipip"


def test_missing_link_type_names_what_is_missing():
    msg = missing_link_type("ipip")
    assert "no ipip link type" in msg and "Unknown device type" in msg and "module" in msg


LOG = """I1 main.go] CLI flags config: {old run}
I1 udp_network_amd64.go] Subnet added: 10.108.9.0/24
I1 main.go] CLI flags config: {current run}
I1 udp_network_amd64.go] Subnet added: 10.108.1.0/24
I1 udp_network_amd64.go] Subnet added: 10.108.2.0/24
I1 udp_network_amd64.go] Subnet removed: 10.108.2.0/24
E1 route_network.go] Error adding route to {Ifindex: 2 Dst: 10.108.5.0/24 Src: <nil> Gw: 192.168.50.130 \
Flags: [] Table: 0 Realm: 0}: network is unreachable
"""


def test_peers_handled_reads_the_current_run_only():
    assert peers_handled("udp", LOG, set()) == {N("10.108.1.0/24")}
    routed = {N("10.108.1.0/24")}
    assert peers_handled("host-gw", LOG, routed) == {N("10.108.1.0/24"), N("10.108.5.0/24")}


def test_segments_split_the_underlay():
    spec = LabSpec(nodes=5, segments=2).validate()
    assert [spec.segment_of(i) for i in range(5)] == [0, 1, 0, 1, 0]   # dealt in turn
    assert [str(spec.node_interface(i)) for i in range(5)] == [
        "192.168.50.1/25", "192.168.50.129/25", "192.168.50.2/25", "192.168.50.130/25", "192.168.50.3/25"]
    # one more node changes nobody's address (Lab.add_node)
    bigger = LabSpec(nodes=6, segments=2).validate()
    assert [bigger.public_ip(i) for i in range(5)] == [spec.public_ip(i) for i in range(5)]
    assert str(spec.router_ip(0)) == "192.168.50.126" and str(spec.router_ip(1)) == "192.168.50.254"
    flat = LabSpec(nodes=3).validate()
    assert [str(flat.node_interface(i)) for i in range(3)] == ["192.168.50.1/24", "192.168.50.2/24",
                                                               "192.168.50.3/24"]


@pytest.mark.parametrize("fields,message", [
    ({"segments": 0}, "--segments must be between 1 and 4"),
    ({"segments": 5, "nodes": 8}, "--segments must be between 1 and 4"),
    ({"segments": 3, "nodes": 2}, "3 segments need at least 3 nodes"),
    ({"segments": 2, "nodes": 20, "underlay": "10.0.0.0/28"}, "has room for"),
])
def test_bad_segments_are_refused(fields, message):
    with pytest.raises(LabError) as e:
        LabSpec(**fields).validate()
    assert message in str(e.value)


def test_spec_with_segments_round_trips():
    spec = LabSpec(name="x", nodes=4, segments=2, backend="host-gw")
    assert LabSpec.from_dict(spec.to_dict()) == spec


def test_legacy_flavour_is_vxlan_and_udp_only():
    with pytest.raises(LabError) as e:
        LabSpec(flavour="legacy", backend="host-gw").validate()
    assert "vxlan and udp backends only" in str(e.value)


class _Link(dict):
    def __init__(self, index, mtu, kind="ipip", local=None):
        super().__init__(index=index)
        self.attrs = {"IFLA_MTU": mtu}
        self.kind, self.local = kind, local

    def get_attr(self, name):
        if name == "IFLA_LINKINFO":
            return None
        return self.attrs.get(name)


class FakeIPRoute:
    """Just enough of pyroute2's IPRoute for the ipip device steps, recording the calls."""

    def __init__(self, fail_add=None):
        self.fail_add = fail_add
        self.calls = []
        self.link_obj = _Link(7, 1480)

    def link(self, cmd, **kw):
        self.calls.append(("link", cmd, kw))
        if cmd == "add" and self.fail_add:
            raise self.fail_add
        if cmd == "get":
            return [self.link_obj]
        if cmd == "set" and "mtu" in kw:
            self.link_obj.attrs["IFLA_MTU"] = kw["mtu"]
        return []

    def get_addr(self, **kw):
        return []

    def addr(self, cmd, **kw):
        self.calls.append(("addr", cmd, kw))


class FakeSM:
    def acquire_lease(self, attrs):
        from labkit.flannel.subnet import Lease
        self.attrs = attrs
        return Lease(subnet=N("10.108.7.0/24"), attrs=attrs)


class _Config:
    backend = {"Type": "ipip"}
    network = N("10.108.0.0/16")


def test_ipip_device_steps_in_flannels_order():
    from labkit.flannel.backends.ipip import IPIPBackend
    ext = ExternalInterface("eth0", 2, 1500, A("192.168.50.2"), A("192.168.50.2"))
    ipr, sm = FakeIPRoute(), FakeSM()
    n = IPIPBackend(sm, ext, ipr).register_network(_Config())
    assert sm.attrs.to_json() == '{"PublicIP":"192.168.50.2","PublicIPv6":null,"BackendType":"ipip"}'
    assert ipr.calls[0] == ("link", "add", {"ifname": "flannel.ipip", "kind": "ipip",
                                            "ipip_local": "192.168.50.2"})
    assert ("link", "set", {"index": 7, "mtu": 1480}) not in ipr.calls     # 1480 is not above 1500-20
    assert ("addr", "add", {"index": 7, "address": "10.108.7.0", "prefixlen": 32}) in ipr.calls
    assert ipr.calls[-1] == ("link", "set", {"index": 7, "state": "up"})
    assert n.mtu() == 1480 and n.link_index == 7
    from labkit.flannel.subnet import Lease, LeaseAttrs
    peer = Lease(subnet=N("10.108.9.0/24"), attrs=LeaseAttrs(public_ip="192.168.50.3", backend_type="ipip"))
    assert str(n.get_route(peer)) == ("{Ifindex: 7 Dst: 10.108.9.0/24 Src: <nil> Gw: 192.168.50.3 "
                                      "Flags: [onlink] Table: 0 Realm: 0}")


def test_ipip_and_wireguard_name_the_missing_link_type():
    from pyroute2.netlink.exceptions import NetlinkError

    from labkit.flannel.backends.ipip import IPIPBackend
    from labkit.flannel.backends.wireguard import WireguardBackend
    ext = ExternalInterface("eth0", 2, 1500, A("192.168.50.2"), A("192.168.50.2"))
    with pytest.raises(RuntimeError) as e:
        IPIPBackend(FakeSM(), ext, FakeIPRoute(NetlinkError(95, "Operation not supported"))).register_network(
            _Config())
    assert str(e.value).startswith("failed to create flannel.ipip: this kernel has no ipip link type")
    assert str(e.value).endswith(": operation not supported")
    with pytest.raises(RuntimeError) as e:
        WireguardBackend(FakeSM(), ext, FakeIPRoute(NetlinkError(95, "Operation not supported"))) \
            .register_network(_Config())
    assert str(e.value).startswith("could not create wireguard interface: this kernel has no wireguard link type")
