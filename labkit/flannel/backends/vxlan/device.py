"""The flannel.<VNI> device (mirrors pkg/backend/vxlan/device.go).

Why each step:
* the device is created with learning off: flanneld, not the kernel, fills the FDB;
* its MAC is random and goes into the lease (VtepMAC), so peers can address it;
* an existing device is *kept* unless a field flannel compares differs; MTU, learning
  and MAC are not compared, which is why some config changes need `ip link del`;
* ARP and FDB entries are PERMANENT: nothing ages out while flanneld is away.
"""
from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ... import log, versions
from ...ip import AF_BRIDGE, AF_INET, EEXIST, NTF_SELF, NUD_PERMANENT, ensure_v4_address_on_link
from ...netlink import PeerLinks
from ..catalogue import encap_overhead

SRC = "device.go"

LinkFields = dict[str, Any]   # the fields vxlanLinksIncompat compares, by name


class _Rand(Protocol):
    """What new_hardware_addr needs of its random source: the `random` module or a Random."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass
class VXLANDeviceAttrs:
    vni: int
    name: str
    vtep_index: int
    vtep_addr: ipaddress.IPv4Address
    vtep_port: int
    gbp: bool
    learning: bool
    mtu: int                 # the *underlay* MTU; the device gets mtu - 50 (the encapsulation)
    hw_addr: str | None = None


def new_hardware_addr(rng: _Rand = random) -> str:
    """A random locally administered unicast MAC (flannel's pkg/mac)."""
    b = [rng.randrange(256) for _ in range(6)]
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def links_incompat(want: LinkFields, have: LinkFields) -> str:
    """flannel's vxlanLinksIncompat: "" when an existing device can be kept.

    Only these fields are compared; index, addresses and port count as different
    only when both sides are set. MTU, learning and the MAC are *not* compared.
    """
    if want["type"] != have["type"]:
        return f"link type: {want['type']} vs {have['type']}"
    if want["vni"] != have["vni"]:
        return f"vni: {want['vni']} vs {have['vni']}"
    if want["vtep_index"] and have["vtep_index"] and want["vtep_index"] != have["vtep_index"]:
        return f"vtep (external) interface: {want['vtep_index']} vs {have['vtep_index']}"
    if want["src_addr"] and have["src_addr"] and want["src_addr"] != have["src_addr"]:
        return f"vtep (external) IP: {want['src_addr']} vs {have['src_addr']}"
    if want["group"] and have["group"] and want["group"] != have["group"]:
        return f"group address: {want['group']} vs {have['group']}"
    if bool(want["l2miss"]) != bool(have["l2miss"]):
        return f"l2miss: {str(bool(want['l2miss'])).lower()} vs {str(bool(have['l2miss'])).lower()}"
    if want["port"] and have["port"] and want["port"] != have["port"]:
        return f"port: {want['port']} vs {have['port']}"
    if bool(want["gbp"]) != bool(have["gbp"]):
        return f"gbp: {str(bool(want['gbp'])).lower()} vs {str(bool(have['gbp'])).lower()}"
    return ""


def link_fields(link: Any) -> LinkFields:
    """The compared fields of a kernel link, as read back over netlink."""
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    data = info.get_attr("IFLA_INFO_DATA") if info and kind == "vxlan" else None

    def get(k: str) -> Any:
        return data.get_attr(k) if data else None
    return {"type": kind or "device", "vni": get("IFLA_VXLAN_ID"),
            "vtep_index": get("IFLA_VXLAN_LINK"), "src_addr": get("IFLA_VXLAN_LOCAL"),
            "group": get("IFLA_VXLAN_GROUP"), "l2miss": get("IFLA_VXLAN_L2MISS"),
            "port": get("IFLA_VXLAN_PORT"), "gbp": bool(get("IFLA_VXLAN_GBP"))}


def ensure_link(ipr: IPRoute, name: str, link_add: Callable[[], None], want: LinkFields, spelling: str,
                compare: Callable[[LinkFields, LinkFields], LinkFields] | None = None) -> tuple[int, Any]:
    """ensureLink: create the device with `link_add()`, or keep an existing one whose
    compared fields match `want` (else delete and re-create it). Returns (index, the
    kept link or None). `compare(want, have)` adjusts `want` to what a version
    compares; `spelling` is that version's word in its log line."""
    try:
        link_add()
    except NetlinkError as e:
        if e.code != EEXIST:
            raise
        existing = ipr.link("get", ifname=name)[0]
        have = link_fields(existing)
        incompat = links_incompat(compare(want, have) if compare else want, have)
        if not incompat:
            return existing["index"], existing
        log.warning(SRC, f'"{name}" already exists with {spelling} configuration: {incompat}; '
                         "recreating device")
        ipr.link("del", index=existing["index"])
        link_add()
    index: int = ipr.link_lookup(ifname=name)[0]
    return index, None


class VXLANDevice:
    def __init__(self, ipr: IPRoute, attrs: VXLANDeviceAttrs) -> None:
        """newVXLANDevice: ensure the link, then accept_ra=0 (no IPv6 autoconf on it)."""
        self.ipr = ipr
        self.attrs = attrs
        self.hw_addr: str = attrs.hw_addr or new_hardware_addr()
        self.direct_routing = False
        self._peers: PeerLinks | None = None
        self.index = self._ensure_link()
        try:
            with open(f"/proc/sys/net/ipv6/conf/{attrs.name}/accept_ra", "w") as f:
                f.write("0")
        except OSError:
            pass

    # -- ensureLink ------------------------------------------------------------------
    def _want(self) -> LinkFields:
        a = self.attrs
        return {"type": "vxlan", "vni": a.vni, "vtep_index": a.vtep_index,
                "src_addr": str(a.vtep_addr), "group": None, "l2miss": False,
                "port": a.vtep_port, "gbp": a.gbp}

    def _link_add(self) -> None:
        a = self.attrs
        # netlink's attributes are Go's uint32(...) of flannel's ints (vishvananda/netlink)
        kw: dict[str, Any] = dict(ifname=a.name, kind="vxlan", vxlan_id=a.vni & 0xFFFFFFFF, vxlan_link=a.vtep_index,
                  vxlan_local=str(a.vtep_addr), vxlan_learning=int(a.learning), address=self.hw_addr)
        if a.mtu - encap_overhead("vxlan") > 0:  # netlink sets the MTU only when positive
            kw["mtu"] = (a.mtu - encap_overhead("vxlan")) & 0xFFFFFFFF
        if a.vtep_port:  # 0 = leave it to the kernel, whose default is 8472
            kw["vxlan_port"] = a.vtep_port
        if a.gbp:
            kw["vxlan_gbp"] = True
        self.ipr.link("add", **kw)

    def _ensure_link(self) -> int:
        index, existing = ensure_link(self.ipr, self.attrs.name, self._link_add, self._want(), "incompatible")
        if existing is not None:  # kept, and with it its MAC (which goes into the lease)
            self.hw_addr = existing.get_attr("IFLA_ADDRESS")
        return index

    # -- Configure -----------------------------------------------------------------------
    def configure(self, ipa: ipaddress.IPv4Interface, flannel_net: ipaddress.IPv4Network) -> None:
        """Put the lease's /32 on the device (EnsureV4AddressOnLink), set it up, check the MAC.

        Addresses inside the flannel Network other than ours are removed; addresses
        outside it are left alone (flannel >= v0.14). v0.9.0 - v0.13.x (versions.py,
        flannel1_addresses = refuse) refused a device with more than one IPv4 address and
        replaced a single other one. The MAC check came with v0.22.3 (PR #1796).
        """
        name = self.attrs.name
        if versions.active()["flannel1_addresses"] == "refuse":
            self._configure_v09(ipa)
        else:
            ensure_v4_address_on_link(self.ipr, self.index, ipa, flannel_net, on_remove=lambda addr: log.info(
                "iface.go", f"removed IP address {addr.with_prefixlen} {name} from {name}"))
        self.ipr.link("set", index=self.index, state="up")
        got = self.ipr.link("get", index=self.index)[0].get_attr("IFLA_ADDRESS")
        if got != self.hw_addr and versions.active()["mac_check"] == "on":
            raise RuntimeError(f"{name}'s mac address wanted: {self.hw_addr}, but got: {got}")

    def _configure_v09(self, ipa: ipaddress.IPv4Interface) -> None:
        """v0.9.0:backend/vxlan/device.go Configure (v0.12.0 - v0.13.x: pkg/ip/iface.go): more
        than one IPv4 address is the user's doing, so flanneld stops and asks them to sort it
        out; one address that is not the lease's is replaced (a new lease, for example).
        (flannel appends the link's Go struct to the message; the lab names the link.)"""
        have = [ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in self.ipr.get_addr(family=AF_INET, index=self.index)]
        if len(have) > 1:
            raise RuntimeError("link has incompatible addresses. Remove additional addresses and try again. "
                               f"{self.attrs.name}")
        if have and have[0] != ipa:
            self.ipr.addr("del", index=self.index, address=str(have[0].ip), prefixlen=have[0].network.prefixlen)
            have = []
        if not have:
            self.ipr.addr("add", index=self.index, address=str(ipa.ip), prefixlen=ipa.network.prefixlen)

    # -- neighbours ----------------------------------------------------------------------
    @property
    def peers(self) -> PeerLinks:
        """The socket for the per-peer requests (labkit/flannel/netlink.py: packed by hand,
        because pyroute2's generic path costs more CPU than the rest of flanneld at scale)."""
        if self._peers is None:
            self._peers = PeerLinks()
        return self._peers

    def add_arp(self, ip: ipaddress.IPv4Address, mac: str) -> None:
        """`ip neigh replace <subnet IP> lladdr <VtepMAC> dev flannel.1 nud permanent`."""
        self.peers.neigh_replace(AF_INET, self.index, str(ip), mac, NUD_PERMANENT)

    def del_arp(self, ip: ipaddress.IPv4Address, mac: str) -> None:
        self.peers.neigh_del(AF_INET, self.index, str(ip), mac, NUD_PERMANENT)

    def add_fdb(self, public_ip: str, mac: str) -> None:
        """`bridge fdb replace <VtepMAC> dev flannel.1 dst <PublicIP> self permanent`."""
        self.peers.neigh_replace(AF_BRIDGE, self.index, str(public_ip), mac, NUD_PERMANENT, NTF_SELF)

    def del_fdb(self, public_ip: str, mac: str) -> None:
        self.peers.neigh_del(AF_BRIDGE, self.index, str(public_ip), mac, 0, NTF_SELF)
