"""Leases like production, the parts without a lab: out-of-subnets logging, reservations'
durations, -v levels, the lab's flanneld argv order, spec checks, status's lease lookup."""
import random
from ipaddress import IPv4Network

import pytest

from labkit.flannel import log
from labkit.flannel.config import parse_config
from labkit.flannel.daemon import go_duration, parse_flags
from labkit.flannel.subnet import Lease, LeaseAttrs, OutOfSubnets, choose_subnet
from labkit.status import own_lease


def test_out_of_subnets_carries_the_picking_line_and_the_stale_lease():
    cfg = parse_config('{"Network":"10.5.0.0/22","Backend":{"Type":"vxlan"}}')
    full = [Lease(IPv4Network(f"10.5.{i}.0/24"), LeaseAttrs(public_ip=f"192.168.50.{9 + i}")) for i in (1, 2, 3)]
    stale = Lease(IPv4Network("10.9.0.0/16"), LeaseAttrs(public_ip="192.168.50.2"))
    with pytest.raises(OutOfSubnets) as e:
        choose_subnet(cfg, full + [stale], "192.168.50.2", None, random.Random(1))
    assert e.value.logs[-1] == "Picking subnet in range 10.5.1.0 ... 10.5.3.0"
    assert "not compatible with current config, deleting" in e.value.logs[0]
    assert e.value.delete == [stale] and str(e.value) == "out of subnets"


def test_a_reservation_reused_stays_without_ttl():
    cfg = parse_config('{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}')
    mine = Lease(IPv4Network("10.5.7.0/24"), LeaseAttrs(public_ip="192.168.50.2"), expiration=None)
    d = choose_subnet(cfg, [mine], "192.168.50.2", None, random.Random(1))
    assert d.kind == "reuse" and d.ttl == 0


def test_go_duration_of_no_expiry_does_not_crash():
    # Go's longest Duration, 2562047h47m16.854775807s (to a float's precision)
    assert go_duration(float("inf")).startswith("2562047h47m16.8547")
    assert go_duration(float("nan")).startswith("2562047h47m16.8547")
    assert go_duration(82799.5) == "22h59m59.5s"


def test_v_levels(monkeypatch):
    monkeypatch.setattr(log, "_VERBOSITY", 0)
    assert log.v(0) and not log.v(1) and not log.v(2)
    log.set_verbosity(2)
    assert log.v(1) and log.v(2) and not log.v(3)
    assert parse_flags(["-v=2"], environ={})["v"] == 2


def test_flannel_options_come_after_the_labs_flags_and_win():
    # Go's flag package: the last value of a flag wins
    opts = parse_flags(["-lab-subnet-ttl=86400", "-lab-renew-margin-seconds=3600", "-iface=eth0",
                        "-lab-subnet-ttl=20"], environ={})
    assert opts["lab-subnet-ttl"] == 20


def test_spec_flannel_options_are_checked():
    from labkit.errors import LabError
    from labkit.spec import LabSpec
    LabSpec(name="x", flannel_options="-v=2 -ip-masq").validate()
    for bad in ("-no-such-flag", '-v="2"', "-v=2\n-ip-masq", "-v=$X"):
        with pytest.raises(LabError) as e:
            LabSpec(name="x", flannel_options=bad).validate()
        assert e.value.field == "flannel_options"


def test_cli_lease_ttl_gives_a_margin_that_fits():
    from labkit.cli import _lease_fields
    assert _lease_fields(None) == {}
    assert _lease_fields(86400) == {"lease_ttl": 86400, "renew_margin": 3600}
    assert _lease_fields(40) == {"lease_ttl": 40, "renew_margin": 10}
    assert _lease_fields(2) == {"lease_ttl": 2, "renew_margin": 1}


def test_status_takes_the_lease_named_by_subnet_env_then_by_public_ip():
    shared = "10.0.2.15"
    leases = {"10.108.5.0/24": {"PublicIP": shared}, "10.108.9.0/24": {"PublicIP": shared},
              "10.108.7.0/24": {"PublicIP": "192.168.50.3"}}
    # two nodes behind one address: each finds the lease its own subnet.env names
    assert own_lease(leases, {"FLANNEL_SUBNET": "10.108.9.1/24"}, shared)[0] == "10.108.9.0/24"
    assert own_lease(leases, {"FLANNEL_SUBNET": "10.108.5.1/24"}, shared)[0] == "10.108.5.0/24"
    # a subnet.env naming someone else's lease (taken meanwhile) does not count
    assert own_lease(leases, {"FLANNEL_SUBNET": "10.108.7.1/24"}, shared)[0] == "10.108.5.0/24"
    assert own_lease(leases, {}, "192.168.50.3")[0] == "10.108.7.0/24"
    assert own_lease(leases, {}, "192.168.50.4") == (None, None)
