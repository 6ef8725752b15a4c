"""RegisterNetwork for UDP (mirrors pkg/backend/udp/udp_amd64.go).

The udp backend is the oldest and simplest one: the lease carries only the node's
PublicIP (no BackendType, no BackendData: every peer is reached on the same Port),
and the device is a TUN whose network is the *whole* flannel Network, so that one
kernel route sends every remote pod address to the proxy.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ... import log
from ...subnet import LeaseAttrs
from .. import BackendBase, decode_backend_config, require_ipv4
from .network import UdpNetwork

if TYPE_CHECKING:

    from ...config import Config

SRC = "udp_amd64.go"
DEFAULT_PORT = 8285


def parse_backend_config(backend: dict[str, Any]) -> dict[str, Any]:
    """{"Port": ...} with flannel's default."""
    return decode_backend_config(backend, {"Port": DEFAULT_PORT}, "UDP")


class UdpBackend(BackendBase):
    """New(): see BackendBase."""

    def register_network(self, config: Config) -> UdpNetwork:
        require_ipv4(config)
        cfg = parse_backend_config(config.backend)
        # 1. the lease: PublicIP only
        attrs = LeaseAttrs(public_ip=str(self.ext_iface.ext_addr))
        try:
            lease = self.sm.acquire_lease(attrs)
        except Exception as e:
            raise RuntimeError(f"failed to acquire lease: {e}") from e
        # 2. the TUN's network is that of the whole overlay (e.g. /16), not the
        #    node's /24: the lease's address with the Network's prefix length
        assert config.network is not None  # CheckNetworkConfig: an IPv4 config has a Network
        tun_net = ipaddress.IPv4Interface(f"{lease.subnet.network_address}/{config.network.prefixlen}")
        return UdpNetwork(self.sm, self.ext_iface, cfg["Port"], tun_net, lease, self.ipr,
                          verbosity=log.verbosity())
