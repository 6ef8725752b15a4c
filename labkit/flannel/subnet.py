"""Subnet leases: keys, values, the watch cache and the allocation decision.

Mirrors three places of flannel-io/flannel (HEAD):

* ``pkg/subnet/subnet.go``: how a lease key is named and parsed
  (``MakeSubnetKey``, ``ParseSubnetKey``);
* ``pkg/lease/lease.go``: the lease value (``LeaseAttrs``, stored in etcd as
  JSON) and ``LeaseWatcher``, the cache that turns etcd snapshots and
  events into Added/Removed events for the backend;
* ``pkg/subnet/etcd/local_manager.go``: the pure decision part of
  ``tryAcquireLease`` and ``allocateSubnet`` (which subnet a node gets).

Nothing here talks to etcd or the kernel; the caller does the Put/Delete
that a Decision asks for.
"""

from __future__ import annotations

import functools
import json
import logging
import posixpath
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any, TypeVar

from labkit.flannel.config import (
    Config,
    GoJSONError,
    go_json_marshal,
    go_json_parse,
    go_json_string,
    match_go_fields,
    parse_ip4,
    parse_ip6,
)

log = logging.getLogger(__name__)

__all__ = [
    "SUBNET_TTL",
    "EVENT_ADDED",
    "EVENT_REMOVED",
    "subnet_key_name",
    "subnet_key",
    "parse_subnet_key",
    "parse_subnet_key_dual",
    "LeaseAttrs",
    "Lease",
    "Event",
    "LeaseWatcher",
    "OutOfSubnets",
    "free_subnets",
    "allocate_subnet",
    "lease_fits",
    "Decision",
    "choose_subnet",
]

# A lease lives 24 h in etcd unless renewed (subnetTTL in local_manager.go).
SUBNET_TTL = 24 * 60 * 60

# flannel prints an absent IPv6 subnet (an empty ip.IP6Net) as "::/0".
_NO_IPV6 = "::/0"

# ---------------------------------------------------------------------------
# Keys: <prefix>/subnets/10.5.72.0-24
# ---------------------------------------------------------------------------

# Same pattern as flannel's subnetRegex, including its unescaped dots.
# re.ASCII: Go's \d is ASCII only; \Z: Go's $ does not match before a
# trailing newline the way Python's does.
_SUBNET_RE = re.compile(r"(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?\Z", re.ASCII)


def subnet_key_name(subnet: IPv4Network, ipv6_subnet: IPv6Network | None = None) -> str:
    """The last part of a lease key: ``10.108.14.0-24`` (a dash, because a
    slash would make it a path). A dual-stack lease appends ``&<v6>-<len>``."""
    name = f"{subnet.network_address}-{subnet.prefixlen}"
    if ipv6_subnet is not None:
        name += f"&{ipv6_subnet.network_address}-{ipv6_subnet.prefixlen}"
    return name


def _go_path_join(*parts: str) -> str:
    """Go's path.Join: skip empty parts, join with '/', then clean."""
    joined = "/".join(p for p in parts if p)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    if cleaned.startswith("//"):  # POSIX keeps '//' at the front, Go does not
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def subnet_key(prefix: str, subnet: IPv4Network, ipv6_subnet: IPv6Network | None = None) -> str:
    """Full etcd key of a lease, e.g. ``/coreos.com/network/subnets/10.5.72.0-24``."""
    return _go_path_join(prefix, "subnets", subnet_key_name(subnet, ipv6_subnet))


@functools.lru_cache(maxsize=4096)
def parse_subnet_key_dual(key: str) -> tuple[IPv4Network, IPv6Network | None] | None:
    """flannel's ParseSubnetKey: both halves of a key, or None. (Remembered: every lease key
    is read again at each listing and watch event, and the answer, made of immutable
    networks, never changes.)

    The regex is anchored at the end only, so a full key with its prefix
    works. The prefix length must fit in 5 bits (0..31; a /32 key is
    refused), the IPv6 one in 7 bits. If the IPv6 half is present but bad,
    the whole key is refused. flannel keeps host bits of a hand-written key
    like ``10.5.1.7-24``; here they are cleared (10.5.1.0/24).
    """
    m = _SUBNET_RE.search(key)
    if not m:
        return None
    sn = _key_network(m.group(1), m.group(2), IPv4Network, 5)
    if sn is None:
        return None
    sn6 = None
    if m.group(3):
        sn6 = _key_network(m.group(3), m.group(4), IPv6Network, 7)
        if sn6 is None:
            return None
    return sn, sn6


_Net = TypeVar("_Net", IPv4Network, IPv6Network)


def _key_network(addr: str, plen: str, network_cls: type[_Net], bits: int) -> _Net | None:
    """One half of a subnet key: None for a bad address or a length that needs > `bits` bits."""
    if int(plen) >= 1 << bits:
        return None
    try:
        return network_cls((addr, int(plen)), strict=False)
    except ValueError:
        return None


def parse_subnet_key(key: str) -> IPv4Network | None:
    """The IPv4 subnet named by a lease key (or a bare ``10.5.72.0-24``).

    None for a key that is not a subnet; flannel skips those
    ("not a subnet, skipping").
    """
    parsed = parse_subnet_key_dual(key)
    return parsed[0] if parsed else None


# ---------------------------------------------------------------------------
# Lease values
# ---------------------------------------------------------------------------


_LEASE_FIELDS = frozenset({"PublicIP", "PublicIPv6", "BackendType", "BackendData", "BackendV6Data"})


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: not JSON to Go


@dataclass
class LeaseAttrs:
    """The JSON value stored under a lease key (lease.LeaseAttrs).

    ``public_ip`` is the node's identity: a restarting node finds its old
    lease by it. ``backend_data`` is whatever the backend publishes for its
    peers (vxlan: VNI and VtepMAC). udp sets no BackendType at all.
    """

    public_ip: str
    public_ipv6: str | None = None
    backend_type: str = ""
    backend_data: dict[str, Any] | None = None
    backend_v6_data: dict[str, Any] | None = None

    def to_json(self) -> str:
        """Exactly what Go's json.Marshal writes for this struct.

        Field order is the struct order. PublicIPv6 is a pointer without
        omitempty, so it is written as ``null``; BackendType, BackendData and
        BackendV6Data are omitempty.
        """
        pub = str(parse_ip4(self.public_ip)) if self.public_ip else "0.0.0.0"
        parts = [f'"PublicIP":"{pub}"']
        if self.public_ipv6 is None:
            parts.append('"PublicIPv6":null')
        else:
            parts.append(f'"PublicIPv6":"{parse_ip6(self.public_ipv6)}"')
        if self.backend_type:
            parts.append(f'"BackendType":{go_json_string(self.backend_type)}')
        if self.backend_data is not None:
            parts.append(f'"BackendData":{go_json_marshal(self.backend_data)}')
        if self.backend_v6_data is not None:
            parts.append(f'"BackendV6Data":{go_json_marshal(self.backend_v6_data)}')
        return "{" + ",".join(parts) + "}"

    @classmethod
    def _from_plain_json(cls, raw: bytes) -> LeaseAttrs | None:
        """from_json's quick path, for the plain JSON flanneld itself writes: an object with
        the canonical field names once each, string addresses, no escapes. Anything else
        (other spellings, duplicates, escapes, a wrong type, broken JSON) returns None and
        goes through the Go-faithful decoder, which also words the errors. Every peer's
        lease is decoded at every change, so at 100 nodes this is most of a watch event's
        cost: the faithful decoder reads character by character in Python."""
        if b"\\" in raw:
            return None
        try:
            doc = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        except (ValueError, _DuplicateKey):
            return None
        if not isinstance(doc, dict) or not doc.keys() <= _LEASE_FIELDS:
            return None
        pub, pub6, btype = doc.get("PublicIP", "0.0.0.0"), doc.get("PublicIPv6"), doc.get("BackendType")
        if not isinstance(pub, str) or not isinstance(pub6, (str, type(None))) \
                or not isinstance(btype, (str, type(None))):
            return None
        try:
            ip4, ip6 = str(parse_ip4(pub)), None if pub6 is None else str(parse_ip6(pub6))
        except ValueError:
            return None  # the faithful decoder says which field is wrong first
        return cls(public_ip=ip4, public_ipv6=ip6, backend_type=btype or "",
                   backend_data=doc.get("BackendData"), backend_v6_data=doc.get("BackendV6Data"))

    @classmethod
    def from_json(cls, text: str | bytes) -> LeaseAttrs:
        """Decode a lease value the way flannel does (json.Unmarshal).

        Keys match case-insensitively; a missing PublicIP is 0.0.0.0 (Go's
        zero value). Raises ValueError with Go's/flannel's message; flannel
        then logs "Ignoring bad subnet node: <err>" and skips the lease.
        A ``null`` BackendData becomes None here (Go would keep the bytes
        "null").
        """
        fast = cls._from_plain_json(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        return fast if fast is not None else cls._from_go_json(text)

    @classmethod
    def _from_go_json(cls, text: str | bytes) -> LeaseAttrs:
        """from_json by Go's rules, character by character (labkit.flannel.config's decoder)."""
        try:
            doc = go_json_parse(text)
        except GoJSONError as e:
            raise ValueError(str(e)) from None
        attrs = cls(public_ip="0.0.0.0")
        if doc.kind == "null":
            return attrs
        if doc.kind != "object":
            raise ValueError(f"json: cannot unmarshal {doc.kind} into Go value of type lease.LeaseAttrs")
        names = {"PublicIP": "public_ip", "PublicIPv6": "public_ipv6", "BackendType": "backend_type",
                 "BackendData": "backend_data", "BackendV6Data": "backend_v6_data"}
        type_errors: list[str] = []
        for name, node in match_go_fields(doc.members(), names):
            text_value = node.raw.strip(b'"').decode("utf-8", "replace")
            if name == "PublicIP":
                attrs.public_ip = str(parse_ip4(text_value))
            elif name == "PublicIPv6":
                attrs.public_ipv6 = None if node.kind == "null" else str(parse_ip6(text_value))
            elif name == "BackendType":
                if node.kind == "string":
                    attrs.backend_type = node.text()
                elif node.kind != "null":
                    type_errors.append(
                        f"json: cannot unmarshal {node.kind} into Go struct field "
                        f"LeaseAttrs.BackendType of type string"
                    )
            else:
                setattr(attrs, names[name], json.loads(node.raw.decode("utf-8", "replace")))
        if type_errors:
            raise ValueError(type_errors[0])
        return attrs


@dataclass
class Lease:
    """One node's lease (lease.Lease, IPv4 part).

    ``expiration`` is a UNIX time, or None for a key without TTL (flannel
    treats those as reservations and never expires them). ``key`` is the
    etcd key it was read from, when known.
    """

    subnet: IPv4Network
    attrs: LeaseAttrs
    expiration: float | None = None
    key: str | None = None


EVENT_ADDED = "added"
EVENT_REMOVED = "removed"


@dataclass
class Event:
    """A lease event for a backend: type is "added" or "removed"."""

    type: str
    lease: Lease


# ---------------------------------------------------------------------------
# LeaseWatcher
# ---------------------------------------------------------------------------


class LeaseWatcher:
    """The cache between etcd and a backend (lease.LeaseWatcher).

    Why it exists: an etcd DELETE (or TTL expiry) only says *which key*
    vanished. The backend needs the old PublicIP / VtepMAC to remove its
    route, ARP and FDB entries, so the watcher remembers every lease it has
    seen and hands back the *cached* one on removal.

    Semantics kept from lease.go, quirks included:

    * events and snapshot entries for ``own_subnet`` are skipped;
    * ``reset`` only reports subnets that appeared or disappeared; a lease
      present in both the cache and the snapshot gives no event even if its
      attributes changed;
    * after ``reset`` the cache is the whole snapshot, own lease included;
      a later ``reset`` therefore reports the own lease as removed (the
      loop skips it, so it is never taken out of the old cache);
    * a removed event for a subnet that is not cached is logged as an error
      and passed on as is (carrying only the subnet), not dropped.
    """

    def __init__(self, own_subnet: IPv4Network | None = None) -> None:
        self.own_subnet = own_subnet
        # lease.go keeps a slice and scans it per event; a dict keyed by subnet keeps the same
        # order (a replaced lease keeps its place) without the scan: in a 250-node lab each
        # flanneld compared ~125 subnets per event, 31,000 events in all
        self._cache: dict[IPv4Network, Lease] = {}

    @property
    def leases(self) -> list[Lease]:
        return list(self._cache.values())

    def _is_own(self, lease: Lease) -> bool:
        return self.own_subnet is not None and lease.subnet == self.own_subnet

    def reset(self, leases: list[Lease]) -> list[Event]:
        """Diff a full snapshot against the cache (after start-up or when
        the watch fell behind etcd's compaction)."""
        batch = []
        old = dict(self._cache)
        for new in leases:
            if self._is_own(new):
                continue
            if old.pop(new.subnet, None) is None:
                batch.append(Event(EVENT_ADDED, new))
        batch.extend(Event(EVENT_REMOVED, gone) for gone in old.values())
        self._cache = {}
        for lease in leases:
            self._cache.setdefault(lease.subnet, lease)
        return batch

    def update(self, events: list[Event]) -> list[Event]:
        """Apply watch events to the cache and return the events to pass on."""
        batch = []
        for e in events:
            if self._is_own(e.lease):
                continue
            if e.type == EVENT_ADDED:
                batch.append(self._add(e.lease))
            elif e.type == EVENT_REMOVED:
                batch.append(self._remove(e.lease))
        return batch

    def _add(self, lease: Lease) -> Event:
        # A renewal is a PUT of the same key: replace (in place), keep the cache a set.
        self._cache[lease.subnet] = lease
        return Event(EVENT_ADDED, lease)

    def _remove(self, lease: Lease) -> Event:
        old = self._cache.pop(lease.subnet, None)
        if old is not None:
            return Event(EVENT_REMOVED, old)
        log.error("Removed subnet (%s) and ipv6 subnet (%s) were not found", lease.subnet, _NO_IPV6)
        return Event(EVENT_REMOVED, lease)


# ---------------------------------------------------------------------------
# Allocation
# ---------------------------------------------------------------------------


class OutOfSubnets(Exception):
    """No free subnet between SubnetMin and SubnetMax.

    flanneld then exits with
    ``Error registering network: failed to acquire lease: out of subnets``.
    """

    def __init__(self, message: str = "out of subnets") -> None:
        super().__init__(message)
        # set by choose_subnet: what tryAcquireLease logged and deleted before it failed,
        # so the caller can log "Picking subnet in range ..." before the error, as flannel does
        self.logs: list[str] = []
        self.delete: list[Lease] = []


def _subnet_of(item: Lease | IPv4Network) -> IPv4Network:
    return item if isinstance(item, IPv4Network) else item.subnet


def _subnet_range(cfg: Config) -> tuple[IPv4Address, IPv4Address]:
    """SubnetMin and SubnetMax, which check_network_config fills in."""
    assert cfg.subnet_min is not None and cfg.subnet_max is not None, "network config not checked"
    return cfg.subnet_min, cfg.subnet_max


def free_subnets(cfg: Config, leases: Iterable[Lease | IPv4Network], limit: int = 100) -> list[IPv4Network]:
    """The candidates allocateSubnet picks from.

    Walks from SubnetMin to SubnetMax in steps of one subnet, skips any
    subnet that overlaps an existing lease (any size: a hand-made /16 lease
    blocks all of it), and stops after ``limit`` free ones, so in a big
    network only the lowest 100 free subnets are candidates.
    ``leases`` may hold Lease objects or plain IPv4Networks. (flannel's
    uint32 would wrap past 255.255.255.255; here the walk just stops.)
    """
    # Each lease as a range of addresses, sorted: the walk goes up, so one pointer into the
    # ranges tells whether a candidate overlaps one (a check of every candidate against
    # every lease was 25 CPU-ms per flanneld start in a 100-node lab).
    taken = sorted((int(n.network_address), int(n.broadcast_address)) for n in map(_subnet_of, leases))
    size = 1 << (32 - cfg.subnet_len)
    out: list[IPv4Network] = []
    subnet_min, subnet_max = _subnet_range(cfg)
    ip, at, reach = int(subnet_min), 0, -1  # reach: the highest address of the ranges passed
    while ip <= int(subnet_max) and ip < 1 << 32 and len(out) < limit:
        last = ip + size - 1
        while at < len(taken) and taken[at][0] <= last:  # ranges starting before the candidate ends
            reach = max(reach, taken[at][1])
            at += 1
        if reach < ip:  # no range that starts before the candidate's end reaches into it
            out.append(IPv4Network((ip, cfg.subnet_len), strict=False))
        ip += size
    return out


def allocate_subnet(cfg: Config, leases: Iterable[Lease | IPv4Network], rng: random.Random) -> IPv4Network:
    """allocateSubnet: a random pick among free_subnets().

    Random, not the first free one, so that nodes starting together rarely
    race for the same key. Raises OutOfSubnets when nothing is free.
    """
    free = free_subnets(cfg, leases)
    if not free:
        raise OutOfSubnets()
    return free[rng.randrange(len(free))]


def lease_fits(cfg: Config, subnet: IPv4Network) -> bool:
    """isSubnetConfigCompat: the subnet lies in SubnetMin..SubnetMax and has
    the configured length. A lease from an older config fails this."""
    ip = subnet.network_address
    subnet_min, subnet_max = _subnet_range(cfg)
    return subnet_min <= ip <= subnet_max and subnet.prefixlen == cfg.subnet_len


@dataclass
class Decision:
    """What tryAcquireLease decided, before it writes to etcd.

    subnet: the subnet the node will hold.
    reuse:  the existing lease with our PublicIP that is re-put with fresh
            attributes (None when a new key is created).
    delete: leases with our PublicIP that no longer fit the config; flannel
            deletes them before choosing.
    reason: flannel's log line for the choice.
    kind:   "reuse", "previous" or "allocate".
    ttl:    TTL of the Put in seconds; 0 when a reservation (a lease without
            expiration) is reused, which keeps it a reservation.
    logs:   every line flannel logs on this path, in order, assuming the
            etcd write then succeeds.
    """

    subnet: IPv4Network
    reuse: Lease | None
    delete: list[Lease]
    reason: str
    kind: str = ""
    ttl: int = SUBNET_TTL
    logs: list[str] = field(default_factory=list)


def _go_lease_repr(lease: Lease) -> str:
    """A short stand-in for Go's %+v of a lease (the real one prints every
    struct field, raw bytes and timestamps)."""
    a = lease.attrs
    return (f"&{{EnableIPv4:true EnableIPv6:false Subnet:{lease.subnet} IPv6Subnet:{_NO_IPV6} "
            f"Attrs:{{PublicIP:{a.public_ip} BackendType:{a.backend_type}}}}}")


def choose_subnet(cfg: Config, leases: list[Lease], public_ip: str | IPv4Address, prev_subnet: IPv4Network | None,
                  rng: random.Random, previous: str = "if-free") -> Decision:
    """The decision of tryAcquireLease, in flannel's order.

    1. The first lease whose PublicIP is ours: reuse it if it fits the
       config, otherwise mark it for deletion and go on.
    2. The previous subnet (from subnet.env): use it if no lease has exactly
       that subnet and it fits the config.
    3. Otherwise allocate a random free subnet (may raise OutOfSubnets).

    As in flannel, a lease marked for deletion still counts as taken for
    steps 2 and 3 (the list was read before the delete).

    ``previous``: how step 2 treats a previous subnet that another node's lease holds
    (versions.py, switch previous_subnet): "if-free" (v0.18.0 on, PR #1505) passes over it;
    "overwrite" (v0.8.0 - v0.17.0) takes it, re-putting that lease with our attributes:
    two nodes then believe they own one subnet (flannel #1289).
    """
    pub = parse_ip4(str(public_ip))
    logs: list[str] = []
    delete: list[Lease] = []

    mine = next((lease for lease in leases if parse_ip4(lease.attrs.public_ip or "0.0.0.0") == pub), None)
    if mine is not None:
        if lease_fits(cfg, mine.subnet):
            reason = f"Found lease (ip: {mine.subnet} ipv6: {_NO_IPV6}) for current IP ({pub}), reusing"
            logs.append(reason)
            ttl = 0 if mine.expiration is None else SUBNET_TTL
            return Decision(mine.subnet, mine, [], reason, "reuse", ttl, logs)
        logs.append(f"Found lease ({_go_lease_repr(mine)}) for current IP ({pub}) "
                    f"but not compatible with current config, deleting")
        delete.append(mine)

    chosen = None
    reason = ""
    kind = "allocate"
    if prev_subnet is not None and not (int(prev_subnet.network_address) == 0 and prev_subnet.prefixlen == 0):
        held = next((lease for lease in leases if lease.subnet == prev_subnet), None)
        if held is not None and previous == "overwrite":  # v0.17.0:subnet/etcdv2/local_manager.go
            if lease_fits(cfg, held.subnet):
                reason = f"Found lease ({held.subnet}) matching previously leased subnet, reusing"
                logs.append(reason)
                return Decision(held.subnet, held, delete, reason, "reuse",
                                0 if held.expiration is None else SUBNET_TTL, logs)
            logs.append(f"Found lease ({held.subnet}) matching previously leased subnet but not "
                        "compatible with current config, deleting")
            delete.append(held)
        elif held is None:
            if lease_fits(cfg, prev_subnet):
                reason = f"Found previously leased subnet ({prev_subnet}), reusing"
                logs.append(reason)
                chosen, kind = prev_subnet, "previous"
            else:
                logs.append(f"Found previously leased subnet ({prev_subnet}) that is not compatible "
                            f"with the Etcd network config, ignoring")

    if chosen is None:
        logs.append(f"Picking subnet in range {cfg.subnet_min} ... {cfg.subnet_max}")
        try:
            chosen = allocate_subnet(cfg, leases, rng)
        except OutOfSubnets as e:  # allocateSubnet logged "Picking ..." before it failed
            e.logs, e.delete = logs, delete
            raise

    # flannel's format string ends with a space
    allocated = f"Allocated lease (ip: {chosen} ipv6: {_NO_IPV6}) to current node ({pub}) "
    logs.append(allocated)
    return Decision(chosen, None, delete, reason or allocated, kind, SUBNET_TTL, logs)
