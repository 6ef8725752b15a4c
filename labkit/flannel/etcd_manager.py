"""The subnet manager over etcd v3 (mirrors pkg/subnet/etcd/{local_manager,registry}.go).

Everything flanneld knows about the cluster lives under ``<prefix>``:
``<prefix>/config`` (written by the admin) and ``<prefix>/subnets/<net>-<len>`` (one
lease per node, written by each flanneld, bound to a 24 h etcd lease). This module
does the etcd side of flannel's steps; the *decisions* (which subnet to take, how a
watch event changes the set of known leases) are pure functions in ``subnet.py``.
"""
from __future__ import annotations

import ipaddress
import random
import time
import urllib.parse

from . import log
from .config import parse_config
from .subnet import (EVENT_ADDED, EVENT_REMOVED, Event, Lease, LeaseAttrs, LeaseWatcher, choose_subnet, parse_subnet_key,
                     subnet_key)

SRC = "local_manager.go"
RACE_RETRIES = 10
SUBNET_TTL = 24 * 3600


def lease_from_node(key: str, value, expiration: float | None) -> Lease | None:
    """A lease from one etcd key/value (v2 node or v3 kv); None for keys that are not leases."""
    subnet = parse_subnet_key(key)
    if subnet is None:
        return None
    try:
        attrs = LeaseAttrs.from_json(value)
    except ValueError as e:
        log.warning("registry.go", f"Ignoring bad subnet node: {e}")
        return None
    return Lease(subnet=subnet, attrs=attrs, expiration=expiration, key=key)


class ConfigNotFound(Exception):
    def __str__(self):
        return "flannel config not found in etcd store. Did you create your config using etcdv3 API?"


class SubnetAlreadyExists(Exception):
    def __str__(self):
        return "subnet already exists"


def connect(endpoints: str):
    """A python-etcd3 client for the first endpoint of `-etcd-endpoints` that answers."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import etcd3
    last = None
    for ep in endpoints.split(","):
        u = urllib.parse.urlparse(ep.strip())
        client = etcd3.client(host=u.hostname or "127.0.0.1", port=u.port or 2379, timeout=5)
        try:
            client.status()
            return client
        except Exception as e:  # try the next endpoint, as flannel's etcd client does
            last = e
    raise ConnectionError(f"no etcd endpoint answered ({endpoints}): {last}")


class LocalManager:
    def __init__(self, client, prefix: str, previous_subnet=None, *, ttl: int = SUBNET_TTL,
                 renew_margin: int = 3600, rng: random.Random | None = None):
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.previous_subnet = previous_subnet
        self.ttl = ttl
        self.renew_margin = renew_margin
        self.rng = rng or random.Random()

    # -- config (registry.getNetworkConfig + ParseConfig) -------------------------------
    def get_network_config(self):
        value, _ = self.client.get(f"{self.prefix}/config")
        if value is None:
            raise ConfigNotFound()
        return parse_config(value)

    # -- leases -----------------------------------------------------------------------
    def _lease_from_kv(self, key: str, value: bytes, lease_id: int) -> Lease | None:
        # Only whether a lease has a TTL matters here (no TTL = a reservation); the
        # exact expiration is looked up for our own lease only.
        return lease_from_node(key, value, None if lease_id == 0 else float("inf"))

    def get_subnets(self) -> tuple[list[Lease], int]:
        """All leases plus the etcd revision of the snapshot (registry.getSubnets)."""
        resp = self.client.get_prefix_response(f"{self.prefix}/subnets/")
        leases = []
        for kv in resp.kvs:
            lease = self._lease_from_kv(kv.key.decode(), kv.value, kv.lease)
            if lease is not None:
                leases.append(lease)
        return leases, resp.header.revision

    def _put(self, key: str, attrs: LeaseAttrs, ttl: int):
        lease = self.client.lease(ttl) if ttl else None
        self.client.put(key, attrs.to_json(), lease=lease)
        return time.time() + ttl if ttl else None

    def acquire_lease(self, attrs: LeaseAttrs) -> Lease:
        """AcquireLease: up to RACE_RETRIES attempts of tryAcquireLease."""
        config = self.get_network_config()
        for _ in range(RACE_RETRIES):
            lease = self._try_acquire_lease(config, attrs)
            if lease is not None:
                return lease
        raise RuntimeError("max retries reached trying to acquire a subnet")

    def _try_acquire_lease(self, config, attrs: LeaseAttrs) -> Lease | None:
        """One attempt: list the leases, decide (pure, in subnet.py), then write."""
        leases, _ = self.get_subnets()
        decision = choose_subnet(config, leases, ipaddress.IPv4Address(attrs.public_ip),
                                 self.previous_subnet, self.rng)
        *before, last = decision.logs
        for line in before:
            log.info(SRC, line)
        for stale in decision.delete:  # our old lease no longer fits the config
            self.client.delete(subnet_key(self.prefix, stale.subnet))
        key = subnet_key(self.prefix, decision.subnet)
        if decision.kind == "reuse":
            log.info(SRC, last)
            ttl = self.ttl if decision.ttl else 0  # a reservation stays a reservation
            exp = self._put(key, attrs, ttl)
            return Lease(subnet=decision.subnet, attrs=attrs, expiration=exp, key=key)
        exp = self._create_subnet(key, attrs)
        log.info(SRC, last)  # "Allocated lease ...", logged once the key exists
        return Lease(subnet=decision.subnet, attrs=attrs, expiration=exp, key=key)

    def _create_subnet(self, key: str, attrs: LeaseAttrs) -> float:
        """registry.createSubnet: put only if the key does not exist yet (a txn)."""
        lease = self.client.lease(self.ttl)
        tx = self.client.transactions
        ok, _ = self.client.transaction(
            compare=[tx.version(key) == 0],
            success=[tx.put(key, attrs.to_json(), lease)],
            failure=[])
        if not ok:
            self.client.revoke_lease(lease.id)
            # flannel >= v0.18 does not retry this error: flanneld exits and systemd restarts it
            raise SubnetAlreadyExists()
        return time.time() + self.ttl

    def renew_lease(self, lease: Lease) -> None:
        """RenewLease: a fresh TTL lease and an unconditional put of the same attrs."""
        lease.expiration = self._put(lease.key, lease.attrs, self.ttl)

    def next_renewal(self, lease: Lease) -> float:
        """Seconds until renewal: expiration minus the renew margin (CompleteLease)."""
        if lease.expiration is None:
            return float("inf")
        return max(0.0, lease.expiration - time.time() - self.renew_margin)

    # -- watch (WatchLeases) --------------------------------------------------------------
    def watch_leases(self, callback, start_revision: int):
        """Call callback(list[Event]) for each etcd watch response on <prefix>/subnets/.

        DELETE events carry only the subnet; LeaseWatcher fills in the cached lease.
        """
        import etcd3.events as ev

        def on_response(resp):
            if isinstance(resp, Exception):
                log.warning("registry.go", f"Watch of subnet failed with error {resp}")
                return
            batch = []
            for e in resp.events:
                key = e.key.decode()
                subnet = parse_subnet_key(key)
                if subnet is None:
                    continue
                if isinstance(e, ev.PutEvent):
                    lease = self._lease_from_kv(key, e.value, getattr(e, "lease", 1) or 0)
                    if lease is not None:
                        batch.append(Event(EVENT_ADDED, lease))
                elif isinstance(e, ev.DeleteEvent):
                    batch.append(Event(EVENT_REMOVED, Lease(subnet=subnet, attrs=LeaseAttrs(public_ip=""),
                                                       expiration=None, key=key)))
            if batch:
                callback(batch)

        return self.client.add_watch_prefix_callback(f"{self.prefix}/subnets/", on_response,
                                                     start_revision=start_revision)


__all__ = ["LocalManager", "LeaseWatcher", "ConfigNotFound", "SubnetAlreadyExists", "connect"]
