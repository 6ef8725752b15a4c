"""A fork server for the lab's Python daemons (flanneld, dockerd): one import, many nodes.

Each node runs its own flanneld process, as flannel does. Started the plain way, every
one of them would load Python, grpc, the etcd client and pyroute2 on its own: about
35 MiB and a third of a CPU-second each, which is what limits a 100-node lab. The
zygote imports all that once; for each service start it forks, and the child steps
into the node (network namespace, file view, hostname: ``labkit.nsexec.enter``),
redirects its output to the service log, reseeds its random generator and runs the
daemon's ``main``. Children share the zygote's memory pages until they write to them.

The zygote is itself a lab process (it lives in the lab's switch namespace) and listens
on a unix socket in the lab's state folder; ``Service.start`` falls back to a plain
process when it is not running. Nothing here is flannel's: it is how the lab hosts
many flanneld processes cheaply.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any

SOCKET_NAME = "zygote.sock"
PRELOAD = ("etcd3", "etcd3.events", "grpc", "pyroute2", "pyroute2.iproute", "pyroute2.netlink.rtnl", "urllib.request",
           "labkit.flannel.daemon", "labkit.flannel.legacy.daemon", "labkit.docker.daemon",
           "labkit.docker.containers", "labkit.flannel.etcd_manager", "labkit.flannel.iface",
           "labkit.flannel.trafficmngr", "labkit.flannel.backends.vxlan.vxlan", "labkit.flannel.legacy.vxlan",
           "labkit.flannel.backends.udp.udp", "labkit.flannel.backends.hostgw", "labkit.docker.iptables",
           "labkit.docker.opts", "argparse", "labkit.flannel.backends.vxlan.vxlan_network",
           "labkit.flannel.backends.vxlan.device", "labkit.flannel.subnet", "labkit.flannel.subnetenv")
ALLOWED = {m for m in PRELOAD if m.endswith(".daemon")}
# child pid -> the file its wait status goes to (``Service.exit_path``): the service
# manager tells a crash (Restart=on-failure) from a clean exit by it
_exit_paths: dict[int, str] = {}
_early: dict[int, int] = {}  # statuses reaped before their pid was registered


def request(sock_path: str, req: dict[str, Any], timeout: float = 10.0) -> int:
    """Ask the zygote at `sock_path` to start a service; returns the child's pid."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json.dumps(req).encode() + b"\n")
        answer = json.loads(s.makefile().readline())
    if "error" in answer:
        raise OSError(answer["error"])
    return answer["pid"]


def _child(req: dict[str, Any]) -> None:
    """In the forked child: become the service, never return."""
    try:
        os.setsid()
        from .nsexec import NoNamespace, enter, parse_view
        # the service's log first, so that a failure to enter its node is told there too
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        binds, etc, hostname = parse_view(req.get("view", []))
        try:
            enter(req["netns"], binds, etc, hostname)
        except NoNamespace as e:
            sys.stderr.write(f"labkit: cannot start {req.get('name', 'the service')}: {e}\n")
            sys.stderr.flush()
            os._exit(1)
        os.environ.clear()
        os.environ.update(req.get("env") or {})
        os.chdir(req.get("cwd") or "/")
        import random
        random.seed()  # the zygote's generator state must not be shared by every node
        from .flannel import log as flog
        flog.set_pid(os.getpid())
        import ctypes
        ctypes.CDLL(None).prctl(15, req.get("name", "labkit").encode()[:15], 0, 0, 0)  # PR_SET_NAME
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        import importlib
        module = importlib.import_module(req["module"])
        sys.argv = [req["module"], *req["args"]]
        code = module.main(req["args"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - report anything, then die
        try:
            sys.stderr.write(f"zygote child: {e!r}\n")
            sys.stderr.flush()
        finally:
            code = 1
    os._exit(code or 0)


def _warm_netlink() -> None:
    """What every flanneld does with netlink, once, here: pyroute2 builds its message
    classes and attribute maps on first use, so doing it before forking leaves them in
    pages every child shares instead of each child building (and owning) its own copy.

    It runs in a thread that first unshares a network namespace of its own: a fresh,
    unnamed one that only this thread sees and that disappears when it ends, so the
    veth and VXLAN devices made here touch neither the lab nor the host. Any failure
    only means less sharing."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET, for this thread only
        return
    from pyroute2 import IPRoute

    from .flannel.ip import AF_BRIDGE, NUD_PERMANENT, routes_into
    ipr = IPRoute()
    steps = [
        lambda: ipr.link("add", ifname="warm0", kind="veth", peer="warm1", mtu=1500),
        lambda: ipr.link("set", index=ipr.link_lookup(ifname="warm0")[0], state="up"),
        lambda: ipr.addr("add", index=ipr.link_lookup(ifname="warm0")[0], address="10.0.0.1", prefixlen=24),
        lambda: ipr.link("add", ifname="warm.1", kind="vxlan", vxlan_id=1,
                         vxlan_link=ipr.link_lookup(ifname="warm0")[0],
                         vxlan_local="10.0.0.1", vxlan_learning=0, vxlan_port=8472, mtu=1450,
                         address="02:00:00:00:00:01"),
        lambda: ipr.link("set", index=ipr.link_lookup(ifname="warm.1")[0], state="up"),
        lambda: ipr.link("get", index=ipr.link_lookup(ifname="warm.1")[0])[0].get_attr("IFLA_ADDRESS"),
        lambda: ipr.addr("add", index=ipr.link_lookup(ifname="warm.1")[0], address="10.1.0.0", prefixlen=32),
        lambda: ipr.get_addr(family=2, index=ipr.link_lookup(ifname="warm.1")[0]),
        lambda: ipr.neigh("replace", dst="10.1.1.0", lladdr="02:00:00:00:00:02",
                          ifindex=ipr.link_lookup(ifname="warm.1")[0], state=NUD_PERMANENT),
        lambda: ipr.neigh("replace", family=AF_BRIDGE, ifindex=ipr.link_lookup(ifname="warm.1")[0],
                          lladdr="02:00:00:00:00:02", dst="10.0.0.2", state=NUD_PERMANENT, flags=0x02),
        lambda: ipr.route("replace", dst="10.1.1.0/24", gateway="10.1.1.0", oif=ipr.link_lookup(ifname="warm.1")[0],
                          flags=4, proto=3),
        lambda: routes_into(ipr, "10.1.0.0/16"),
        lambda: ipr.get_neighbours(family=2),
        lambda: ipr.get_neighbours(family=AF_BRIDGE),
        lambda: ipr.route("get", dst="10.0.0.2"),
        lambda: ipr.link("del", index=ipr.link_lookup(ifname="warm.1")[0]),
    ]
    try:
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001, S112 - warming only
                continue
    finally:
        ipr.close()


def prewarm() -> None:
    """Warm the code paths children share (see _warm_netlink), in a thread of its own."""
    import threading
    t = threading.Thread(target=_warm_netlink, name="prewarm", daemon=True)
    t.start()
    t.join(20)


def preload() -> None:
    """Import what every child needs, once. protobuf is whatever the installed runtime is
    (upb): python-etcd3's messages are rebuilt for it (labkit/etcdpb.py), and pure-Python
    protobuf would cost every flanneld CPU on each etcd answer and memory (measured at 100
    nodes: 3.7 CPU-s and 150 MiB PSS more)."""
    import importlib
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in PRELOAD:
            importlib.import_module(m)


def serve(sock_path: str) -> None:
    preload()
    # Sharing pages with many children is worth 0.1 s of the zygote's start (a lab of
    # 100 nodes saves megabytes per node); a lab of two or three waits for it instead
    # (Lab.zygote: LABKIT_ZYGOTE_SHARE=0 below ZYGOTE_SHARE_FROM nodes).
    if os.environ.get("LABKIT_ZYGOTE_SHARE", "1") == "1":
        prewarm()
        import gc
        gc.collect()
        gc.freeze()  # keep the preloaded objects out of the collector: fewer copied pages
    signal.signal(signal.SIGCHLD, lambda *a: _reap())
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(64)
    while True:
        try:
            conn, _ = srv.accept()
        except InterruptedError:
            continue
        with conn:
            try:
                req = json.loads(conn.makefile().readline())
                if req.get("module") not in ALLOWED:
                    raise ValueError(f"not a lab daemon: {req.get('module')!r}")
                pid = os.fork()
                if pid == 0:
                    srv.close()
                    conn.close()
                    _child(req)
                if isinstance(req.get("exit"), str):
                    _exit_paths[pid] = req["exit"]
                    if pid in _early:
                        _record_exit(pid, _early.pop(pid))
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except Exception as e:  # noqa: BLE001 - answer the client, keep serving
                conn.sendall(json.dumps({"error": str(e)}).encode() + b"\n")


def _record_exit(pid: int, status: int) -> None:
    """Write `PID WAITSTATUS` where the service manager looks for it."""
    path = _exit_paths.pop(pid, None)
    if path is None:
        return
    try:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{pid} {status}\n")
        os.replace(tmp, path)
    except OSError:
        pass  # the lab is being removed


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in _exit_paths:
            _record_exit(pid, status)
        else:
            _early[pid] = status


if __name__ == "__main__":
    serve(sys.argv[1])
