"""RegisterNetwork for VXLAN (mirrors pkg/backend/vxlan/vxlan.go).

The order matters and is flannel's: the device must exist *before* the lease is
acquired, because the lease advertises the device's MAC (VtepMAC); the address goes
on the device only *after*, because it is the lease's subnet address.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ... import log, versions
from ...config import Config
from ...ip import go_strerror
from ...subnet import Lease, LeaseAttrs
from .. import BackendBase, decode_backend_config, require_ipv4
from .device import VXLANDevice, VXLANDeviceAttrs
from .vxlan_network import VXLANNetwork

if TYPE_CHECKING:
    from ...etcd_manager import LocalManager

SRC = "vxlan.go"
DEFAULT_VNI = 1


# flannel's VXLANConfig and its json tags (Go's errors name fields by them)
JSON_NAMES = {"VNI": "vni", "Port": "port", "MTU": "mtu", "GBP": "gbp", "Learning": "learning",
              "DirectRouting": "directRouting"}


def parse_backend_config(backend: dict[str, Any] | None, ext_mtu: int) -> dict[str, Any]:
    """The Backend object's fields with flannel's defaults (MTU: the external interface's).

    VNI is checked where flannel checks it, by the kernel (see VXLANDevice). A Port outside
    0-65535 is refused here: flannel has no check and hands the kernel its low 16 bits
    (70000 becomes UDP port 4464; a negative port is dropped, so the kernel's 8472)."""
    defaults = {"VNI": DEFAULT_VNI, "Port": 0, "GBP": False, "Learning": False, "DirectRouting": False,
                "MTU": ext_mtu}
    cfg: dict[str, Any] = decode_backend_config(backend, defaults, "VXLAN", struct="VXLANConfig",
                                                names=JSON_NAMES)
    port = cfg["Port"]
    if not 0 <= port <= 65535:
        became = f"UDP port {port & 0xFFFF}" if port > 0 else "the kernel's default port 8472"
        raise ValueError(f"error decoding VXLAN backend config: Port {port} is not a UDP port (0-65535); "
                         f"flannel has no check and would use {became}, labkit's flanneld refuses it")
    return cfg


class VXLANBackend(BackendBase):
    """New(): see BackendBase."""

    def register_network(self, config: Config) -> VXLANNetwork:
        """RegisterNetwork: device, then lease, then the lease's address on the device."""
        require_ipv4(config)
        cfg = parse_backend_config(config.backend, self.ext_iface.mtu)
        log.info(SRC, f"VXLAN config: VNI={cfg['VNI']} Port={cfg['Port']} "
                      f"GBP={str(cfg['GBP']).lower()} Learning={str(cfg['Learning']).lower()} "
                      f"DirectRouting={str(cfg['DirectRouting']).lower()}")
        # 1. the device (its MAC is needed for the lease)
        try:
            # the VXLAN local address: ExtAddr since v0.27.4 (PR #2247), the interface's before
            local = self.ext_iface.ext_addr if versions.active()["vxlan_local"] == "public-ip" \
                else self.ext_iface.iface_addr
            dev = create_vxlan_device(config, cfg, self.sm, self.ext_iface.index, local,
                                      self.ipr)
        except NetlinkError as e:
            raise RuntimeError(f"failed to create vxlan device: {go_strerror(e)}") from None
        # 2. the lease, advertising VNI and VtepMAC
        attrs = new_subnet_attrs(self.ext_iface.ext_addr, cfg["VNI"], dev)
        try:
            lease = self.sm.acquire_lease(attrs)
        except Exception as e:
            raise RuntimeError(f"failed to acquire lease: {e}") from e
        # 3. the lease's network address as a /32: no broadcast route, and a source
        #    address on the flannel network for host-to-pod traffic
        configure_device_ipv4_ipv6(dev, lease, config)
        return VXLANNetwork(self.sm, self.ext_iface, dev, lease, mtu=cfg["MTU"], ipr=self.ipr)


def new_subnet_attrs(public_ip: ipaddress.IPv4Address, vni: int, dev: VXLANDevice) -> LeaseAttrs:
    """newSubnetAttrs: what the lease tells the peers: PublicIP, VNI and the device's MAC."""
    return LeaseAttrs(public_ip=str(public_ip), backend_type="vxlan",
                      backend_data={"VNI": vni, "VtepMAC": dev.hw_addr})


def create_vxlan_device(config: Config, cfg: dict[str, Any], sm: LocalManager, ext_iface_index: int,
                        ext_iface_ip: ipaddress.IPv4Address, ipr: IPRoute) -> VXLANDevice:
    """createVXLANDevice: flannel.<VNI> on the external interface, from RegisterNetwork and
    again from reCreateVxlan (vxlan_network.go) when the device was deleted under flanneld.

    flannel first asks the subnet manager for a stored MAC (GetStoredMacAddresses): the
    kube manager keeps one in a node annotation, the etcd manager has none (it returns ""),
    so with etcd the MAC is random each time the device is created. As in flannel, the
    kernel judges the VNI: it gets uint32(VNI) and a name flannel.<VNI>, and refuses a VNI
    from 2^24 up, or a name longer than 15 characters, with ERANGE (a NetlinkError here)."""
    dev = VXLANDevice(ipr, VXLANDeviceAttrs(
        vni=cfg["VNI"], name=f"flannel.{cfg['VNI']}", vtep_index=ext_iface_index,
        vtep_addr=ext_iface_ip, vtep_port=cfg["Port"], gbp=cfg["GBP"],
        learning=cfg["Learning"], mtu=cfg["MTU"]))
    dev.direct_routing = cfg["DirectRouting"]
    return dev


def configure_device_ipv4_ipv6(dev: VXLANDevice, lease: Lease, config: Config) -> None:
    """configureDeviceIPv4IPv6: the lease's subnet address as a /32 on the device, device up
    (IPv4 only here: labkit does not run flannel's IPv6 half)."""
    assert config.network is not None  # require_ipv4 refused a config without an IPv4 Network
    try:
        dev.configure(ipaddress.IPv4Interface(f"{lease.subnet.network_address}/32"), config.network)
    except Exception as e:
        raise RuntimeError(f"failed to configure interface {dev.attrs.name}: {e}") from e
