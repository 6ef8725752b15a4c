"""What every backend's network holds (mirrors pkg/backend/simple_network.go).

flannel's vxlan, udp and route networks all embed ``backend.SimpleNetwork``: the
node's lease and its external interface, with ``Lease()`` and ``MTU()`` (the
interface's MTU, which a backend with encapsulation lowers).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..etcd_manager import LocalManager
    from ..iface import ExternalInterface
    from ..subnet import Lease


class SimpleNetwork:
    def __init__(self, sm: LocalManager, ext_iface: ExternalInterface, lease: Lease | None, ipr: IPRoute) -> None:
        self.sm = sm
        self.ext_iface = ext_iface
        self.lease = lease
        self.ipr = ipr   # this network's netlink socket (flannel's netlink package uses one per call)

    def mtu(self) -> int:
        """FLANNEL_MTU: the external interface's MTU, unless a backend says otherwise."""
        return self.ext_iface.mtu
