"""RegisterNetwork for VXLAN (mirrors pkg/backend/vxlan/vxlan.go).

The order matters and is flannel's: the device must exist *before* the lease is
acquired, because the lease advertises the device's MAC (VtepMAC); the address goes
on the device only *after*, because it is the lease's subnet address.
"""
from __future__ import annotations

import ipaddress

from ... import log
from ...subnet import LeaseAttrs
from .. import decode_backend_config, require_ipv4
from ..route_network import go_strerror
from .device import VXLANDevice, VXLANDeviceAttrs
from .vxlan_network import VXLANNetwork

SRC = "vxlan.go"
DEFAULT_VNI = 1


# flannel's VXLANConfig and its json tags (Go's errors name fields by them)
JSON_NAMES = {"VNI": "vni", "Port": "port", "MTU": "mtu", "GBP": "gbp", "Learning": "learning",
              "DirectRouting": "directRouting"}


def parse_backend_config(backend: dict, ext_mtu: int) -> dict:
    """The Backend object's fields with flannel's defaults (MTU: the external interface's).

    VNI is checked where flannel checks it, by the kernel (see VXLANDevice). A Port outside
    0-65535 is refused here: flannel has no check and hands the kernel its low 16 bits
    (70000 becomes UDP port 4464; a negative port is dropped, so the kernel's 8472)."""
    cfg = decode_backend_config(backend, {"VNI": DEFAULT_VNI, "Port": 0, "GBP": False, "Learning": False,
                                          "DirectRouting": False, "MTU": ext_mtu}, "VXLAN",
                                struct="VXLANConfig", names=JSON_NAMES)
    port = cfg["Port"]
    if not 0 <= port <= 65535:
        became = f"UDP port {port & 0xFFFF}" if port > 0 else "the kernel's default port 8472"
        raise ValueError(f"error decoding VXLAN backend config: Port {port} is not a UDP port (0-65535); "
                         f"flannel has no check and would use {became}, labkit's flanneld refuses it")
    return cfg


class VXLANBackend:
    # one constructor per backend, as flannel has New() in pkg/backend/{vxlan/vxlan,udp/udp_amd64,ipip/ipip}.go
    def __init__(self, sm, ext_iface, ipr):
        self.sm = sm
        self.ext_iface = ext_iface
        self.ipr = ipr

    def register_network(self, config) -> VXLANNetwork:
        require_ipv4(config)
        cfg = parse_backend_config(config.backend, self.ext_iface.mtu)
        log.info(SRC, f"VXLAN config: VNI={cfg['VNI']} Port={cfg['Port']} "
                      f"GBP={str(cfg['GBP']).lower()} Learning={str(cfg['Learning']).lower()} "
                      f"DirectRouting={str(cfg['DirectRouting']).lower()}")
        # 1. the device (its MAC is needed for the lease). As in flannel, the kernel judges
        #    the VNI: it gets uint32(VNI) and a name flannel.<VNI>, and refuses a VNI from
        #    2^24 up, or a name longer than 15 characters, with ERANGE.
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            dev = VXLANDevice(self.ipr, VXLANDeviceAttrs(
                vni=cfg["VNI"], name=f"flannel.{cfg['VNI']}", vtep_index=self.ext_iface.index,
                vtep_addr=self.ext_iface.ext_addr, vtep_port=cfg["Port"], gbp=cfg["GBP"],
                learning=cfg["Learning"], mtu=cfg["MTU"]))
        except NetlinkError as e:
            raise RuntimeError(f"failed to create vxlan device: {go_strerror(e)}") from None
        dev.direct_routing = cfg["DirectRouting"]
        # 2. the lease, advertising VNI and VtepMAC
        attrs = LeaseAttrs(public_ip=str(self.ext_iface.ext_addr), backend_type="vxlan",
                           backend_data={"VNI": cfg["VNI"], "VtepMAC": dev.hw_addr})
        try:
            lease = self.sm.acquire_lease(attrs)
        except Exception as e:
            raise RuntimeError(f"failed to acquire lease: {e}") from e
        # 3. the lease's network address as a /32: no broadcast route, and a source
        #    address on the flannel network for host-to-pod traffic
        try:
            dev.configure(ipaddress.IPv4Interface(f"{lease.subnet.network_address}/32"), config.network)
        except Exception as e:
            raise RuntimeError(f"failed to configure interface {dev.attrs.name}: {e}") from e
        return VXLANNetwork(self.sm, self.ext_iface, dev, lease, mtu=cfg["MTU"], ipr=self.ipr)
