"""The subnet manager over the etcd v2 keys API, for flannel 0.9.0 - 0.17.0
(mirrors v0.17.0:subnet/etcdv2/{local_manager,registry}.go).

The same steps as ``etcd_manager.LocalManager`` (v3, flannel >= 0.18.0), with v2's means: a
lease is a key with a TTL (``PUT ...?ttl=86400``), a new one is created with
``prevExist=false`` (error 105 when another node won: try again), and the watch is a long
poll from an etcd index. When the index has left etcd's history (error 401, "the requested
history has been cleared"), the leases are listed again and diffed (a Snapshot), as
WatchLeases did. The HTTP plumbing is flannel 0.7.1's (``legacy/registry.py``): the v2 API
did not change. Which subnet to take is ``subnet.choose_subnet``; before PR #1505
(v0.18.0) the previous subnet from subnet.env was taken even when another node held it
(``previous="overwrite"``, flannel #1289).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import random
import threading
import time
from ipaddress import IPv4Network

from . import log, versions
from .config import Config, parse_config
from .etcd_manager import SUBNET_TTL, LocalManager, Snapshot, WatchCallback, lease_from_node
from .legacy.registry import Body, EtcdError, V2Registry
from .subnet import (
    EVENT_ADDED,
    EVENT_REMOVED,
    Event,
    Lease,
    LeaseAttrs,
    OutOfSubnets,
    choose_subnet,
    parse_subnet_key,
    subnet_key,
)

SRC = "local_manager.go"


def lease_value(attrs: LeaseAttrs, style: str | None = None) -> str:
    """The lease JSON of a release (versions.py, lease_json): VNI joined VtepMAC in
    BackendData in v0.14.0, PublicIPv6 (null) came in v0.15.0."""
    style = style or versions.active()["lease_json"]
    if style == "vtepmac" and isinstance(attrs.backend_data, dict):
        attrs = dataclasses.replace(attrs, backend_data={k: v for k, v in attrs.backend_data.items() if k != "VNI"})
    text = attrs.to_json()
    return text if style == "ipv6" else text.replace(',"PublicIPv6":null', "", 1)


def _lease(node: Body) -> Lease | None:
    ttl = node.get("ttl")
    return lease_from_node(node["key"], node.get("value", ""), None if ttl is None else time.time() + ttl)


class V2LocalManager(LocalManager):
    """LocalManager's steps over v2 (acquire_lease and next_renewal are inherited as they are)."""

    def __init__(self, endpoints: str, prefix: str, previous_subnet: IPv4Network | None = None, *,
                 ttl: int = SUBNET_TTL, renew_margin: float = 3600, previous: str = "overwrite",
                 rng: random.Random | None = None) -> None:
        self.client = None  # no v3 client: every method that used it is v2's here
        self.reg = V2Registry(endpoints, prefix)
        self.prefix = prefix.rstrip("/")
        self.previous_subnet = previous_subnet
        self.previous = previous
        self.ttl = ttl
        self.renew_margin = renew_margin
        self.rng = rng or random.Random()

    def get_network_config(self) -> Config:
        return parse_config(self.reg.get_network_config())

    def get_subnets(self) -> tuple[list[Lease], int]:
        nodes, index = self.reg.get_subnets()
        return [lease for lease in (_lease(n) for n in nodes) if lease is not None], index

    def _try_acquire_lease(self, config: Config, attrs: LeaseAttrs) -> Lease | None:
        leases, _ = self.get_subnets()
        try:
            d = choose_subnet(config, leases, ipaddress.IPv4Address(attrs.public_ip), self.previous_subnet,
                              self.rng, previous=self.previous)
        except OutOfSubnets as e:
            for line in e.logs:
                log.info(SRC, line)
            for stale in e.delete:
                self.reg.delete_subnet(subnet_key(self.prefix, stale.subnet))
            raise
        *before, last = d.logs
        for line in before:
            log.info(SRC, line)
        for stale in d.delete:
            self.reg.delete_subnet(subnet_key(self.prefix, stale.subnet))
        key = subnet_key(self.prefix, d.subnet)
        if d.kind == "reuse":  # our own lease, or (before v0.18.0) the previous subnet's, whoever holds it
            log.info(SRC, last)
            exp = self.reg.update_subnet(key, lease_value(attrs), self.ttl if d.ttl else 0)
            return Lease(subnet=d.subnet, attrs=attrs, expiration=exp, key=key)
        try:
            exp = self.reg.create_subnet(key, lease_value(attrs), self.ttl)
        except EtcdError as e:
            if e.code == 105:  # key exists: another node won the race, try again
                return None
            raise
        log.info(SRC, last)
        return Lease(subnet=d.subnet, attrs=attrs, expiration=exp, key=key)

    def renew_lease(self, lease: Lease) -> None:
        assert lease.key is not None, "a lease we acquired knows its key"
        lease.expiration = self.reg.update_subnet(lease.key, lease_value(lease.attrs), self.ttl)

    def watch_leases(self, callback: WatchCallback, start_revision: int,
                     stop: threading.Event | None = None) -> threading.Event:
        """Long polls from etcd index `start_revision` in a thread; a lost index re-lists."""
        stop = stop or threading.Event()

        def loop(index: int) -> None:
            while not stop.is_set():
                try:
                    changes, index = self.reg.watch_subnets(index - 1)
                    batch = [ev for ev in (self._event(*c) for c in changes) if ev is not None]
                    index += 1
                    if batch:
                        callback(batch)
                    continue
                except EtcdError as e:
                    if e.code == 401:  # EventIndexCleared: list again (WatchLeases' reset)
                        log.warning(SRC, "Watch of subnet leases failed because etcd index outside "
                                         "history window")
                        try:
                            leases, last = self.get_subnets()
                            callback(Snapshot(leases))
                            index = last + 1
                            continue
                        except Exception as e2:
                            err = str(e2)
                    else:
                        err = str(e)
                except Exception as e:
                    err = " ".join(str(e).split())
                if stop.is_set():
                    return
                log.error("watch.go", f"Watch subnets: {err}")
                stop.wait(1)
        threading.Thread(target=loop, args=(start_revision,), daemon=True, name="watchSubnets").start()
        return stop

    def _event(self, action: str, key: str, value: str) -> Event | None:
        sn = parse_subnet_key(key)
        if sn is None:
            return None
        if action in ("delete", "expire", "compareAndDelete"):
            return Event(EVENT_REMOVED, Lease(subnet=sn, attrs=LeaseAttrs(public_ip=""), key=key))
        lease = lease_from_node(key, value, float("inf"))
        return None if lease is None else Event(EVENT_ADDED, lease)
