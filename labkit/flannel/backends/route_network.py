"""Route-only networks (mirrors pkg/backend/route_network.go): host-gw and ipip.

A route network puts one kernel route per remote lease and nothing else: no ARP or
FDB entries, no encapsulation of its own (host-gw) or the kernel's ipip device
(ipip). What it does, step by step, as flannel does:

* an added lease of the backend's type becomes a route (``GetRoute``), remembered
  in a list *before* it is tried, so that the route check below retries it;
* a route to the same destination with a different gateway or device is deleted
  first ("Replacing existing route ..."); an identical one is kept ("... already
  exists, skipping.");
* when the kernel refuses the route (host-gw with a next hop that is not on the
  local segment: "network is unreachable"), flannel logs
  ``Error adding route to {...}: <error>`` once and carries on: the peer is simply
  unreachable;
* a removed lease's route is deleted;
* every 10 seconds (``routeCheckRetries``) the list is compared with the kernel's
  main table and a missing route is added back ("Route recovered <dst> : <gw>").
  The retry of a route the kernel keeps refusing is silent (flannel only logs
  errors that are not network errors, and an errno is one).
"""
from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass

from pyroute2 import IPRoute

from .. import log
from ..ip import RTNH_F_ONLINK, RTPROT_BOOT, go_strerror, main_routes
from ..subnet import EVENT_ADDED, EVENT_REMOVED
from .simple_network import SimpleNetwork

SRC = "route_network.go"
ROUTE_CHECK_SECONDS = 10


@dataclass
class Route:
    """The fields of a netlink.Route that flannel sets and compares."""
    dst: ipaddress.IPv4Network
    gw: ipaddress.IPv4Address | None
    link_index: int
    flags: int = 0
    table: int = 0

    def equal(self, other: "Route") -> bool:
        """routeEqual: destination, gateway and link index (not flags, not table)."""
        return self.dst == other.dst and self.gw == other.gw and self.link_index == other.link_index

    def __str__(self) -> str:
        """netlink.Route's String(), as it appears in flannel's log lines."""
        flags = "[onlink]" if self.flags & RTNH_F_ONLINK else "[]"
        return (f"{{Ifindex: {self.link_index} Dst: {self.dst} Src: <nil> Gw: {self.gw or '<nil>'} "
                f"Flags: {flags} Table: {self.table} Realm: 0}}")

    def netlink_args(self) -> dict:
        kw = dict(dst=str(self.dst), oif=self.link_index, proto=RTPROT_BOOT)
        if self.gw is not None:
            kw["gateway"] = str(self.gw)
        if self.flags:
            kw["flags"] = self.flags
        return kw


def kernel_routes(ipr, dst: ipaddress.IPv4Network | None = None) -> list[Route]:
    """RouteList / RouteListFiltered(RT_FILTER_DST): IPv4 routes of the main table."""
    return [Route(dst=r.dst, gw=r.gw, link_index=r.oif, flags=r.flags, table=r.table)
            for r in main_routes(ipr, dst)]


class RouteNetwork(SimpleNetwork):
    def __init__(self, sm, ext_iface, backend_type: str, mtu: int, link_index: int, get_route, ipr,
                 lease=None, route_check_seconds: float = ROUTE_CHECK_SECONDS):
        super().__init__(sm, ext_iface, lease, ipr)
        self.backend_type = backend_type
        self._mtu = mtu
        self.link_index = link_index
        self.get_route = get_route
        self.routes: list[Route] = []
        self.lock = threading.Lock()
        self.route_check_seconds = route_check_seconds
        self._checker = None

    def mtu(self) -> int:
        return self._mtu

    # -- events (handleSubnetEvents) ------------------------------------------------------
    def handle_subnet_events(self, batch) -> None:
        if self._checker is None:  # Run starts routeCheck next to the event loop
            self._checker = threading.Thread(target=self._route_check, name="routeCheck", daemon=True)
            self._checker.start()
        with self.lock:
            for event in batch:
                attrs = event.lease.attrs
                if attrs.backend_type != self.backend_type:
                    log.warning(SRC, f"Ignoring non-{self.backend_type} subnet: type={attrs.backend_type}")
                    continue
                route = self.get_route(event.lease)
                if event.type == EVENT_ADDED:
                    log.info(SRC, f"Subnet added: {event.lease.subnet} via {attrs.public_ip}")
                    self._route_add(route)
                elif event.type == EVENT_REMOVED:
                    log.info(SRC, f"Subnet removed: {event.lease.subnet}")
                    self._remove_from_list(route)  # always, even if the kernel refuses
                    try:
                        self.ipr.route("del", **route.netlink_args())
                    except Exception as e:
                        log.error(SRC, f"Error deleting route to {event.lease.subnet}: {go_strerror(e)}")
                else:
                    log.error(SRC, f"Internal error: unknown event type: {event.type}")

    def _route_add(self, route: Route) -> None:
        self._add_to_list(route)
        try:
            existing = kernel_routes(self.ipr, route.dst)
        except Exception as e:
            log.warning(SRC, f"Unable to list routes: {go_strerror(e)}")
            existing = []
        if existing and not existing[0].equal(route):
            # same destination, another gateway or device: remove it, add ours below
            log.warning(SRC, f"Replacing existing route to {existing[0]} with {route}")
            try:
                self.ipr.route("del", **existing[0].netlink_args())
            except Exception as e:
                log.error(SRC, f"Effor deleteing route to {existing[0].dst}: {go_strerror(e)}")
                return
            self._remove_from_list(existing[0])
            existing = kernel_routes(self.ipr, route.dst)
        if existing and existing[0].equal(route):
            log.info(SRC, f"Route to {route} already exists, skipping.")
            return
        try:
            self.ipr.route("add", **route.netlink_args())
        except Exception as e:
            log.error(SRC, f"Error adding route to {route}: {go_strerror(e)}")

    def _add_to_list(self, route: Route) -> None:
        if not any(r.equal(route) for r in self.routes):
            self.routes.append(route)

    def _remove_from_list(self, route: Route) -> None:
        for i, r in enumerate(self.routes):
            if r.equal(route):
                del self.routes[i]
                return

    # -- routeCheck ---------------------------------------------------------------------------
    def _route_check(self) -> None:
        ipr = IPRoute()  # this thread's own netlink socket
        while True:
            time.sleep(self.route_check_seconds)
            try:
                self.check_subnet_exist_in_routes(ipr)
            except Exception as e:  # never let the checker die
                log.error(SRC, f"Error fetching route list. Will automatically retry: {go_strerror(e)}")

    def check_subnet_exist_in_routes(self, ipr) -> None:
        with self.lock:
            have = [r for r in kernel_routes(ipr) if r.dst is not None]
            for route in self.routes:
                if any(r.equal(route) for r in have):
                    continue
                try:
                    ipr.route("add", **route.netlink_args())
                except Exception:
                    continue  # a netlink errno is a net.Error: flannel retries silently
                log.info(SRC, f"Route recovered {route.dst} : {route.gw}")
