"""flanneld 0.7.1's main loop (mirrors v0.7.1:main.go and network/{manager,network}.go).

1. flags; external interface; the etcd v2 subnet manager;
2. init, retried every second until it works: fetch and parse the config, pick the
   backend, RegisterNetwork (device -> lease -> Configure);
3. write subnet.env ("Lease acquired: ...");
4. run: lease events and L3 misses for the backend; renew our lease before it
   expires; if our lease is deleted, log "Lease has been revoked" and start again at 2.
"""
from __future__ import annotations

import ipaddress
import json
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from .. import log, versions
from ..config import Config
from ..daemon import KUBE_SUBNET_MGR_REFUSAL, EventQueue, FlagError, Options, parse_flags, usage
from ..etcd_manager import lease_from_node
from ..subnet import (
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
from ..subnetenv import previous_subnet, write_subnet_file
from .config import parse_config
from .registry import Body, EtcdError, V2Registry
from .vxlan import LegacyVXLANDevice, LegacyVXLANNetwork, Miss, parse_backend_config

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..iface import ExternalInterface

# what the main loop waits on: a signal, watch changes, a re-list, or an L3 miss
Item = (Literal["stop"] | tuple[Literal["watch"], list[tuple[str, str, str]]]
        | tuple[Literal["reset"], list[Body]] | Miss)

SRC = "network.go"


class UseUdp(Exception):
    """The config names the udp backend: run_udp takes over."""

    def __init__(self, config: Config) -> None:
        super().__init__("udp")
        self.config = config


def lease_json(public_ip: str, mac: str) -> str:
    """0.7.1's LeaseAttrs: no PublicIPv6 field yet, BackendData has only the VtepMAC."""
    return json.dumps({"PublicIP": public_ip, "BackendType": "vxlan", "BackendData": {"VtepMAC": mac}},
                      separators=(",", ":"))


def to_lease(key: str, value: str, ttl: float | None) -> Lease | None:
    return lease_from_node(key, value, None if ttl is None else time.time() + ttl)


class Daemon:
    def __init__(self, opts: Options, ext: ExternalInterface, ipr: IPRoute) -> None:
        self.opts, self.ext, self.ipr = opts, ext, ipr
        self.reg = V2Registry(opts["etcd-endpoints"], opts["etcd-prefix"])
        self.ttl = opts["lab-subnet-ttl"]
        self.margin = opts["lab-renew-margin-seconds"] or opts["subnet-lease-renew-margin"] * 60
        seed = opts["lab-seed"]
        self.rng = random.Random(f"{seed}/{ext.ext_addr}") if seed else random.Random()
        self.events: queue.Queue[Item] = queue.Queue()
        self.stop: list[int] = []
        self.generation = 0  # a restarted network ignores the old watch thread
        self.monitoring: set[int] = set()
        self.udp_events: EventQueue | None = None  # the udp backend's loop (daemon._run) when it runs
        # v0.8.0 reads the previous subnet back from subnet.env (and takes it even from another
        # node: flannel #1289); 0.7.1 does not (versions.py, previous_subnet)
        self.previous = versions.active()["previous_subnet"]
        self.prev = previous_subnet(opts["subnet-file"]) if self.previous != "ignored" else None

    # -- init (retryInit) -------------------------------------------------------------
    def init(self) -> tuple[Config, LegacyVXLANDevice, Lease]:
        try:
            config = parse_config(self.reg.get_network_config())
        except Exception as e:
            raise RuntimeError(f"failed to retrieve network config: {e}") from e
        if config.backend_type == "udp":
            raise UseUdp(config)
        if config.backend_type != "vxlan":
            raise RuntimeError(f"failed to create and initialize network: "
                               f"unknown backend type: {config.backend_type}"
                               if config.backend_type not in ("host-gw", "alloc", "aws-vpc", "gce")
                               else "failed to create and initialize network: labkit's flannel 0.7 "
                                    "emulation only has the vxlan and udp backends")
        cfg = parse_backend_config(config.backend)
        dev = LegacyVXLANDevice(self.ipr, f"flannel.{cfg['VNI']}", cfg["VNI"], self.ext.index,
                                self.ext.iface_addr, cfg["Port"], cfg["GBP"])
        try:
            lease = self.acquire(config, LeaseAttrs(public_ip=str(self.ext.ext_addr), backend_type="vxlan",
                                                    backend_data={"VtepMAC": dev.mac}), dev.mac)
        except Exception as e:
            raise RuntimeError(f"failed to register network: failed to acquire lease: {e}") from e
        assert config.network is not None  # 0.7.1's ParseConfig fills in 0.0.0.0/0
        dev.configure(lease.subnet.network_address, ipaddress.IPv4Network(
            f"{lease.subnet.network_address}/{config.network.prefixlen}", strict=False))
        return config, dev, lease

    def acquire(self, config: Config, attrs: LeaseAttrs, mac: str) -> Lease:
        """AcquireLease/tryAcquireLease: reuse by PublicIP, else a random free subnet."""
        value = lease_json(attrs.public_ip, mac)
        for _ in range(10):
            nodes = self.reg.get_subnets()[0]
            leases = [lease for lease in (to_lease(n["key"], n["value"], n["ttl"]) for n in nodes) if lease]
            try:
                d = choose_subnet(config, leases, self.ext.ext_addr, self.prev, self.rng, previous=self.previous)
            except OutOfSubnets as e:  # allocateSubnet logs "Picking ..." and then fails
                self._delete_stale(e.delete, attrs)
                log.info("local_manager.go", f"Picking subnet in range {config.subnet_min} ... {config.subnet_max}")
                raise
            key = subnet_key(self.opts["etcd-prefix"], d.subnet)
            self._delete_stale(d.delete, attrs)
            if d.kind == "reuse":
                log.info("local_manager.go", d.reason if "previously" in d.reason
                         else f"Found lease ({d.subnet}) for current IP ({attrs.public_ip}), reusing")
                exp = self.reg.update_subnet(key, value, self.ttl if d.ttl else 0)
                return Lease(subnet=d.subnet, attrs=attrs, expiration=exp, key=key)
            if d.kind == "previous":
                log.info("local_manager.go", d.reason)
            else:
                log.info("local_manager.go", f"Picking subnet in range {config.subnet_min} ... {config.subnet_max}")
            try:
                exp = self.reg.create_subnet(key, value, self.ttl)
                return Lease(subnet=d.subnet, attrs=attrs, expiration=exp, key=key)
            except EtcdError as e:
                if e.code != 105:  # 105 = key exists: another node won the race, try again
                    raise
        raise RuntimeError("Max retries reached trying to acquire a subnet")

    def _delete_stale(self, stale_leases: list[Lease], attrs: LeaseAttrs) -> None:
        for stale in stale_leases:
            log.info("local_manager.go", f"Found lease ({stale.subnet}) for current IP ({attrs.public_ip}) "
                                         "but not compatible with current config, deleting")
            self.reg.delete_subnet(subnet_key(self.opts["etcd-prefix"], stale.subnet))

    def run_udp(self, config: Config) -> None:
        """The udp backend of 0.7.1 (v0.7.1:backend/udp/{udp,network}.go, proxy.c): the lease
        (PublicIP only), the flannel0 TUN with the lease's address and the *Network's* prefix
        (10.108.5.0/16; /32 from v0.11.0: versions.py, udp_tun_address), MTU = underlay - 28,
        the route for the Network, and the proxy, whose C code has not changed since 0.7.1:
        so the modern backend is reused (backends/udp/), over the etcd v2 subnet manager, and
        so is the modern main loop (it watches, renews, and exits when flanneld stops; also when
        our lease is deleted, where 0.7.1 would register again). Its log lines carry the modern
        udp files' names (udp_network_amd64.go; 0.7.1's was backend/udp/network.go)."""
        from ..backends.udp.udp import UdpBackend
        from ..daemon import _run
        from ..etcdv2_manager import V2LocalManager
        sm = V2LocalManager(self.opts["etcd-endpoints"], self.opts["etcd-prefix"], self.prev, ttl=self.ttl,
                            renew_margin=self.margin, previous=self.previous, rng=self.rng)
        bn = UdpBackend(sm, self.ext, self.ipr).register_network(config)
        assert bn.lease is not None and config.network is not None  # RegisterNetwork acquired it
        log.info("manager.go", f"Lease acquired: {bn.lease.subnet}")
        write_subnet_file(self.opts["subnet-file"], config.network, bn.lease.subnet, bn.mtu(), self.opts["ip-masq"])
        self.udp_events = queue.Queue()
        if self.stop:
            self.udp_events.put(None)
        _run(sm, bn, self.udp_events, self.stop)  # ends the process (os._exit) when flanneld stops

    # -- run -----------------------------------------------------------------------------
    def watch(self, since: int) -> None:
        gen = self.generation

        def loop(index: int) -> None:
            while gen == self.generation:
                try:
                    changes, index = self.reg.watch_subnets(index)
                    if gen == self.generation:
                        self.events.put(("watch", changes))
                    continue
                except EtcdError as e:
                    err: Exception = e
                    if e.code == 401:  # index cleared from history: re-list (leasesWatchReset)
                        log.warning("local_manager.go", "Watch of subnet leases failed because etcd "
                                                        "index outside history window")
                        try:
                            nodes, index = self.reg.get_subnets()
                            if gen == self.generation:
                                self.events.put(("reset", nodes))
                            continue
                        except Exception as e2:
                            err = e2
                except Exception as e:  # etcd restarted, killed, unreachable: watch again in 1 s
                    err = e
                if gen != self.generation or self.stop:
                    return
                import http.client
                why = ("unexpected EOF" if isinstance(err, http.client.IncompleteRead)
                       else " ".join(str(err).split()))
                log.error("watch.go", f"Watch subnets: {why}")  # a long poll cut by etcd going away
                time.sleep(1)
        threading.Thread(target=loop, args=(since,), daemon=True, name="watch").start()

    def run_once(self) -> bool:
        """One life of the network; True when it should start again (lease revoked)."""
        while True:
            try:
                config, dev, lease = self.init()
                break
            except UseUdp as u:
                try:
                    self.run_udp(u.config)  # returns only if registering failed: try again in 1 s
                except Exception as e:
                    log.error(SRC, f"failed to register network: {e}")
                try:
                    if self.events.get(timeout=1) == "stop":
                        return False
                except queue.Empty:
                    pass
            except Exception as e:
                log.error(SRC, str(e))
                try:
                    if self.events.get(timeout=1) == "stop":
                        return False
                except queue.Empty:
                    pass
        bn = LegacyVXLANNetwork(dev)
        log.info("manager.go", f"Lease acquired: {lease.subnet}")
        write_subnet_file(self.opts["subnet-file"], config.network, lease.subnet, bn.mtu(), self.opts["ip-masq"])
        log.info("vxlan.go", "Watching for L3 misses")
        if dev.index not in self.monitoring:
            self.monitoring.add(dev.index)
            dev.monitor_misses(self.events.put)
        self.generation += 1
        log.info("vxlan.go", "Watching for new subnet leases")
        watcher = LeaseWatcher(own_subnet=lease.subnet)
        nodes, index = self.reg.get_subnets()
        leases = [found for found in (to_lease(n["key"], n["value"], n["ttl"]) for n in nodes) if found]
        bn.handle_initial([other for other in leases if other.subnet != lease.subnet])
        watcher.reset(leases)
        self.watch(index)
        renew_at = time.time() + max(0, self.ttl - self.margin)
        while not self.stop:
            item: Item | None
            try:
                item = self.events.get(timeout=max(0.0, renew_at - time.time()))
            except queue.Empty:
                item = None
            if item == "stop":
                return False
            if item and item[0] == "miss":
                bn.handle_miss(item[1])
            elif item and item[0] == "reset":  # a fresh list after a lost index: diff it
                leases = [found for found in (to_lease(n["key"], n["value"], n["ttl"]) for n in item[1]) if found]
                if not any(listed.subnet == lease.subnet for listed in leases):
                    log.warning(SRC, "Lease has been revoked")
                    return True
                for out in watcher.reset(leases):
                    bn.handle_event(out.type, out.lease)
            elif item and item[0] == "watch":
                for action, key, value in item[1]:
                    sn = parse_subnet_key(key)
                    if sn is None:
                        continue
                    removed = action in ("delete", "expire", "compareAndDelete")
                    if sn == lease.subnet:
                        if removed:
                            log.warning(SRC, "Lease has been revoked")
                            return True
                        renew_at = time.time() + max(0, self.ttl - self.margin)
                        continue
                    if removed:
                        ev = Event(EVENT_REMOVED, Lease(subnet=sn, attrs=LeaseAttrs(public_ip="")))
                    else:
                        added = to_lease(key, value, self.ttl)
                        # a value that is not a lease stops the daemon here (0.7.1 would skip it)
                        assert added is not None, f"not a lease: {key}"
                        ev = Event(EVENT_ADDED, added)
                    for out in watcher.update([ev]):
                        bn.handle_event(out.type, out.lease)
            if time.time() >= renew_at:
                assert lease.key is not None  # acquire() names the key it wrote
                try:
                    exp = self.reg.update_subnet(lease.key, lease_json(str(self.ext.ext_addr), dev.mac), self.ttl)
                    log.info(SRC, "Lease renewed, new expiration: " +
                             time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(exp)))
                    assert exp is not None, "a lease renewed without a TTL has no expiration"
                    renew_at = exp - self.margin
                except Exception as e:
                    log.error(SRC, f"Error renewing lease (trying again in 1 min): {e}")
                    renew_at = time.time() + 60
        return False


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_flags(sys.argv[1:] if argv is None else argv)
    except FlagError as e:
        print(e if str(e) != "help" else "", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 0 if str(e) == "help" else 2
    log.set_verbosity(opts["v"])  # glog's -v: network.go's V(1)/V(2) lines
    try:
        if not versions.activate(opts["lab-flannel-version"]).legacy_daemon:
            versions.activate(versions.LEGACY)  # this daemon runs the releases before 0.9.0 only
    except versions.VersionError as e:
        print(f"invalid value for flag -lab-flannel-version: {e}", file=sys.stderr)
        return 2
    if opts["kube-subnet-mgr"]:
        log.error("main.go", f"Failed to create SubnetManager: {KUBE_SUBNET_MGR_REFUSAL}")
        return 1
    from pyroute2 import IPRoute

    from ..iface import InterfaceError, lookup
    ipr = IPRoute()
    try:
        ext = lookup(ipr, opts["iface"][0] if opts["iface"] else None, opts["public-ip"] or None)
    except InterfaceError as e:
        log.error("main.go", str(e))
        return 1
    log.info("manager.go", f"Using interface with name {ext.name} and address {ext.iface_addr}")
    if opts["public-ip"]:   # v0.7.1 main.go lookupExtIface: one line or the other
        log.info("manager.go", f"Using {ext.ext_addr} as external address")
    else:
        log.info("manager.go", f"Defaulting external address to interface address ({ext.iface_addr})")
    d = Daemon(opts, ext, ipr)
    log.info("main.go", "Installing signal handlers")

    def on_signal(*_: object) -> None:
        d.stop.append(1)
        d.events.put("stop")
        if d.udp_events is not None:
            d.udp_events.put(None)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while d.run_once():
        pass
    log.info("main.go", "Exiting...")
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
