"""The VXLAN backend of flannel 0.7.1 (mirrors v0.7.1:backend/vxlan/{vxlan,device,network}.go).

Steps, in 0.7.1's order:
1. ensureLink: create flannel.<VNI> (kernel-chosen MAC and MTU), or keep an existing
   one unless a compared field differs; then ``app_solicit=3`` on it;
2. acquire the lease, advertising ``{"VtepMAC": ...}``;
3. Configure: *add* ``<lease IP>/32`` (never remove), set up, and add a route for the
   whole Network via flannel.1 (an existing one is fine);
4. Run: on each lease event put/delete the FDB entry VtepMAC -> PublicIP and keep a
   table subnet -> VtepMAC; on each L3 miss (the kernel asking for the MAC of a remote
   container address) answer from that table with a REACHABLE neighbour entry.
"""
from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pyroute2.netlink.exceptions import NetlinkError

from .. import log
from ..backends import decode_backend_config
from ..backends.vxlan.device import ensure_link
from ..ip import (
    AF_BRIDGE,
    EEXIST,
    NTF_SELF,
    NUD_DELAY,
    NUD_INCOMPLETE,
    NUD_PERMANENT,
    NUD_PROBE,
    NUD_REACHABLE,
    NUD_STALE,
    RTPROT_BOOT,
)
from ..subnet import EVENT_ADDED, Lease

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# an L3 miss for the daemon's loop: the address the kernel asks a MAC for
Miss = tuple[Literal["miss"], str]


def parse_backend_config(backend: dict[str, Any]) -> dict[str, Any]:
    """flannel 0.7.1's VXLAN options: VNI, Port, GBP."""
    return decode_backend_config(backend, {"VNI": 1, "Port": 0, "GBP": False}, "VXLAN")


class LegacyVXLANDevice:
    def __init__(self, ipr: IPRoute, name: str, vni: int, vtep_index: int, vtep_addr: ipaddress.IPv4Address,
                 port: int, gbp: bool) -> None:
        self.ipr, self.name = ipr, name
        self.want = {"type": "vxlan", "vni": vni, "vtep_index": vtep_index, "src_addr": str(vtep_addr),
                     "group": None, "l2miss": False, "port": port, "gbp": gbp}
        self.index = self._ensure_link()
        link = ipr.link("get", index=self.index)[0]
        self.mac: str = link.get_attr("IFLA_ADDRESS")
        self.mtu: int = link.get_attr("IFLA_MTU")  # 0.7.1's MTU() is the device's own MTU
        # ARP requests on this device go to userspace (us) as netlink messages
        with open(f"/proc/sys/net/ipv4/neigh/{name}/app_solicit", "w") as f:
            f.write("3")

    def _add(self) -> None:
        w = self.want
        kw = dict(ifname=self.name, kind="vxlan", vxlan_id=w["vni"], vxlan_link=w["vtep_index"],
                  vxlan_local=w["src_addr"], vxlan_learning=0)
        if w["port"]:
            kw["vxlan_port"] = w["port"]
        if w["gbp"]:
            kw["vxlan_gbp"] = True
        self.ipr.link("add", **kw)

    def _ensure_link(self) -> int:
        # 0.7.1 did not compare GBP; "incompatable" is 0.7.1's spelling (sic)
        index: int = ensure_link(self.ipr, self.name, self._add, self.want, "incompatable",
                                 compare=lambda want, have: dict(want, gbp=have["gbp"]))[0]
        return index

    def configure(self, lease_ip: ipaddress.IPv4Address, network: ipaddress.IPv4Network) -> None:
        """setAddr4 (add only, error ignored), link up, a route for the whole Network."""
        try:
            self.ipr.addr("add", index=self.index, address=str(lease_ip), prefixlen=32)
        except NetlinkError:
            pass  # 0.7.1 ignores setAddr4's error (e.g. the address is already there)
        self.ipr.link("set", index=self.index, state="up")
        try:
            self.ipr.route("add", dst=str(network), oif=self.index, proto=RTPROT_BOOT)
        except NetlinkError as e:
            if e.code != EEXIST:
                raise RuntimeError(f"failed to add route ({network} -> {self.name}): {e}") from e

    def add_l2(self, public_ip: str, mac: str | None) -> None:
        self.ipr.neigh("add", family=AF_BRIDGE, ifindex=self.index, lladdr=mac, dst=str(public_ip),
                       state=NUD_PERMANENT, flags=NTF_SELF)

    def del_l2(self, public_ip: str, mac: str | None) -> None:
        self.ipr.neigh("del", family=AF_BRIDGE, ifindex=self.index, lladdr=mac, dst=str(public_ip),
                       flags=NTF_SELF)

    def add_l3(self, ip: ipaddress.IPv4Address, mac: str | None) -> None:
        self.ipr.neigh("replace", dst=str(ip), lladdr=mac, ifindex=self.index, state=NUD_REACHABLE)

    def monitor_misses(self, put: Callable[[Miss], None]) -> None:
        """MonitorMisses: a thread reading RTNLGRP_NEIGH; resolving entries are misses."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.rtnl import RTMGRP_NEIGH

        def loop() -> None:
            mon = IPRoute()
            mon.bind(groups=RTMGRP_NEIGH)
            resolving = NUD_INCOMPLETE | NUD_STALE | NUD_DELAY | NUD_PROBE
            while True:
                for m in mon.get():
                    if m.get("event") not in ("RTM_GETNEIGH", "RTM_NEWNEIGH") or m["ifindex"] != self.index:
                        continue
                    if m["state"] & resolving and not m.get_attr("NDA_LLADDR") and m.get_attr("NDA_DST"):
                        put(("miss", m.get_attr("NDA_DST")))
        threading.Thread(target=loop, daemon=True, name="misses").start()


class LegacyVXLANNetwork:
    def __init__(self, dev: LegacyVXLANDevice) -> None:
        self.dev = dev
        self.routes: list[tuple[ipaddress.IPv4Network, str | None]] = []  # routes.go: subnet -> VtepMAC

    def mtu(self) -> int:
        return self.dev.mtu

    def _set(self, sn: ipaddress.IPv4Network, mac: str | None) -> None:
        self.routes = [(n, m) for n, m in self.routes if n != sn] + [(sn, mac)]

    def handle_initial(self, leases: list[Lease]) -> None:
        """handleInitialSubnetEvents: sync the FDB with the leases (keep, delete, add)."""
        fdb = [(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"))
               for n in self.dev.ipr.get_neighbours(family=AF_BRIDGE, ifindex=self.dev.index)
               if n.get_attr("NDA_DST")]
        wanted: list[tuple[str, str | None]] = []
        for lease in leases:
            if lease.attrs.backend_type != "vxlan":
                log.warning("network.go", f"Ignoring non-vxlan subnet({lease.subnet}): "
                                          f"type={lease.attrs.backend_type}")
                continue
            mac = (lease.attrs.backend_data or {}).get("VtepMAC")
            self._set(lease.subnet, mac)
            wanted.append((lease.attrs.public_ip, mac))
        for entry in fdb:
            if entry not in wanted:
                self.dev.del_l2(*entry)
        for entry in wanted:
            if entry not in fdb:
                try:
                    self.dev.add_l2(*entry)
                except Exception as e:
                    log.error("network.go", f"Add L2 failed: {e}")

    def handle_event(self, kind: str, lease: Lease) -> None:
        if log.v(1):  # 0.7.1's network.go logs these at log.V(1)
            log.info("network.go", f"Subnet {kind}: {lease.subnet}")
        if lease.attrs.backend_type != "vxlan":
            log.warning("network.go", f"Ignoring non-vxlan subnet: type={lease.attrs.backend_type}")
            return
        mac = (lease.attrs.backend_data or {}).get("VtepMAC")
        if kind == EVENT_ADDED:
            self._set(lease.subnet, mac)
            try:
                self.dev.add_l2(lease.attrs.public_ip, mac)
            except Exception as e:
                log.error("network.go", f"AddL2 failed: {e}")
        else:
            if mac:
                try:
                    self.dev.del_l2(lease.attrs.public_ip, mac)
                except Exception as e:
                    log.error("network.go", f"DelL2 failed: {e}")
            self.routes = [(n, m) for n, m in self.routes if n != lease.subnet]

    def handle_miss(self, ip: str) -> None:
        """handleL3Miss: which lease's subnet holds this address? Its VtepMAC answers."""
        addr = ipaddress.IPv4Address(ip)
        for sn, mac in self.routes:
            if addr in sn:
                self.dev.add_l3(addr, mac)
                if log.v(2):  # log.V(2) in 0.7.1's network.go
                    log.info("network.go", f"L3 miss: AddL3 for {ip} succeeded")
                return
        log.info("network.go", f"L3 miss but route for {ip} not found")
