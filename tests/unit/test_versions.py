"""flannel version profiles (labkit/flannel/versions.py): parsing, the release -> switch mapping,
the generated docs table, the spec field, and -kube-subnet-mgr's refusal."""
import io
import ipaddress
import os
import random
import re
from contextlib import redirect_stderr

import pytest

from labkit.errors import LabError
from labkit.flannel import versions
from labkit.flannel.config import parse_config
from labkit.flannel.subnet import Lease, LeaseAttrs, choose_subnet
from labkit.spec import LabSpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("text,release", [
    ("0.7.1", "0.7.1"), ("v0.17.0", "0.17.0"), ("0.9", "0.9.1"), (" 0.18 ", "0.18.1"), ("v0.28", "0.28.9"),
    ("legacy", "0.7.1"), ("MODERN", versions.MODERN), ("0.27.4", "0.27.4")])
def test_parse_accepts_releases_lines_and_aliases(text, release):
    assert versions.parse(text) == release


@pytest.mark.parametrize("text,why", [
    ("0.7.0", "older than the lab's oldest profile"), ("0.6", "older than"), ("0.7.2", "no release 0.7.2"),
    ("0.29.0", "no release 0.29.0"), ("1.0", "no release 1.0"), ("abc", "invalid flannel version 'abc'"),
    ("0.9.1-rc1", "invalid"), ("", "invalid"), ("0.09.1", "invalid"), (None, "invalid"), ("0.9.1\n", "0.9.1")])
def test_parse_refuses_with_one_line_naming_the_range(text, why):
    if why == "0.9.1":  # surrounding whitespace is forgiven
        assert versions.parse(text) == "0.9.1"
        return
    with pytest.raises(versions.VersionError) as e:
        versions.parse(text)
    msg = str(e.value)
    assert why in msg and "\n" not in msg
    assert f"from {versions.RELEASES[0]} to {versions.RELEASES[-1]}" in msg


def test_releases_are_ordered_and_aliases_are_releases():
    keys = [versions.key(r) for r in versions.RELEASES]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert set(versions.ALIASES.values()) <= set(versions.RELEASES)


@pytest.mark.parametrize("release,switch,value", [
    ("0.7.1", "daemon", "legacy"), ("0.8.0", "daemon", "legacy"), ("0.9.0", "daemon", "modern"),
    ("0.17.0", "etcd_api", "v2"), ("0.18.0", "etcd_api", "v3"),
    ("0.8.0", "vxlan_peers", "l3miss"), ("0.9.0", "vxlan_peers", "per-peer"),
    ("0.8.0", "flannel1_addresses", "keep"), ("0.9.0", "flannel1_addresses", "refuse"),
    ("0.13.0", "flannel1_addresses", "refuse"), ("0.14.0", "flannel1_addresses", "reduce"),
    ("0.9.0", "forward_rules", "none"), ("0.9.1", "forward_rules", "forward"),
    ("0.19.2", "forward_rules", "forward-comment"), ("0.20.0", "forward_rules", "chain"),
    ("0.7.1", "previous_subnet", "ignored"), ("0.8.0", "previous_subnet", "overwrite"),
    ("0.17.0", "previous_subnet", "overwrite"), ("0.18.0", "previous_subnet", "if-free"),
    ("0.22.2", "mac_check", "off"), ("0.22.3", "mac_check", "on"),
    ("0.27.3", "deleted_device", "left"), ("0.27.4", "deleted_device", "recreated"),
    ("0.27.3", "vxlan_local", "iface"), ("0.27.4", "vxlan_local", "public-ip"),
    ("0.10.0", "udp_tun_address", "network"), ("0.11.0", "udp_tun_address", "/32"),
    ("0.25.7", "br_netfilter", "off"), ("0.26.0", "br_netfilter", "on")])
def test_each_switch_changes_at_the_release_the_source_says(release, switch, value):
    assert versions.Profile(release)[switch] == value


def test_modern_alias_is_todays_daemon_unchanged():
    """The default (modern) profile has every switch at its newest value: the modern daemon's
    behaviour is what it was before profiles existed."""
    p = versions.profile("modern")
    assert all(p[s.name] == s.eras[-1].value for s in versions.SWITCHES)
    assert versions.active().release == versions.MODERN  # what flanneld runs without the flag


def test_every_era_cites_flannel_source_and_starts_at_a_release():
    cite = re.compile(r"(PR #\d+|v\d+\.\d+\.\d+:[\w./-]+)")
    for s in versions.SWITCHES:
        assert s.eras[0].since == versions.RELEASES[0], s.name
        assert [versions.key(e.since) for e in s.eras] == sorted(versions.key(e.since) for e in s.eras)
        for e in s.eras:
            assert e.since in versions.RELEASES and cite.search(e.source), (s.name, e)


def test_profiles_group_releases_and_cover_them_all():
    groups = versions.profiles()
    covered = [r for first, last, _ in groups for r in versions.RELEASES
               if versions.key(first) <= versions.key(r) <= versions.key(last)]
    assert covered == list(versions.RELEASES)
    assert len({tuple(p.values().items()) for _, _, p in groups}) == len(groups)


def test_docs_table_is_generated_from_the_code():
    """docs/versions.md is `labkit versions --markdown`; regenerate it after changing a switch."""
    with open(os.path.join(ROOT, "docs", "versions.md")) as f:
        assert f.read() == versions.markdown(), "docs/versions.md drifted: run `labkit versions --markdown " \
                                                "> docs/versions.md`"
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "--flannel-version" in readme and "docs/versions.md" in readme and "labkit versions" in readme


# -- the spec ----------------------------------------------------------------------------------
def test_spec_maps_the_version_to_daemon_flavour_and_etcd_api():
    s = LabSpec(flannel_version="v0.8").validate()
    assert (s.flannel_version, s.flavour, s.etcd_v2, s.profile.legacy_daemon) == ("0.8.0", "legacy", True, True)
    s = LabSpec(flannel_version="0.17.0").validate()
    assert (s.flavour, s.etcd_v2, s.profile.legacy_daemon) == ("modern", True, False)
    s = LabSpec(flannel_version="0.18").validate()
    assert (s.release, s.etcd_v2) == ("0.18.1", False)
    assert LabSpec(flavour="legacy").validate().release == "0.7.1"
    assert LabSpec().validate().release == versions.MODERN
    assert LabSpec.from_dict(LabSpec(flannel_version="0.9").validate().to_dict()).release == "0.9.1"


@pytest.mark.parametrize("fields,msg", [
    ({"flannel_version": "0.99"}, "--flannel-version: flannel has no release 0.99"),
    ({"flannel_version": 9}, "invalid flannel version 9"),
    ({"flannel_version": "0.17.0", "flavour": "legacy"}, "--flavour legacy is flannel 0.7.1"),
    ({"flannel_version": "0.8.0", "backend": "host-gw"}, "emulated with the vxlan and udp backends only"),
])
def test_spec_refuses_bad_versions_in_one_line(fields, msg):
    with pytest.raises(LabError) as e:
        LabSpec(**fields).validate()
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_legacy_udp_is_a_lab():
    assert LabSpec(flavour="legacy", backend="udp").validate().profile["udp_tun_address"] == "network"


@pytest.mark.parametrize("release,value", [
    ("0.13.0", '{"PublicIP":"192.168.50.2","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}'),
    ("0.14.0", '{"PublicIP":"192.168.50.2","BackendType":"vxlan",'
               '"BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}'),
    ("0.15.0", '{"PublicIP":"192.168.50.2","PublicIPv6":null,"BackendType":"vxlan",'
               '"BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}')])
def test_lease_json_of_each_era(release, value):
    from labkit.flannel.etcdv2_manager import lease_value
    attrs = LeaseAttrs("192.168.50.2", backend_type="vxlan", backend_data={"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"})
    assert lease_value(attrs, versions.Profile(release)["lease_json"]) == value
    assert lease_value(LeaseAttrs("192.168.50.2"), "vtepmac") == '{"PublicIP":"192.168.50.2"}'  # udp, 0.7


# -- #1289's decision ---------------------------------------------------------------------------
def test_previous_subnet_held_by_another_node_is_overwritten_before_0_18():
    cfg = parse_config('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan"}}')
    prev = ipaddress.IPv4Network("10.108.7.0/24")
    other = Lease(subnet=prev, attrs=LeaseAttrs(public_ip="192.168.50.3"), expiration=1.0)
    d = choose_subnet(cfg, [other], "192.168.50.2", prev, random.Random(1), previous="overwrite")
    assert (d.kind, d.subnet, d.reuse) == ("reuse", prev, other)
    assert d.logs == ["Found lease (10.108.7.0/24) matching previously leased subnet, reusing"]
    d = choose_subnet(cfg, [other], "192.168.50.2", prev, random.Random(1))  # v0.18.0 on
    assert d.kind == "allocate" and d.subnet != prev


# -- -kube-subnet-mgr ----------------------------------------------------------------------------
def test_kube_subnet_mgr_is_refused_with_the_reason_and_the_alternative():
    with pytest.raises(LabError) as e:
        LabSpec(flannel_options="-iface=eth0 -kube-subnet-mgr").validate()
    msg = str(e.value)
    assert "Kubernetes API server" in msg and "package registries" in msg and "etcd subnet manager" in msg
    # typed into a node's FLANNEL_OPTIONS, flanneld itself stops with the same words (exit 1),
    # before it touches etcd or the kernel
    from labkit.flannel import daemon
    err = io.StringIO()
    with redirect_stderr(err):
        assert daemon.main(["-kube-subnet-mgr", "-etcd-endpoints=http://127.0.0.1:1"]) == 1
    versions.activate(versions.MODERN)
    assert "main.go] Failed to create SubnetManager: -kube-subnet-mgr needs a Kubernetes API server" \
        in err.getvalue()
