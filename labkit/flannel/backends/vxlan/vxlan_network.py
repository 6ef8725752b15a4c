"""Run and handleSubnetEvents for VXLAN (mirrors pkg/backend/vxlan/vxlan_network.go).

For every *remote* lease flanneld writes three kernel entries, in this order:
1. ARP:   <remote subnet IP> -> <remote VtepMAC>        (neighbour on flannel.1)
2. FDB:   <remote VtepMAC>   -> dst <remote PublicIP>   (where to send the VXLAN packet)
3. route: <remote subnet> via <remote subnet IP> dev flannel.1 onlink
The route comes last: with it in place but no ARP entry, the kernel would start
ARPing for the gateway. With DirectRouting, a peer on the same L2 segment gets a
plain route via its PublicIP instead, and no encapsulation at all.
"""
from __future__ import annotations

from ... import log
from ...ip import RTNH_F_ONLINK, RTPROT_BOOT, direct_routing
from ...subnet import EVENT_ADDED, EVENT_REMOVED
from ..catalogue import encap_overhead
from ..simple_network import SimpleNetwork

SRC = "vxlan_network.go"
ENCAP_OVERHEAD = encap_overhead("vxlan")  # 14 Ethernet + 20 IPv4 + 8 UDP + 8 VXLAN


class VXLANNetwork(SimpleNetwork):
    def __init__(self, sm, ext_iface, dev, lease, mtu: int, ipr):
        super().__init__(sm, ext_iface, lease, ipr)
        self.dev = dev
        self._mtu = mtu

    def mtu(self) -> int:
        """FLANNEL_MTU: the underlay MTU minus the VXLAN encapsulation."""
        return self._mtu - ENCAP_OVERHEAD

    def handle_subnet_events(self, batch) -> None:
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

    def _add(self, sn, gw, public_ip, mac, direct) -> None:
        if direct:
            log.info(SRC, f"Adding direct route to subnet: {sn} PublicIP: {public_ip}")
            try:
                self.ipr.route("replace", dst=str(sn), gateway=str(public_ip), proto=RTPROT_BOOT)
            except Exception as e:
                log.error(SRC, f"Error adding route to {sn} via {public_ip}: {e}")
            return
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
            self.ipr.route("replace", dst=str(sn), gateway=str(gw), oif=self.dev.index,
                           flags=RTNH_F_ONLINK, proto=RTPROT_BOOT)
        except Exception as e:
            log.error(SRC, f"failed to add vxlanRoute ({sn} -> {gw}): {e}")
            self._try(self.dev.del_arp, gw, mac, what="DelARP")
            self._try(self.dev.del_fdb, public_ip, mac, what="DelFDB")

    def _remove(self, sn, gw, public_ip, mac, direct) -> None:
        if direct:
            log.info(SRC, f"Removing direct route to subnet: {sn} PublicIP: {public_ip}")
            try:
                self.ipr.route("del", dst=str(sn), gateway=str(public_ip))
            except Exception as e:
                log.error(SRC, f"Error deleting route to {sn} via {public_ip}: {e}")
            return
        log.info(SRC, f"removing subnet: {sn} PublicIP: {public_ip} VtepMAC: {mac}")
        # try every removal: one failing must not leave the others behind
        self._try(self.dev.del_arp, gw, mac, what="DelARP")
        self._try(self.dev.del_fdb, public_ip, mac, what="DelFDB")
        try:
            self.ipr.route("del", dst=str(sn), gateway=str(gw), oif=self.dev.index)
        except Exception as e:
            log.error(SRC, f"failed to delete vxlanRoute ({sn} -> {gw}): {e}")

    @staticmethod
    def _try(fn, *args, what: str) -> None:
        try:
            fn(*args)
        except Exception as e:
            log.error(SRC, f"{what} failed: {e}")
