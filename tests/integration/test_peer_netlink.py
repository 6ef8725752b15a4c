"""The hand-packed per-peer netlink requests (labkit/flannel/netlink.py) leave the kernel in
the same state as pyroute2's, and report errors the same way. Runs in a network namespace
of a thread's own (unshare), which disappears with the thread: nothing of the host is touched."""
import ctypes
import ipaddress
import os
import subprocess
import threading

import pytest

from labkit.flannel.ip import AF_BRIDGE, AF_INET, NTF_SELF, NUD_PERMANENT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")


def _in_scratch_netns(fn):
    out: dict = {}

    def run():
        if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET, this thread only
            out["error"] = OSError(ctypes.get_errno(), "unshare")
            return
        try:
            out["value"] = fn(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net")
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def _show(nspath, *argv):
    return subprocess.run(["nsenter", f"--net={nspath}", *argv], capture_output=True, text=True, check=True).stdout


def test_same_kernel_state_and_errors_as_pyroute2():
    def work(nspath):
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        from labkit.flannel.netlink import PeerLinks
        ipr = IPRoute()
        ipr.link("add", ifname="u0", kind="veth", peer="u1")
        i0 = ipr.link_lookup(ifname="u0")[0]
        ipr.link("set", index=i0, state="up")
        ipr.addr("add", index=i0, address="10.0.0.1", prefixlen=24)
        idx = {}
        for name, vni, net in (("vpy", 1, "10.1.0.0"), ("vhand", 2, "10.2.0.0")):
            ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_link=i0, vxlan_local="10.0.0.1",
                     vxlan_learning=0, vxlan_port=8470 + vni)
            idx[name] = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx[name], state="up")
            ipr.addr("add", index=idx[name], address=net, prefixlen=32)
        pl = PeerLinks()
        for k in range(1, 6):  # what flanneld does per peer: ARP, FDB, the onlink route (vxlan_network.go)
            mac = f"02:00:00:00:00:{k:02x}"
            ipr.neigh("replace", dst=f"10.1.{k}.0", lladdr=mac, ifindex=idx["vpy"], state=NUD_PERMANENT)
            ipr.neigh("replace", family=AF_BRIDGE, ifindex=idx["vpy"], lladdr=mac, dst=f"10.0.0.{k + 1}",
                      state=NUD_PERMANENT, flags=NTF_SELF)
            ipr.route("replace", dst=f"10.1.{k}.0/24", gateway=f"10.1.{k}.0", oif=idx["vpy"], flags=4, proto=3)
            pl.neigh_replace(AF_INET, idx["vhand"], f"10.2.{k}.0", mac, NUD_PERMANENT)
            pl.neigh_replace(AF_BRIDGE, idx["vhand"], f"10.0.0.{k + 1}", mac, NUD_PERMANENT, NTF_SELF)
            pl.route_replace(ipaddress.IPv4Network(f"10.2.{k}.0/24"), f"10.2.{k}.0", idx["vhand"], 4, 3)
        mac = "02:00:00:00:00:01"  # and when a lease goes
        ipr.neigh("del", dst="10.1.1.0", lladdr=mac, ifindex=idx["vpy"], state=NUD_PERMANENT)
        ipr.neigh("del", family=AF_BRIDGE, ifindex=idx["vpy"], lladdr=mac, dst="10.0.0.2", flags=NTF_SELF)
        ipr.route("del", dst="10.1.1.0/24", gateway="10.1.1.0", oif=idx["vpy"])
        pl.neigh_del(AF_INET, idx["vhand"], "10.2.1.0", mac, NUD_PERMANENT)
        pl.neigh_del(AF_BRIDGE, idx["vhand"], "10.0.0.2", mac, 0, NTF_SELF)
        pl.route_del(ipaddress.IPv4Network("10.2.1.0/24"), "10.2.1.0", idx["vhand"])
        errors = []
        for fn in (lambda: ipr.route("del", dst="10.1.1.0/24", gateway="10.1.1.0", oif=idx["vpy"]),
                   lambda: pl.route_del(ipaddress.IPv4Network("10.2.1.0/24"), "10.2.1.0", idx["vhand"])):
            try:
                fn()
            except NetlinkError as e:
                errors.append(str(e))
        state = {}
        for dev, net in (("vpy", "10.1."), ("vhand", "10.2.")):
            state[dev] = [sorted(_show(nspath, *cmd, dev).replace(net, "10.X.").replace(dev, "DEV").splitlines())
                          for cmd in (("ip", "-d", "neigh", "show", "dev"), ("bridge", "fdb", "show", "dev"),
                                      ("ip", "-d", "route", "show", "dev"))]
        pl.close()
        ipr.close()
        return state, errors

    state, errors = _in_scratch_netns(work)
    assert state["vhand"] == state["vpy"]
    arp, fdb, routes = state["vhand"]
    assert len(arp) == 4 and all("PERMANENT" in line for line in arp)
    assert len([x for x in fdb if " dst 10.0.0." in x]) == 4
    assert len(routes) == 4 and all("onlink" in r and "proto boot" in r for r in routes)
    assert errors == ["(3, 'No such process')"] * 2
