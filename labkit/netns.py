"""The low-level verbs: namespaces, commands inside them, netlink sockets into them.

Every call that reaches the kernel on behalf of the lab process goes through here, so
the rule "never touch the root namespace" has one place to hold:

* namespaces are created and deleted only under names the caller validated;
* netlink work runs on a pyroute2 socket opened *inside* a named namespace
  (``flags=0``: a typo is an error, never a new namespace), reused per namespace,
  and always from one worker thread, because pyroute2's sync API refuses to run on a
  thread that already has an asyncio loop (a Jupyter kernel's main thread);
* the convergence checks' read-only dumps (``labkit/rtdump.py``) use a plain netlink
  socket opened inside the namespace the same way (``route_socket``);
* commands run through ``labkit.nsexec`` with an argv list, never a shell string.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .errors import LabError
from .nsexec import enter_net

NETNS_DIR = "/run/netns"
# labkit.nsexec runs as a script, isolated (-I) and without site (-S): it needs only the
# standard library, and skipping site-packages and the labkit package keeps each command
# on a node at about half the start-up time of `python -m labkit.nsexec`
NSEXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsexec.py")

T = TypeVar("T")


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def add(name: str) -> None:
    """`ip netns add`: a named, persistent namespace with its loopback brought up."""
    if exists(name):
        raise LabError(f"network namespace {name} already exists")
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def add_many(names: Sequence[str]) -> None:
    """`add` for many namespaces with one `ip -batch` (two commands per namespace otherwise:
    a 100-node lab spent seconds of CPU starting `ip`)."""
    for name in names:
        if exists(name):
            raise LabError(f"network namespace {name} already exists")
    if not names:
        return
    r = subprocess.run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"ip -batch (netns add): {r.stderr.strip()[:300]}")
    for n in names:   # lo up, through the socket the node's set-up opens there anyway
        netlink.call(n, _lo_up)


LOOPBACK_IFINDEX = 1  # the kernel's own constant: lo is the first device of every namespace


def _lo_up(ipr: Any) -> None:
    ipr.link("set", index=LOOPBACK_IFINDEX, state="up")


def delete(name: str) -> None:
    """Kill what runs inside, then remove the namespace (its devices go with it)."""
    if not exists(name):
        return
    kill_pids(pids(name))
    netlink.forget(name)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    if exists(name):  # a mount left over from a crash: detach it ourselves
        subprocess.run(["umount", "-l", os.path.join(NETNS_DIR, name)], capture_output=True)
        try:
            os.unlink(os.path.join(NETNS_DIR, name))
        except OSError:
            pass


def inode(name: str) -> int | None:
    try:
        return os.stat(os.path.join(NETNS_DIR, name)).st_ino
    except OSError:
        return None


def pids(name: str) -> list[int]:
    """Processes whose network namespace is `name` (what `ip netns pids` reports)."""
    ino = inode(name)
    if ino is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                found.append(int(entry))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def kill_pids(pid_list: Iterable[int], timeout: float = 2.0) -> None:
    """SIGTERM, wait a little, then SIGKILL whatever is left."""
    live = []
    for pid in pid_list:
        try:
            os.kill(pid, signal.SIGTERM)
            live.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [p for p in live if alive(p)]
        if live:
            time.sleep(0.02)
    for pid in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    """The process runs (it exists and is not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def nsexec_argv(ns: str, argv: list[str], view: Sequence[str] = ()) -> list[str]:
    """The argv that runs `argv` inside namespace `ns`.

    `view` are labkit.nsexec options describing the node's file view
    (``--bind SRC:DST``, ``--etc UPPER:WORK``, ``--hostname NAME``).
    The program itself gets the environment unchanged (only nsexec ignores PYTHON*).
    """
    return [sys.executable, "-I", "-S", NSEXEC, ns, *view, "--", *argv]


def run(ns: str, argv: list[str], *, view: Sequence[str] = (), env: Mapping[str, str] | None = None,
        timeout: float | None = 60, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command inside `ns` and collect its output (text)."""
    r = subprocess.run(nsexec_argv(ns, argv, view), capture_output=True, text=True,
                       env=env, timeout=timeout, input=input,
                       stdin=subprocess.DEVNULL if input is None else None)
    if check and r.returncode != 0:
        raise LabError(f"[{ns}] {' '.join(argv)} failed ({r.returncode}): "
                       f"{(r.stderr or r.stdout).strip()}")
    return r


@contextlib.contextmanager
def _thread_in(ns: str, what: str) -> Iterator[None]:
    """Step this thread (not the process) into namespace `ns` for the body, and back.
    Namespaced files (/proc/sys/net) and sockets follow the namespace of the thread that
    opens them. Failing to step back would leave the thread in the wrong namespace, so
    that ends the process."""
    path = os.path.join(NETNS_DIR, ns)
    if not os.path.exists(path):  # never a new namespace for a typo
        raise LabError(f"network namespace {ns} does not exist")
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if enter_net(target) != 0:
            raise LabError(f"cannot enter {ns} {what}")
        try:
            yield
        finally:
            if enter_net(own) != 0:  # never stay in the wrong namespace
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)


def _socket_in(ns: str) -> Any:
    """A pyroute2 socket bound to namespace `ns`: this (worker) thread steps into it, opens
    a plain IPRoute there, which stays bound to it, and steps back. pyroute2's own
    ``IPRoute(netns=...)`` does it through a helper process, which on a busy machine took up
    to a second per namespace: most of a 250-node lab's underlay."""
    from pyroute2 import IPRoute
    with _thread_in(ns, "to open a netlink socket"):
        return IPRoute()


def route_socket(ns: str) -> Any:
    """A plain NETLINK_ROUTE socket bound to namespace `ns` (this thread steps into it to
    open the socket, and back): for labkit/rtdump.py's read-only dumps, without pyroute2."""
    import socket
    with _thread_in(ns, "to open a netlink socket"):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # 0: NETLINK_ROUTE


def ifindex(ns: str, ifname: str) -> int | None:
    """The index of device `ifname` in namespace `ns`, or None if there is no such device."""
    import socket
    with _thread_in(ns, "to look up a device"):
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            return None


PRUNE_EVERY = 1.0


class Netlink:
    """One pyroute2 IPRoute socket per namespace, all used from one worker thread."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="labkit-netlink")
        self._sockets: dict[str, tuple[int | None, Any]] = {}  # ns -> (its inode, pyroute2 IPRoute)
        self._prune_at = 0.0

    def _socket(self, ns: str) -> Any:
        """The cached socket for `ns`, unless `ns` is now another namespace of the same
        name (a node's docker removes container namespaces itself, and names are reused)."""
        cached = self._sockets.get(ns)
        if cached is not None and inode(ns) != cached[0]:
            self._close(ns)
            cached = None
        if cached is None:
            cached = (inode(ns), _socket_in(ns))
            self._sockets[ns] = cached
        return cached[1]

    def _close(self, ns: str) -> None:
        cached = self._sockets.pop(ns, None)
        if cached is not None:
            try:
                cached[1].close()
            except Exception:
                pass

    def _prune(self) -> None:
        """Close sockets whose namespace is gone or was replaced: an open socket keeps a
        deleted namespace (and the veth of a stopped container) alive. At most every
        PRUNE_EVERY seconds: one stat per cached namespace on every call made building a
        100-node underlay quadratic (25,000 stats); `delete` in this process forgets at once."""
        if time.monotonic() < self._prune_at:
            return
        self._prune_at = time.monotonic() + PRUNE_EVERY
        for name, (ino, _) in list(self._sockets.items()):
            if inode(name) != ino:
                self._close(name)

    def call(self, ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(ipr, *args, **kwargs) with a socket inside `ns`; return its result."""
        def job() -> T:
            self._prune()
            return fn(self._socket(ns), *args, **kwargs)
        if threading.current_thread().name.startswith("labkit-netlink"):
            return job()
        return self._pool.submit(job).result()

    def forget(self, ns: str) -> None:
        if threading.current_thread().name.startswith("labkit-netlink"):
            self._close(ns)
        else:
            self._pool.submit(self._close, ns).result()


netlink = Netlink()


def write_sysctl(ns: str, key: str, value: str) -> None:
    """Write /proc/sys/<key> as seen from `ns` (e.g. net/ipv4/ip_forward).

    /proc/sys/net follows the network namespace of the *thread* that opens it, so the
    netlink worker thread steps into `ns`, writes, and steps back.
    """
    def job(_ipr: Any) -> None:
        with _thread_in(ns, f"to set {key}"), open(f"/proc/sys/{key}", "w") as f:
            f.write(value)
    netlink.call(ns, job)
