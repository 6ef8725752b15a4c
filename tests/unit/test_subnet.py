"""Tests for labkit.flannel.subnet (flannel pkg/subnet/subnet.go, pkg/lease/lease.go,
pkg/subnet/etcd/local_manager.go)."""

import logging
import random
from ipaddress import IPv4Network, IPv6Network

import pytest

from labkit.flannel.config import parse_config
from labkit.flannel.subnet import (
    EVENT_ADDED,
    EVENT_REMOVED,
    SUBNET_TTL,
    Event,
    Lease,
    LeaseAttrs,
    LeaseWatcher,
    OutOfSubnets,
    allocate_subnet,
    choose_subnet,
    free_subnets,
    lease_fits,
    parse_subnet_key,
    parse_subnet_key_dual,
    subnet_key,
    subnet_key_name,
)

N = IPv4Network


def lease(subnet, ip="192.168.64.3", exp=1000.0, **kw):
    return Lease(N(subnet), LeaseAttrs(public_ip=ip, **kw), exp)


# --- keys --------------------------------------------------------------------


def test_subnet_key_name():
    assert subnet_key_name(N("10.108.14.0/24")) == "10.108.14.0-24"
    assert subnet_key_name(N("10.12.13.0/24"), IPv6Network("fd00:12:13::/56")) == "10.12.13.0-24&fd00:12:13::-56"


@pytest.mark.parametrize("prefix,key", [
    ("/coreos.com/network", "/coreos.com/network/subnets/10.5.52.0-24"),
    ("/coreos.com/network/", "/coreos.com/network/subnets/10.5.52.0-24"),
    ("//vxlan//network", "/vxlan/network/subnets/10.5.52.0-24"),
    ("", "subnets/10.5.52.0-24"),
])
def test_subnet_key(prefix, key):
    assert subnet_key(prefix, N("10.5.52.0/24")) == key


def test_subnet_node_v4():
    # Go: TestSubnetNodev4
    key = "10.12.13.0-24"
    assert parse_subnet_key(key) == N("10.12.13.0/24")
    assert parse_subnet_key_dual(key) == (N("10.12.13.0/24"), None)
    assert subnet_key_name(parse_subnet_key(key)) == key


def test_subnet_node_v6():
    # Go: TestSubnetNodev6
    key = "10.12.13.0-24&fd00:12:13::-56"
    sn, sn6 = parse_subnet_key_dual(key)
    assert sn == N("10.12.13.0/24")
    assert sn6 == IPv6Network("fd00:12:13::/56")
    assert subnet_key_name(sn, sn6) == key
    assert parse_subnet_key(key) == N("10.12.13.0/24")


@pytest.mark.parametrize("key", [
    # Go: TestSubnetNodeInvalid
    "10",
    "10.12.13.0",
    "10.12.13-24",
    "10.12.13.300-24",
    "10.12.13.0-24hi",
    "&2001::-56",
    "10.12.13.0-24&:12:13:-56",
    "10.12.13.0-24&20011::-56",
    "10.12.13.0-24&2001-56",
    "10.12.13.0-24&2001::",
    "10.12.13.0-24&2001::-56hi",
    # and a few more
    "10.0.0.0-32",            # prefix must fit in 5 bits
    "10.0.0.0-24\n",          # Go's $ does not match before a newline
    "/coreos.com/network/config",
    "10.0.0.0-24&fd00::-128",  # IPv6 prefix must fit in 7 bits
])
def test_subnet_node_invalid(key):
    assert parse_subnet_key(key) is None
    assert parse_subnet_key_dual(key) is None


def test_parse_full_key_and_quirks():
    assert parse_subnet_key("/coreos.com/network/subnets/10.5.52.0-24") == N("10.5.52.0/24")
    assert parse_subnet_key("10.0.0.0-31") == N("10.0.0.0/31")
    assert parse_subnet_key("10.0.0.0-024") == N("10.0.0.0/24")
    # host bits of a hand-made key are cleared
    assert parse_subnet_key("10.5.1.7-24") == N("10.5.1.0/24")


# --- LeaseAttrs JSON ---------------------------------------------------------


def test_lease_attrs_vxlan_json_exact():
    # Documentation/reservations.md example
    a = LeaseAttrs("192.168.64.3", backend_type="vxlan", backend_data={"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"})
    assert a.to_json() == ('{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",'
                           '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}')


@pytest.mark.parametrize("attrs,expected", [
    (LeaseAttrs("10.0.0.1"), '{"PublicIP":"10.0.0.1","PublicIPv6":null}'),  # udp
    (LeaseAttrs("10.0.0.1", backend_type="host-gw"),
     '{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"host-gw"}'),
    (LeaseAttrs("10.0.0.1", backend_type="wireguard", backend_data={"PublicKey": "abc=", "Port": 51820}),
     '{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"abc=","Port":51820}}'),
    (LeaseAttrs("10.0.0.1", backend_data={}), '{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendData":{}}'),
    (LeaseAttrs("10.0.0.1", public_ipv6="FD00::0:1"), '{"PublicIP":"10.0.0.1","PublicIPv6":"fd00::1"}'),
    (LeaseAttrs("", backend_type="a<b"), '{"PublicIP":"0.0.0.0","PublicIPv6":null,"BackendType":"a\\u003cb"}'),
    (LeaseAttrs("10.0.0.1", backend_data={"K": "x&y"}, backend_v6_data={"VNI": 1}),
     '{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendData":{"K":"x\\u0026y"},"BackendV6Data":{"VNI":1}}'),
])
def test_lease_attrs_json(attrs, expected):
    assert attrs.to_json() == expected


def test_lease_attrs_key_order_preserved():
    a = LeaseAttrs("10.0.0.1", backend_type="vxlan", backend_data={"VtepMAC": "aa:bb:cc:dd:ee:ff", "VNI": 1})
    assert a.to_json().endswith('"BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff","VNI":1}}')


def test_lease_attrs_round_trip():
    text = ('{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",'
            '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}')
    a = LeaseAttrs.from_json(text)
    assert a == LeaseAttrs("192.168.64.3", None, "vxlan", {"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"})
    assert a.to_json() == text


def test_lease_attrs_from_json_go_rules():
    a = LeaseAttrs.from_json(b'{"publicip":"10.1.2.3","backendtype":"ipip","Unknown":1}')
    assert (a.public_ip, a.backend_type, a.backend_data) == ("10.1.2.3", "ipip", None)
    assert LeaseAttrs.from_json("{}").public_ip == "0.0.0.0"
    assert LeaseAttrs.from_json('{"PublicIP":"10.0.0.1","PublicIPv6":"fd00::1"}').public_ipv6 == "fd00::1"


@pytest.mark.parametrize("text,message", [
    ('{"PublicIP":"10.0.0"}', "invalid IP address format"),
    ('{"PublicIP":"fd00::1"}', "invalid IPv4 address format"),
    ('{"PublicIP":null}', "invalid IP address format"),
    ('{"PublicIP":"10.0.0.1","BackendType":5}',
     "json: cannot unmarshal number into Go struct field LeaseAttrs.BackendType of type string"),
    ('[]', "json: cannot unmarshal array into Go value of type lease.LeaseAttrs"),
    ('{"PublicIP":', "unexpected end of JSON input"),
])
def test_lease_attrs_from_json_errors(text, message):
    with pytest.raises(ValueError) as e:
        LeaseAttrs.from_json(text)
    assert str(e.value) == message


# --- LeaseWatcher -------------------------------------------------------------

OWN = "10.5.1.0/24"


def kinds(batch):
    return [(e.type, str(e.lease.subnet)) for e in batch]


def test_reset_from_empty_adds_all_but_own():
    w = LeaseWatcher(own_subnet=N(OWN))
    batch = w.reset([lease(OWN), lease("10.5.2.0/24"), lease("10.5.3.0/24")])
    assert kinds(batch) == [(EVENT_ADDED, "10.5.2.0/24"), (EVENT_ADDED, "10.5.3.0/24")]


def test_reset_diffs_and_removed_carries_cached_lease():
    w = LeaseWatcher(own_subnet=N(OWN))
    w.reset([lease("10.5.2.0/24", ip="192.168.0.2", backend_data={"VtepMAC": "aa"}),
             lease("10.5.3.0/24", ip="192.168.0.3")])
    gone = Lease(N("10.5.2.0/24"), LeaseAttrs(""))  # nothing but the subnet
    batch = w.reset([lease("10.5.3.0/24", ip="192.168.0.3"), lease("10.5.4.0/24", ip="192.168.0.4")])
    assert kinds(batch) == [(EVENT_ADDED, "10.5.4.0/24"), (EVENT_REMOVED, "10.5.2.0/24")]
    removed = batch[1].lease
    assert removed != gone
    assert removed.attrs.public_ip == "192.168.0.2" and removed.attrs.backend_data == {"VtepMAC": "aa"}
    assert [str(lease.subnet) for lease in w.leases] == ["10.5.3.0/24", "10.5.4.0/24"]


def test_reset_ignores_changed_attrs_of_known_subnet():
    w = LeaseWatcher(own_subnet=N(OWN))
    w.reset([lease("10.5.2.0/24", ip="192.168.0.2")])
    assert w.reset([lease("10.5.2.0/24", ip="192.168.0.99")]) == []


def test_second_reset_reports_own_lease_removed():
    # lease.go quirk: the cache is a copy of the whole snapshot, own lease
    # included, and the own lease is skipped before it can be matched.
    w = LeaseWatcher(own_subnet=N(OWN))
    w.reset([lease(OWN), lease("10.5.2.0/24")])
    assert [str(lease.subnet) for lease in w.leases] == [OWN, "10.5.2.0/24"]
    batch = w.reset([lease(OWN), lease("10.5.2.0/24")])
    assert kinds(batch) == [(EVENT_REMOVED, OWN)]


def test_update_add_then_renewal_replaces():
    w = LeaseWatcher(own_subnet=N(OWN))
    b1 = w.update([Event(EVENT_ADDED, lease("10.5.2.0/24", exp=1.0))])
    b2 = w.update([Event(EVENT_ADDED, lease("10.5.2.0/24", exp=2.0))])
    assert kinds(b1) == kinds(b2) == [(EVENT_ADDED, "10.5.2.0/24")]
    assert len(w.leases) == 1 and w.leases[0].expiration == 2.0


def test_update_removed_returns_cached_lease():
    w = LeaseWatcher(own_subnet=N(OWN))
    w.update([Event(EVENT_ADDED, lease("10.5.2.0/24", ip="192.168.0.2", backend_type="vxlan",
                                      backend_data={"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}))])
    batch = w.update([Event(EVENT_REMOVED, Lease(N("10.5.2.0/24"), LeaseAttrs("")))])
    assert kinds(batch) == [(EVENT_REMOVED, "10.5.2.0/24")]
    assert batch[0].lease.attrs.public_ip == "192.168.0.2"
    assert batch[0].lease.attrs.backend_data["VtepMAC"] == "c6:d2:32:6f:8f:44"
    assert w.leases == []


def test_update_drops_own_subnet_events():
    w = LeaseWatcher(own_subnet=N(OWN))
    batch = w.update([Event(EVENT_ADDED, lease(OWN)), Event(EVENT_REMOVED, lease(OWN)),
                      Event(EVENT_ADDED, lease("10.5.9.0/24"))])
    assert kinds(batch) == [(EVENT_ADDED, "10.5.9.0/24")]
    assert [str(lease.subnet) for lease in w.leases] == ["10.5.9.0/24"]


def test_update_removed_unknown_subnet_is_passed_on_and_logged(caplog):
    # lease.go remove(): logs an error and still returns the event
    w = LeaseWatcher(own_subnet=N(OWN))
    bare = Lease(N("10.5.7.0/24"), LeaseAttrs(""))
    with caplog.at_level(logging.ERROR, logger="labkit.flannel.subnet"):
        batch = w.update([Event(EVENT_REMOVED, bare)])
    assert len(batch) == 1 and batch[0].type == EVENT_REMOVED and batch[0].lease is bare
    assert "Removed subnet (10.5.7.0/24) and ipv6 subnet (::/0) were not found" in caplog.text


def test_watcher_without_own_subnet():
    w = LeaseWatcher()
    assert kinds(w.reset([lease(OWN)])) == [(EVENT_ADDED, OWN)]


# --- allocation ------------------------------------------------------------------


def cfg_of(text):
    return parse_config(text)


def test_free_subnets_skips_overlaps():
    cfg = cfg_of('{"Network":"10.5.0.0/16"}')
    free = free_subnets(cfg, [lease("10.5.1.0/24"), lease("10.5.3.0/24")], limit=3)
    assert free == [N("10.5.2.0/24"), N("10.5.4.0/24"), N("10.5.5.0/24")]


def test_free_subnets_big_lease_blocks_its_range():
    cfg = cfg_of('{"Network":"10.5.0.0/16"}')
    free = free_subnets(cfg, [N("10.5.0.0/20")], limit=2)
    assert free == [N("10.5.16.0/24"), N("10.5.17.0/24")]


def test_free_subnets_limit_100_and_respects_min_max():
    cfg = cfg_of('{"Network":"10.0.0.0/8"}')
    free = free_subnets(cfg, [])
    assert len(free) == 100 and free[0] == N("10.0.1.0/24") and free[-1] == N("10.0.100.0/24")
    cfg = cfg_of('{"Network":"10.3.0.0/16","SubnetMin":"10.3.5.0","SubnetMax":"10.3.7.0"}')
    assert free_subnets(cfg, []) == [N("10.3.5.0/24"), N("10.3.6.0/24"), N("10.3.7.0/24")]


def test_allocate_subnet_is_random_among_free():
    cfg = cfg_of('{"Network":"10.5.0.0/16"}')
    rng = random.Random(1)
    picks = {allocate_subnet(cfg, [], rng) for _ in range(200)}
    assert len(picks) > 50
    assert all(N("10.5.1.0/24").network_address <= p.network_address <= N("10.5.100.0/24").network_address
               for p in picks)


def test_slash22_exhausts_at_fourth_allocation():
    cfg = cfg_of('{"Network":"10.5.0.0/22"}')
    rng = random.Random(7)
    held = []
    for _ in range(3):
        held.append(Lease(allocate_subnet(cfg, held, rng), LeaseAttrs("1.1.1.1")))
    assert sorted(str(lease.subnet) for lease in held) == ["10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24"]
    with pytest.raises(OutOfSubnets) as e:
        allocate_subnet(cfg, held, rng)
    assert str(e.value) == "out of subnets"
    assert free_subnets(cfg, held) == []


def test_lease_fits():
    cfg = cfg_of('{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.0","SubnetMax":"10.3.25.0"}')
    assert lease_fits(cfg, N("10.3.1.0/24")) and lease_fits(cfg, N("10.3.25.0/24"))
    assert not lease_fits(cfg, N("10.3.0.0/24"))     # below SubnetMin
    assert not lease_fits(cfg, N("10.3.31.0/24"))    # above SubnetMax
    assert not lease_fits(cfg, N("10.3.2.0/25"))     # wrong length
    assert not lease_fits(cfg, N("10.4.1.0/24"))


# --- choose_subnet (tryAcquireLease) -------------------------------------------

# Go: newDummyRegistry in pkg/subnet/etcd/subnet_test.go
DUMMY_CONFIG = '{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.1.0", "SubnetMax": "10.3.25.0" }'


def dummy_leases():
    return [lease(s, ip="1.1.1.1") for s in
            ("10.3.1.0/24", "10.3.2.0/24", "10.3.4.0/24", "10.3.5.0/24", "10.3.31.0/24")]


def test_acquire_lease_new_node_allocates_in_range():
    # Go: TestAcquireLease, first part
    cfg = cfg_of(DUMMY_CONFIG)
    d = choose_subnet(cfg, dummy_leases(), "1.2.3.4", None, random.Random(0))
    assert d.kind == "allocate" and d.reuse is None and d.delete == []
    assert lease_fits(cfg, d.subnet)
    assert d.subnet not in {lease.subnet for lease in dummy_leases()}
    assert d.reason == f"Allocated lease (ip: {d.subnet} ipv6: ::/0) to current node (1.2.3.4) "
    assert d.logs == ["Picking subnet in range 10.3.1.0 ... 10.3.25.0", d.reason]
    assert d.ttl == SUBNET_TTL


def test_acquire_lease_again_reuses_by_public_ip():
    # Go: TestAcquireLease, "Acquire again, should reuse"
    cfg = cfg_of(DUMMY_CONFIG)
    leases = dummy_leases() + [lease("10.3.3.0/24", ip="1.2.3.4", exp=5.0)]
    d = choose_subnet(cfg, leases, "1.2.3.4", N("10.3.9.0/24"), random.Random(0))
    assert d.kind == "reuse" and d.subnet == N("10.3.3.0/24") and d.reuse is leases[-1]
    assert d.reason == "Found lease (ip: 10.3.3.0/24 ipv6: ::/0) for current IP (1.2.3.4), reusing"
    assert d.logs == [d.reason] and d.delete == [] and d.ttl == SUBNET_TTL


def test_reuse_of_reservation_keeps_ttl_zero():
    cfg = cfg_of(DUMMY_CONFIG)
    d = choose_subnet(cfg, [lease("10.3.20.0/24", ip="1.2.3.4", exp=None)], "1.2.3.4", None, random.Random(0))
    assert d.kind == "reuse" and d.ttl == 0


def test_acquire_lease_uses_previous_subnet():
    # Go: TestAcquireLease, "Test if a previous subnet will be used"
    cfg = cfg_of(DUMMY_CONFIG)
    d = choose_subnet(cfg, dummy_leases(), "1.2.3.4", N("10.3.6.0/24"), random.Random(0))
    assert d.kind == "previous" and d.subnet == N("10.3.6.0/24") and d.reuse is None
    assert d.reason == "Found previously leased subnet (10.3.6.0/24), reusing"
    assert d.logs == [d.reason, "Allocated lease (ip: 10.3.6.0/24 ipv6: ::/0) to current node (1.2.3.4) "]


def test_acquire_lease_ignores_incompatible_previous_subnet():
    # Go: TestAcquireLease, previous subnet 10.4.1.0/24 does not match the config
    cfg = cfg_of(DUMMY_CONFIG)
    d = choose_subnet(cfg, dummy_leases(), "1.2.3.4", N("10.4.1.0/24"), random.Random(0))
    assert d.kind == "allocate" and d.subnet != N("10.4.1.0/24") and lease_fits(cfg, d.subnet)
    assert d.logs[0] == ("Found previously leased subnet (10.4.1.0/24) that is not compatible "
                         "with the Etcd network config, ignoring")


def test_previous_subnet_held_by_someone_else_is_not_used():
    cfg = cfg_of(DUMMY_CONFIG)
    d = choose_subnet(cfg, dummy_leases(), "1.2.3.4", N("10.3.2.0/24"), random.Random(0))
    assert d.kind == "allocate" and d.subnet != N("10.3.2.0/24")
    assert not any("previously" in line for line in d.logs)


def test_own_lease_outside_config_is_deleted_then_allocate():
    # Go: TestConfigChanged -- the node's lease no longer fits the new config
    cfg = cfg_of('{ "Network": "10.4.0.0/16" }')
    mine = lease("10.3.3.0/24", ip="1.2.3.4")
    d = choose_subnet(cfg, dummy_leases() + [mine], "1.2.3.4", None, random.Random(0))
    assert d.delete == [mine] and d.reuse is None and d.kind == "allocate"
    assert lease_fits(cfg, d.subnet)
    assert d.logs[0].startswith("Found lease (")
    assert d.logs[0].endswith(") for current IP (1.2.3.4) but not compatible with current config, deleting")


def test_deleted_lease_still_blocks_previous_subnet():
    # flannel works on the list it read before deleting
    cfg = cfg_of('{"Network":"10.5.0.0/16","SubnetLen":25}')
    mine = lease("10.5.3.0/24", ip="1.2.3.4")  # wrong length now
    d = choose_subnet(cfg, [mine], "1.2.3.4", N("10.5.3.0/24"), random.Random(0))
    assert d.delete == [mine]
    assert d.kind == "allocate" and not d.subnet.overlaps(N("10.5.3.0/24"))


def test_only_first_lease_with_our_ip_is_considered():
    cfg = cfg_of(DUMMY_CONFIG)
    a = lease("10.3.40.0/24", ip="1.2.3.4")   # does not fit: deleted
    b = lease("10.3.7.0/24", ip="1.2.3.4")    # would fit, but flannel stops at the first
    d = choose_subnet(cfg, [a, b], "1.2.3.4", None, random.Random(0))
    assert d.delete == [a] and d.kind == "allocate" and d.subnet != N("10.3.7.0/24")


def test_choose_subnet_out_of_subnets():
    cfg = cfg_of('{"Network":"10.5.0.0/22"}')
    leases = [lease(f"10.5.{i}.0/24", ip=f"192.168.0.{i}") for i in (1, 2, 3)]
    with pytest.raises(OutOfSubnets, match="^out of subnets$"):
        choose_subnet(cfg, leases, "192.168.0.4", None, random.Random(0))
    # the fourth node with a previous subnet that is taken fails the same way
    with pytest.raises(OutOfSubnets):
        choose_subnet(cfg, leases, "192.168.0.4", N("10.5.1.0/24"), random.Random(0))


def test_choose_subnet_is_deterministic_for_a_seed():
    cfg = cfg_of('{"Network":"10.5.0.0/16"}')
    a = choose_subnet(cfg, [], "10.0.0.1", None, random.Random(42)).subnet
    b = choose_subnet(cfg, [], "10.0.0.1", None, random.Random(42)).subnet
    assert a == b


@pytest.mark.parametrize("text", [
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2"}}',
    '{"PublicIP":"10.0.0.1"}', '{}', 'null', '{"PublicIP":"10.0.0.1","BackendData":null,"BackendV6Data":[1,2]}',
    '{"PublicIP":"10.0.0.1","PublicIPv6":"fd00::1","BackendType":null}',
    '{"publicip":"10.1.2.3"}',                                  # Go matches names case-insensitively
    '{"PublicIP":"10.0.0.1","PublicIP":"10.0.0.2"}',            # duplicates: Go keeps the last
    '{"PublicIP":"10.0.0.\\u0031"}',                            # an escape the faithful decoder reads raw
    '{"PublicIP":"10.0.0.1","BackendData":{"a":1,"a":2}}', '{"PublicIP":"10.0.0.1","Other":1}',
    '{"PublicIP":"10.0.0.1","BackendData":NaN}', '{"PublicIP":5}', '{"PublicIP":"10.0.0"}',
    '{"PublicIPv6":"x","PublicIP":"y"}', '{"PublicIP":"10.0.0.1","BackendType":5}', '[]', '{"PublicIP":',
])
def test_lease_attrs_quick_path_agrees_with_go_rules(text):
    """from_json's quick path (plain JSON) answers exactly as the Go-faithful decoder,
    value or error, and leaves every unusual document to it."""
    def outcome(fn):
        try:
            return fn(text)
        except ValueError as e:
            return ("error", str(e))
    assert outcome(LeaseAttrs.from_json) == outcome(LeaseAttrs._from_go_json)


def test_lease_attrs_quick_path_takes_plain_leases():
    plain = b'{"PublicIP":"192.168.50.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1}}'
    assert LeaseAttrs._from_plain_json(plain) == LeaseAttrs("192.168.50.2", None, "vxlan", {"VNI": 1})
    assert LeaseAttrs._from_plain_json(b'{"publicip":"10.1.2.3"}') is None
    assert LeaseAttrs._from_plain_json(b'{"PublicIP":"10.0.0.1","PublicIP":"10.0.0.2"}') is None


def test_free_subnets_agrees_with_checking_every_lease():
    """The sorted walk gives what comparing each candidate with every lease gives, for
    leases of mixed sizes, overlapping each other, outside the range, in any order."""
    rng = random.Random(7)
    cfg = cfg_of('{"Network":"10.5.0.0/16"}')
    for _ in range(200):
        taken = []
        for _ in range(rng.randrange(0, 40)):
            plen = rng.choice([16, 20, 22, 23, 24, 24, 24, 25, 28, 32])
            taken.append(N(f"10.{rng.choice([4, 5, 5, 5, 6])}.{rng.randrange(256)}.{rng.randrange(256)}/{plen}",
                           strict=False))
        limit = rng.choice([1, 5, 100, 300])
        slow, ip = [], int(cfg.subnet_min)
        while ip <= int(cfg.subnet_max) and len(slow) < limit:
            sn = N((ip, 24))
            if not any(sn.overlaps(t) for t in taken):
                slow.append(sn)
            ip += 256
        assert free_subnets(cfg, taken, limit=limit) == slow


class _ListWatcher:
    """lease.go's LeaseWatcher as a slice scanned per event: the model the dict-backed
    LeaseWatcher must agree with, event for event and in the cache's order."""

    def __init__(self, own):
        self.own, self.leases = own, []

    def reset(self, leases):
        batch = []
        for new in leases:
            if new.subnet == self.own:
                continue
            for i, old in enumerate(self.leases):
                if old.subnet == new.subnet:
                    del self.leases[i]
                    break
            else:
                batch.append((EVENT_ADDED, new))
        batch += [(EVENT_REMOVED, old) for old in self.leases]
        self.leases = list(leases)
        return batch

    def update(self, events):
        batch = []
        for kind, new in events:
            if new.subnet == self.own:
                continue
            for i, old in enumerate(self.leases):
                if old.subnet == new.subnet:
                    if kind == EVENT_ADDED:
                        self.leases[i] = new
                        batch.append((kind, new))
                    else:
                        del self.leases[i]
                        batch.append((kind, old))
                    break
            else:
                if kind == EVENT_ADDED:
                    self.leases.append(new)
                batch.append((kind, new))
        return batch


def test_lease_watcher_agrees_with_the_scanned_slice():
    rng = random.Random(11)
    pool = [f"10.5.{i}.0/24" for i in range(1, 9)]
    for _ in range(300):
        w, model = LeaseWatcher(own_subnet=N(OWN)), _ListWatcher(N(OWN))
        for _ in range(12):
            if rng.random() < 0.25:
                snap = [lease(s, ip=f"192.168.64.{rng.randrange(2, 9)}") for s in rng.sample(pool, rng.randrange(6))]
                got, want = w.reset(snap), model.reset(snap)
            else:
                evs = [(rng.choice([EVENT_ADDED, EVENT_REMOVED]), lease(rng.choice(pool),
                                                                         ip=f"192.168.64.{rng.randrange(2, 9)}"))
                       for _ in range(rng.randrange(1, 4))]
                got, want = w.update([Event(k, x) for k, x in evs]), model.update(evs)
            assert [(e.type, e.lease) for e in got] == want
            assert w.leases == model.leases
