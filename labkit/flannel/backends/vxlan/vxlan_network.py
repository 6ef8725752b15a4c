"""Run and handleSubnetEvents for VXLAN (mirrors pkg/backend/vxlan/vxlan_network.go).

For every *remote* lease flanneld writes three kernel entries, in this order:
1. ARP:   <remote subnet IP> -> <remote VtepMAC>        (neighbour on flannel.1)
2. FDB:   <remote VtepMAC>   -> dst <remote PublicIP>   (where to send the VXLAN packet)
3. route: <remote subnet> via <remote subnet IP> dev flannel.1 onlink
The route comes last: with it in place but no ARP entry, the kernel would start
ARPing for the gateway. With DirectRouting, a peer on the same L2 segment gets a
plain route via its PublicIP instead, and no encapsulation at all.

Since v0.27.4 (commit 73af8ea7, PR #2247) Run also watches the device: when
flannel.1 is deleted under a running flanneld it is created again (watchVXLANDevice,
reCreateVxlan). Only the device comes back: see reCreateVxlan for what does not.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTMGRP_LINK

from ... import log, versions
from ...ip import AF_INET, RTNH_F_ONLINK, RTPROT_BOOT, direct_routing, go_strerror
from ...subnet import EVENT_ADDED, EVENT_REMOVED, Event, Lease
from ..catalogue import encap_overhead
from ..simple_network import SimpleNetwork
from .device import VXLANDevice

if TYPE_CHECKING:
    from ...etcd_manager import LocalManager
    from ...iface import ExternalInterface

SRC = "vxlan_network.go"
ENCAP_OVERHEAD = encap_overhead("vxlan")  # 14 Ethernet + 20 IPv4 + 8 UDP + 8 VXLAN
FIRST_BACKOFF = 1.0    # reCreateVxlan: 1 s, doubled after each failed attempt ...
MAX_BACKOFF = 30.0     # ... up to 30 s


class VXLANNetwork(SimpleNetwork):
    def __init__(self, sm: LocalManager, ext_iface: ExternalInterface, dev: VXLANDevice, lease: Lease,
                 mtu: int, ipr: IPRoute) -> None:
        """newNetwork: the embedded SimpleNetwork's fields (the lease and the external
        interface, here also the netlink socket), then the device and the underlay MTU."""
        self.sm = sm
        self.ext_iface = ext_iface
        self.lease = lease
        self.ipr = ipr
        self.dev = dev
        self._mtu = mtu

    def run(self) -> None:
        """Run's device half (daemon._run, flanneld's loop, is its lease half: WatchLeases and
        handleSubnetEvents). flannel starts watchVXLANDevice beside WatchLeases and, when it
        reports the device missing, recreates it in a goroutine of its own, so that lease
        events keep being handled meanwhile: here, two threads, and one per re-creation."""
        if versions.active()["deleted_device"] != "recreated":  # flannel < v0.27.4 had no device watcher
            return
        vxlan_missing: queue.Queue[bool] = queue.Queue(maxsize=1)  # buffered: one signal pending at most
        # watchVXLANDevice's first line, logged before its thread starts: in flannel the goroutine
        # races CompleteLease's "Waiting for ... to renew lease"; here the order is the same every run
        log.info(SRC, "starting vxlan device watcher")
        threading.Thread(target=self.watch_vxlan_device, args=(vxlan_missing,), name="watchVXLANDevice",
                         daemon=True).start()
        threading.Thread(target=self._handle_vxlan_missing, args=(vxlan_missing,), daemon=True).start()

    def _handle_vxlan_missing(self, vxlan_missing: queue.Queue[bool]) -> None:
        """Run's `case <-vxlanMissingChan`: offload the re-creation so Run never blocks on it."""
        while vxlan_missing.get():
            log.info(SRC, "vxlan device missing, attempting to recreate...")
            threading.Thread(target=self._re_create_vxlan_or_log, daemon=True).start()

    def _re_create_vxlan_or_log(self) -> None:
        try:
            self.re_create_vxlan()
        except Exception as e:  # flannel's only error here is a cancelled context
            log.error(SRC, f"failed to recreate vxlan: {e}")

    def watch_vxlan_device(self, vxlan_missing: queue.Queue[bool]) -> None:
        """watchVXLANDevice: subscribe to the kernel's link notifications (netlink.LinkSubscribe,
        the RTMGRP_LINK multicast group) and signal when a link with the device's name is
        deleted (RTM_DELLINK). Any deletion counts: `ip link del`, another program, or
        flanneld's own ensureLink replacing an incompatible device. The name is read once:
        a re-created device has the same one. ("starting vxlan device watcher" is logged by run.)"""
        try:
            updates = IPRoute()
            updates.bind(groups=RTMGRP_LINK)
        except Exception as e:
            log.error(SRC, f"failed to subscribe to netlink: {e}")  # klog's Fatalf: exit status 255
            os._exit(255)
        name = self.dev.attrs.name
        while True:
            for update in updates.get():
                if update.get_attr("IFLA_IFNAME") is None:
                    continue
                if update.get_attr("IFLA_IFNAME") == name and update["header"]["type"] == RTM_DELLINK:
                    log.info(SRC, f"Interface {name} deleted")
                    try:
                        vxlan_missing.put_nowait(True)
                    except queue.Full:  # a signal is already queued
                        pass

    def re_create_vxlan(self) -> None:
        """reCreateVxlan: redo RegisterNetwork's device steps until they succeed, with back-off
        (1 s doubling to 30 s): find the external interface by name, fetch and validate the
        network config again from etcd, parse the Backend (a changed VNI, port or MTU is used
        now), take the interface's first IPv4 address as the VXLAN local address (at start
        flannel used the external address, -public-ip), createVXLANDevice, then put the
        lease's /32 on it and set it up (configureDeviceIPv4IPv6).

        What it does *not* do, in flannel too: the kernel deleted the device's ARP and FDB
        entries and its routes with it, and nothing here puts them back; a peer's entries
        return only with that peer's next lease event (its renewal, a PUT every ~23 h). The
        new device has a new random MAC (the etcd subnet manager stores none), but the lease
        is not written again: it, and every peer's ARP entry, keep the old VtepMAC, so the
        peers' packets reach the new device with a destination MAC that is not its own and
        are dropped. Traffic to and from this node's pods stays broken until flanneld
        restarts: that keeps the new device and publishes its MAC in the lease."""
        # one Go package, two Python modules: vxlan.py imports this file, so import it here
        from .vxlan import configure_device_ipv4_ipv6, create_vxlan_device, parse_backend_config
        ipr = IPRoute()  # this thread's own netlink socket; it becomes the new device's
        backoff = FIRST_BACKOFF
        name = self.ext_iface.name
        while True:
            found = ipr.link_lookup(ifname=name)  # net.InterfaceByName
            if not found:
                log.info(SRC, f"external interface {name} not found, retrying in {int(backoff)}s")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            index: int = found[0]
            try:
                config = self.sm.get_network_config()
            except Exception as e:
                log.error(SRC, f"failed to get network config: {e}")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            try:
                ext_mtu: int = ipr.link("get", index=index)[0].get_attr("IFLA_MTU")
                cfg = parse_backend_config(config.backend, ext_mtu)
            except Exception as e:
                log.error(SRC, f"failed to parse vxlan config: {e}")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            try:  # ip.GetInterfaceIP4Addrs
                addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=AF_INET, index=index)]
            except Exception as e:
                log.error(SRC, f"error getting IPv4 addresses for {name}: {e}")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            if not addrs:
                log.warning(SRC, f"no IPv4 addresses found for interface {name}, retrying")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            try:
                dev = create_vxlan_device(config, cfg, self.sm, index, IPv4Address(addrs[0]), ipr)
            except Exception as e:
                why = go_strerror(e) if isinstance(e, NetlinkError) else str(e)
                log.error(SRC, f"failed to create vxlan device: {why}")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            assert self.lease is not None  # Run starts after the lease was acquired
            try:
                configure_device_ipv4_ipv6(dev, self.lease, config)
            except Exception as e:
                log.error(SRC, f"failed to configure vxlan device: {e}")
                backoff = retry_after_backoff(backoff, MAX_BACKOFF)
                continue
            self.dev = dev
            # flannel stores the *device's* MTU here, where newNetwork stored the underlay's:
            # MTU() would now answer 50 less, but it is read once, for subnet.env, at start.
            self._mtu = ipr.link("get", index=dev.index)[0].get_attr("IFLA_MTU")
            log.info(SRC, f"VXLAN device {dev.attrs.name} recreated successfully")
            return

    def mtu(self) -> int:
        """FLANNEL_MTU: the underlay MTU minus the VXLAN encapsulation."""
        return self._mtu - ENCAP_OVERHEAD

    def handle_subnet_events(self, batch: list[Event]) -> None:
        for event in batch:
            sn = event.lease.subnet
            attrs = event.lease.attrs
            if attrs.backend_type != "vxlan":
                log.warning(SRC, f"ignoring non-vxlan v4Subnet({sn}) v6Subnet(::/0): "
                                 f"type={attrs.backend_type}")
                continue
            data = attrs.backend_data or {}
            mac = data.get("VtepMAC")
            if not mac:
                log.error(SRC, "error decoding subnet lease JSON: missing VtepMAC")
                continue
            gw = sn.network_address
            direct = False
            if self.dev.direct_routing:
                try:
                    direct = direct_routing(self.ipr, attrs.public_ip)
                except Exception as e:
                    log.error(SRC, str(e))
            if event.type == EVENT_ADDED:
                self._add(sn, gw, attrs.public_ip, mac, direct)
            elif event.type == EVENT_REMOVED:
                self._remove(sn, gw, attrs.public_ip, mac, direct)

    def _add(self, sn: IPv4Network, gw: IPv4Address, public_ip: str, mac: str, direct: bool) -> None:
        if direct:
            if log.v(2):  # log.V(2) in vxlan_network.go: shown with -v=2 or more
                log.info(SRC, f"Adding direct route to subnet: {sn} PublicIP: {public_ip}")
            try:
                self.ipr.route("replace", dst=str(sn), gateway=str(public_ip), proto=RTPROT_BOOT)
            except Exception as e:
                log.error(SRC, f"Error adding route to {sn} via {public_ip}: {e}")
            return
        if log.v(2):  # log.V(2) in vxlan_network.go: shown with -v=2 or more
            log.info(SRC, f"adding subnet: {sn} PublicIP: {public_ip} VtepMAC: {mac}")
        try:
            self.dev.add_arp(gw, mac)
        except Exception as e:
            log.error(SRC, f"AddARP failed: {e}")
            return
        try:
            self.dev.add_fdb(public_ip, mac)
        except Exception as e:
            log.error(SRC, f"AddFDB failed: {e}")
            self._try(self.dev.del_arp, gw, mac, what="DelARP")
            return
        try:
            self.dev.peers.route_replace(sn, str(gw), self.dev.index, RTNH_F_ONLINK, RTPROT_BOOT)
        except Exception as e:
            log.error(SRC, f"failed to add vxlanRoute ({sn} -> {gw}): {e}")
            self._try(self.dev.del_arp, gw, mac, what="DelARP")
            self._try(self.dev.del_fdb, public_ip, mac, what="DelFDB")

    def _remove(self, sn: IPv4Network, gw: IPv4Address, public_ip: str, mac: str, direct: bool) -> None:
        if direct:
            if log.v(2):  # log.V(2) in vxlan_network.go: shown with -v=2 or more
                log.info(SRC, f"Removing direct route to subnet: {sn} PublicIP: {public_ip}")
            try:
                self.ipr.route("del", dst=str(sn), gateway=str(public_ip))
            except Exception as e:
                log.error(SRC, f"Error deleting route to {sn} via {public_ip}: {e}")
            return
        if log.v(2):  # log.V(2) in vxlan_network.go: shown with -v=2 or more
            log.info(SRC, f"removing subnet: {sn} PublicIP: {public_ip} VtepMAC: {mac}")
        # try every removal: one failing must not leave the others behind
        self._try(self.dev.del_arp, gw, mac, what="DelARP")
        self._try(self.dev.del_fdb, public_ip, mac, what="DelFDB")
        try:
            self.dev.peers.route_del(sn, str(gw), self.dev.index)
        except Exception as e:
            log.error(SRC, f"failed to delete vxlanRoute ({sn} -> {gw}): {e}")

    @staticmethod
    def _try(fn: Callable[..., None], *args: Any, what: str) -> None:
        try:
            fn(*args)
        except Exception as e:
            log.error(SRC, f"{what} failed: {e}")


def retry_after_backoff(backoff: float, max_backoff: float) -> float:
    """retryAfterBackoff: sleep, then the next wait: twice as long, at most `max_backoff`
    (flannel's minDuration is Python's min)."""
    time.sleep(backoff)
    return min(backoff * 2, max_backoff)
