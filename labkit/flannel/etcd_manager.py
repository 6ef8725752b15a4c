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
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from . import log
from .config import Config, parse_config
from .subnet import (
    EVENT_ADDED,
    EVENT_REMOVED,
    Event,
    Lease,
    LeaseAttrs,
    LeaseWatcher,
    OutOfSubnets,
    choose_subnet,
    parse_subnet_key,
    subnet_key,
)

if TYPE_CHECKING:
    from etcd3 import Etcd3Client  # python-etcd3 ships no types: to mypy this is Any

SRC = "local_manager.go"
RACE_RETRIES = 10
SUBNET_TTL = 24 * 3600


def lease_from_node(key: str, value: str | bytes, expiration: float | None) -> Lease | None:
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
    def __str__(self) -> str:
        return "flannel config not found in etcd store. Did you create your config using etcdv3 API?"


class SubnetAlreadyExists(Exception):
    def __str__(self) -> str:
        return "subnet already exists"


# grpc's Python layer waits for an answer in slices of 0.1 s (grpc._common.wait), so that a
# signal handler of the main thread is never held up for long (grpc issue 19464, for
# platforms where a lock wait cannot be interrupted). On Linux a signal interrupts a lock wait
# anyway, and flanneld's watch thread waits on its stream for as long as flanneld runs: ten
# wake-ups a second in each of a lab's flanneld were 40% of an idle flanneld's CPU.
GRPC_WAIT_SLICE = 3600.0


def quiet_grpc_waits() -> None:
    """Let grpc's blocking waits sleep until they are woken (see GRPC_WAIT_SLICE); this
    process only (flanneld), not the lab's own process or a notebook's kernel."""
    import grpc._common
    grpc._common.MAXIMUM_WAIT_TIMEOUT = GRPC_WAIT_SLICE


def connect(endpoints: str) -> Etcd3Client:
    """A python-etcd3 client for the first endpoint of `-etcd-endpoints` that answers."""
    from ..etcdpb import import_etcd3
    etcd3 = import_etcd3()
    quiet_grpc_waits()
    last: Exception | None = None
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
    def __init__(self, client: Etcd3Client, prefix: str, previous_subnet: IPv4Network | None = None, *,
                 ttl: int = SUBNET_TTL, renew_margin: float = 3600, rng: random.Random | None = None) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.previous_subnet = previous_subnet
        self.ttl = ttl
        self.renew_margin = renew_margin
        self.rng = rng or random.Random()

    # -- config (registry.getNetworkConfig + ParseConfig) -------------------------------
    def get_network_config(self) -> Config:
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
        leases: list[Lease] = []
        for kv in resp.kvs:
            lease = self._lease_from_kv(kv.key.decode(), kv.value, kv.lease)
            if lease is not None:
                leases.append(lease)
        revision: int = resp.header.revision
        return leases, revision

    def _put(self, key: str, attrs: LeaseAttrs, ttl: int) -> float | None:
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

    def _try_acquire_lease(self, config: Config, attrs: LeaseAttrs) -> Lease | None:
        """One attempt: list the leases, decide (pure, in subnet.py), then write."""
        leases, _ = self.get_subnets()
        try:
            decision = choose_subnet(config, leases, ipaddress.IPv4Address(attrs.public_ip),
                                     self.previous_subnet, self.rng)
        except OutOfSubnets as e:  # flannel logs "Picking subnet in range ..." and then fails
            for line in e.logs:
                log.info(SRC, line)
            for stale in e.delete:
                self.client.delete(subnet_key(self.prefix, stale.subnet))
            raise
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
        assert lease.key is not None, "a lease we acquired knows its key"
        lease.expiration = self._put(lease.key, lease.attrs, self.ttl)

    def next_renewal(self, lease: Lease) -> float:
        """Seconds until renewal: expiration minus the renew margin (CompleteLease)."""
        if lease.expiration is None:
            return float("inf")
        return max(0.0, lease.expiration - time.time() - self.renew_margin)

    # -- watch (WatchLeases / registry.watchSubnets) ------------------------------------
    def watch_leases(self, callback: WatchCallback, start_revision: int,
                     stop: threading.Event | None = None) -> threading.Event:
        """Watch <prefix>/subnets/ from `start_revision` in a thread, for as long as flanneld runs.

        callback(list[Event]) gets each etcd watch response's events (DELETE events
        carry only the subnet; LeaseWatcher fills in the cached lease), and
        callback(Snapshot) a fresh list of every lease when the watch fell behind
        etcd's compaction (the caller diffs it, as LeaseWatcher.Reset does).
        As in flannel's watchSubnets, a watch stream that breaks (etcd restarted,
        killed, unreachable) is opened again from the revision after the last one
        seen, after a back-off of 100 ms doubling up to 5 s, reset by every answer.
        """
        stop = stop or threading.Event()
        threading.Thread(target=self._watch_loop, args=(callback, start_revision, stop),
                         daemon=True, name="watchSubnets").start()
        return stop

    def _watch_loop(self, callback: WatchCallback, since: int, stop: threading.Event) -> None:
        key = f"{self.prefix}/subnets"  # path.Join: no trailing slash in flannel's messages
        backoff = WATCH_INITIAL_BACKOFF
        while not stop.is_set():
            ended = threading.Event()  # ends this stream's request side (no thread left behind)
            try:
                for resp in self._watch_stream(since, stop, ended):
                    if resp.compact_revision:
                        raise _Compacted(resp.compact_revision)
                    if resp.canceled:
                        raise _Closed(resp.cancel_reason or "watch canceled")
                    backoff = WATCH_INITIAL_BACKOFF  # reset on every answer
                    if resp.header.revision:
                        since = resp.header.revision + 1
                    batch = self._events_of(resp)
                    if batch:
                        callback(batch)
                err = "watch stream ended"
            except _Compacted as c:
                log.warning("registry.go", f"etcd watch for {key} fell behind compaction horizon "
                                           f"(compact rev {c.rev}), re-listing and resuming")
                while not stop.is_set():
                    try:
                        leases, rev = self.get_subnets()
                        callback(Snapshot(leases))
                        since = rev + 1
                        backoff = WATCH_INITIAL_BACKOFF
                        break
                    except Exception as e:
                        log.error("registry.go", f"failed to re-list subnets after compaction: {go_error(e)}")
                        stop.wait(backoff)
                        backoff = min(backoff * 2, WATCH_MAX_BACKOFF)
                continue
            except Exception as e:
                err = go_error(e)
            finally:
                ended.set()
            if stop.is_set():
                return
            log.warning("registry.go", f"etcd watch channel for {key} closed ({err}), "
                                       f"reconnecting from rev {since}...")
            stop.wait(backoff)
            backoff = min(backoff * 2, WATCH_MAX_BACKOFF)

    def _watch_stream(self, since: int, stop: threading.Event, ended: threading.Event) -> Iterator[Any]:
        """One gRPC Watch stream on the prefix (etcd.WithRequireLeader, WithPrefix, WithRev)."""
        from etcd3 import etcdrpc, utils
        prefix = f"{self.prefix}/subnets/".encode()
        create = etcdrpc.WatchCreateRequest(key=prefix, range_end=utils.increment_last_byte(prefix),
                                            start_revision=since)

        def requests() -> Iterator[Any]:  # keep our side of the stream open until flanneld stops
            yield etcdrpc.WatchRequest(create_request=create)
            while not (stop.is_set() or ended.wait(0.5)):
                pass
        stub = etcdrpc.WatchStub(self.client.channel)  # our own stream, not python-etcd3's Watcher
        responses: Iterator[Any] = stub.Watch(requests(), metadata=(("hasleader", "true"),))  # WatchResponses
        return responses

    def _events_of(self, resp: Any) -> list[Event]:  # resp: an etcd WatchResponse (protobuf)
        batch: list[Event] = []
        for e in resp.events:
            key = e.kv.key.decode()
            subnet = parse_subnet_key(key)
            if subnet is None:
                continue
            if e.type == 0:  # PUT
                lease = self._lease_from_kv(key, e.kv.value, e.kv.lease)
                if lease is not None:
                    batch.append(Event(EVENT_ADDED, lease))
            else:  # DELETE, also when the key's lease expired
                batch.append(Event(EVENT_REMOVED, Lease(subnet=subnet, attrs=LeaseAttrs(public_ip=""),
                                                   expiration=None, key=key)))
        return batch


WATCH_INITIAL_BACKOFF = 0.1  # registry.go: initialBackoff 100 ms, doubled up to maxBackoff 5 s
WATCH_MAX_BACKOFF = 5.0


class Snapshot(list[Lease]):
    """Every lease, listed again after the watch fell behind etcd's compaction."""


# what watch_leases hands its callback: a batch of events, or a Snapshot
WatchCallback = Callable[[list[Event] | Snapshot], None]


class _Compacted(Exception):
    def __init__(self, rev: int) -> None:
        super().__init__(rev)
        self.rev = rev


class _Closed(Exception):
    pass


def go_error(e: BaseException) -> str:
    """An error on one line, as Go's %v prints a gRPC status: `rpc error: code = Unavailable desc = ...`."""
    import grpc
    if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        code = "".join(w.title() for w in e.code().name.split("_"))
        return f"rpc error: code = {code} desc = {' '.join(str(e.details() or '').split())}"
    cause = e.__cause__ or e.__context__
    if isinstance(cause, grpc.RpcError) and not str(e):
        return go_error(cause)
    return " ".join(str(e).split()) or type(e).__name__


__all__ = ["LocalManager", "LeaseWatcher", "ConfigNotFound", "SubnetAlreadyExists", "Snapshot", "connect",
           "go_error"]
