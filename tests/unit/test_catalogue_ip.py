"""The backend catalogue (flannel/backends/catalogue.py), flannel's pkg/ip helpers
(flannel/ip.py) and the kernel probe's namespace names."""
import errno
import ipaddress

import pytest

from labkit.errors import LabError
from labkit.flannel import ip
from labkit.flannel.backends import REGISTRY, catalogue, kernel
from labkit.flannel.config import KNOWN_BACKENDS
from labkit.spec import KERNEL_LINK_TYPES, SUPPORTED_BACKENDS, LabSpec

N = ipaddress.IPv4Network


# -- catalogue --------------------------------------------------------------------------------
def test_one_table_feeds_config_spec_and_flanneld():
    assert KNOWN_BACKENDS is catalogue.KNOWN_BACKENDS
    assert SUPPORTED_BACKENDS == ("vxlan", "udp", "host-gw", "ipip")
    assert KERNEL_LINK_TYPES == {"ipip": "ipip", "wireguard": "wireguard"}
    # flanneld runs every supported backend, and wireguard (which refuses)
    assert set(REGISTRY) == set(SUPPORTED_BACKENDS) | {"wireguard"}


@pytest.mark.parametrize("backend,vni,device,overhead", [
    ("vxlan", 7, "flannel.7", 50), ("vxlan", None, "flannel.1", 50), ("udp", None, "flannel0", 28),
    ("host-gw", None, None, 0), ("ipip", None, "flannel.ipip", 20), ("wireguard", None, "flannel-wg", 80),
])
def test_device_and_overhead_per_backend(backend, vni, device, overhead):
    assert catalogue.device_name(backend, vni) == device
    assert catalogue.encap_overhead(backend) == overhead
    if device:
        assert catalogue.FLANNEL_DEVICE_RE.match(device)


def test_flannel_device_pattern_leaves_other_devices_alone():
    for name in ("flannel0", "flannel.1", "flannel.ipip", "flannel-wg", "flannel-wg-v6"):
        assert catalogue.FLANNEL_DEVICE_RE.match(name), name
    for name in ("eth0", "docker0", "flannelx", "flannel.", "vethab12"):
        assert not catalogue.FLANNEL_DEVICE_RE.match(name), name


def test_one_wording_for_a_backend_the_lab_cannot_run(monkeypatch):
    monkeypatch.setattr(catalogue, "link_kind_available", lambda kind: kind != "ipip")
    choices = {c.name: c for c in catalogue.backend_choices()}
    assert list(choices)[:4] == list(SUPPORTED_BACKENDS)
    assert set(choices) == set(KNOWN_BACKENDS)
    assert choices["vxlan"].usable and choices["vxlan"].why == ""
    ipip = choices["ipip"]
    assert not ipip.usable and ipip.why.startswith("ipip cannot run here: this kernel has no ipip link type")
    assert "does not fall back" in ipip.why and "use vxlan, udp, host-gw" in ipip.why
    assert choices["ipsec"].why == ("ipsec is a flannel backend labkit does not implement yet "
                                    "(supported: vxlan, udp, host-gw, ipip)")
    name, usable, why = choices["ipsec"]          # still unpacks as a tuple
    assert (name, usable) == ("ipsec", False)
    assert catalogue.unavailable_reason("Foo") == "unknown backend type: foo"
    # the data-only check never probes
    assert catalogue.unavailable_reason("ipip", kernel=False) == ""


def test_spec_validate_is_data_only_and_check_kernel_probes(monkeypatch):
    probed = []
    monkeypatch.setattr(catalogue, "link_kind_available", lambda kind: probed.append(kind) or False)
    spec = LabSpec(backend="ipip")
    assert spec.validate() is spec and probed == []
    with pytest.raises(LabError) as e:
        spec.check_kernel()
    assert probed == ["ipip"]
    assert str(e.value).startswith("backend ipip cannot run here: this kernel has no ipip link type")
    with pytest.raises(LabError) as e:          # named before "not implemented"
        LabSpec(backend="wireguard").check_kernel()
    assert "no wireguard link type" in str(e.value) and "fall back" in str(e.value)
    assert LabSpec(backend="vxlan").check_kernel() is not None and probed == ["ipip", "wireguard"]
    with pytest.raises(LabError) as e:
        LabSpec(backend="ipsec").validate()
    assert str(e.value) == ("backend ipsec is a flannel backend labkit does not implement yet "
                            "(supported: vxlan, udp, host-gw, ipip)")


# -- the kernel probe's namespace ---------------------------------------------------------
def test_dead_probes_are_found_by_pid():
    assert kernel.probe_namespace(4242) == "labkit_probe_4242"
    assert kernel.probe_owner("labkit_probe_4242") == 4242
    assert kernel.probe_owner("lab-node1") is None and kernel.probe_owner("labkit_probe_x") is None
    names = ["lab-master", "labkit_probe_11", "labkit_probe_22", "labkit_probe_"]
    assert kernel.dead_probes(names, alive=lambda pid: pid == 22) == ["labkit_probe_11"]
    import os
    assert kernel.dead_probes([kernel.probe_namespace(os.getpid())]) == []   # we are alive


# -- pkg/ip -----------------------------------------------------------------------------------
class _Msg(dict):
    def __init__(self, attrs, **fields):
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name):
        return self.attrs.get(name)


class FakeIPR:
    def __init__(self, routes=(), addrs=(), route_get=()):
        self.routes, self.addrs, self.route_get, self.calls = list(routes), list(addrs), list(route_get), []

    def get_routes(self, family):
        assert family == ip.AF_INET
        return self.routes

    def get_addr(self, family, index):
        return self.addrs

    def addr(self, cmd, **kw):
        self.calls.append((cmd, kw))

    def route(self, cmd, **kw):
        assert cmd == "get"
        return self.route_get


def _route(dst, plen, gw=None, oif=2, table=254):
    return _Msg({"RTA_DST": dst, "RTA_GATEWAY": gw, "RTA_OIF": oif, "RTA_TABLE": table},
                dst_len=plen, table=table, flags=0)


def test_main_routes_and_routes_into_the_network():
    ipr = FakeIPR(routes=[_route(None, 0, "192.168.50.254"), _route("10.108.3.0", 24, "192.168.50.3"),
                          _route("10.108.0.0", 16, oif=5), _route("10.108.4.0", 24, table=255),
                          _route("192.168.50.0", 24)])
    assert [str(r.dst) for r in ip.main_routes(ipr)] == ["None", "10.108.3.0/24", "10.108.0.0/16",
                                                          "192.168.50.0/24"]
    assert [r.gw for r in ip.main_routes(ipr, N("10.108.3.0/24"))] == [ipaddress.IPv4Address("192.168.50.3")]
    assert [str(r.dst) for r in ip.routes_into(ipr, "10.108.0.0/16")] == ["10.108.3.0/24", "10.108.0.0/16"]


def test_direct_routing_is_one_route_without_gateway():
    assert ip.direct_routing(FakeIPR(route_get=[_Msg({"RTA_GATEWAY": None})]), "192.168.50.3")
    assert not ip.direct_routing(FakeIPR(route_get=[_Msg({"RTA_GATEWAY": "192.168.50.254"})]), "10.0.0.1")
    assert not ip.direct_routing(FakeIPR(route_get=[_Msg({}), _Msg({})]), "192.168.50.3")


def test_ensure_v4_address_on_link_removes_only_addresses_inside_the_network():
    addrs = [_Msg({"IFA_ADDRESS": "10.5.7.0"}, prefixlen=32), _Msg({"IFA_ADDRESS": "172.16.0.1"}, prefixlen=32)]
    ipr, removed = FakeIPR(addrs=addrs), []
    ip.ensure_v4_address_on_link(ipr, 7, ipaddress.IPv4Interface("10.5.9.0/32"), N("10.5.0.0/16"),
                                 on_remove=removed.append)
    assert ipr.calls == [("del", {"index": 7, "address": "10.5.7.0", "prefixlen": 32}),
                         ("add", {"index": 7, "address": "10.5.9.0", "prefixlen": 32})]
    assert [str(a) for a in removed] == ["10.5.7.0/32"]
    ipr = FakeIPR(addrs=[_Msg({"IFA_ADDRESS": "10.5.9.0"}, prefixlen=32)])
    ip.ensure_v4_address_on_link(ipr, 7, ipaddress.IPv4Interface("10.5.9.0/32"), N("10.5.0.0/16"))
    assert ipr.calls == []          # already there: nothing to do


def test_go_strerror_prints_like_go():
    from pyroute2.netlink.exceptions import NetlinkError
    assert ip.go_strerror(NetlinkError(errno.ENETUNREACH, "x")) == "network is unreachable"
    assert ip.go_strerror(OSError(errno.EEXIST, "File exists")) == "file exists"
    assert ip.go_strerror(RuntimeError("plain")) == "plain"
    assert ip.errno_of(NetlinkError(95, "x")) == ip.EOPNOTSUPP == 95


def test_no_backend_imports_the_daemon():
    import pathlib
    root = pathlib.Path(catalogue.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "daemon import" not in text and "import daemon" not in text, path


# -- container records ------------------------------------------------------------------------
def test_container_record_keeps_its_json_on_disk():
    from labkit.docker.containers import Container
    on_disk = {"name": "c1", "id": "ab" * 32, "image": "busybox", "node": "node1", "netns": "lab-node1-c1",
               "command": ["sleep", "infinity"], "restart": "no", "created": 1.5, "veth": "veth1234567",
               "ip": "10.108.3.2", "gateway": "10.108.3.1", "prefixlen": 24, "mtu": 1450, "started": 2.5,
               "pid": 77, "exit_code": 3, "auto_remove": True, "restart_count": 2, "restart_at": 9.5}
    rec = Container.from_json(dict(on_disk, running=True))   # a stray "running" is not stored
    assert rec.ip == "10.108.3.2" and rec.running is False
    assert rec.to_json() == on_disk and list(rec.to_json()) == list(on_disk)
    # a record written before exit codes and restart back-off were kept still loads
    old = {k: v for k, v in on_disk.items() if k not in ("exit_code", "auto_remove", "restart_count", "restart_at")}
    rec = Container.from_json(old)
    assert (rec.exit_code, rec.auto_remove, rec.restart_count, rec.restart_at) == (None, False, 0, None)
