"""RegisterNetwork for UDP (mirrors pkg/backend/udp/udp_amd64.go).

The udp backend is the oldest and simplest one: the lease carries only the node's
PublicIP (no BackendType, no BackendData: every peer is reached on the same Port),
and the device is a TUN whose network is the *whole* flannel Network, so that one
kernel route sends every remote pod address to the proxy.
"""
from __future__ import annotations

import ipaddress

from ...subnet import LeaseAttrs
from .network import UdpNetwork

SRC = "udp_amd64.go"
DEFAULT_PORT = 8285


def parse_backend_config(backend: dict) -> dict:
    """{"Port": ...} with flannel's default, keys matched as Go's encoding/json does."""
    cfg = {"Port": DEFAULT_PORT}
    for key, value in (backend or {}).items():
        if key.lower() == "port" and value is not None:  # Go leaves a field alone for null
            cfg["Port"] = value
    port = cfg["Port"]
    if not isinstance(port, int) or isinstance(port, bool):
        kind = {str: "string", bool: "bool", list: "array", dict: "object"}.get(type(port))
        kind = kind or f"number {port}"
        raise ValueError(f"error decoding UDP backend config: json: cannot unmarshal {kind} "
                         f"into Go struct field .Port of type int")
    return cfg


class UdpBackend:
    def __init__(self, sm, ext_iface, ipr):
        self.sm = sm
        self.ext_iface = ext_iface
        self.ipr = ipr

    def register_network(self, config) -> UdpNetwork:
        cfg = parse_backend_config(config.backend)
        # 1. the lease: PublicIP only
        attrs = LeaseAttrs(public_ip=str(self.ext_iface.ext_addr))
        try:
            lease = self.sm.acquire_lease(attrs)
        except Exception as e:
            raise RuntimeError(f"failed to acquire lease: {e}") from e
        # 2. the TUN's network is that of the whole overlay (e.g. /16), not the
        #    node's /24: the lease's address with the Network's prefix length
        tun_net = ipaddress.IPv4Interface(f"{lease.subnet.network_address}/{config.network.prefixlen}")
        return UdpNetwork(self.sm, self.ext_iface, cfg["Port"], tun_net, lease, self.ipr)
