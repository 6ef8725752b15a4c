"""Which tunnel link types the running kernel has (ipip and wireguard may be missing).

A backend whose device the kernel cannot create must say so, by name, and never fall
back to another backend. Two places ask:

* flanneld, inside a node: the backend tries to create its device; the kernel's
  EOPNOTSUPP ("Unknown device type" in ``ip link``'s words) becomes
  :func:`missing_link_type`'s message;
* the lab, *before it builds anything*: :func:`link_kind_available` makes a throwaway
  device in a scratch namespace that it creates and deletes (never in the root
  namespace), so ``labkit up --backend ipip`` is refused up front on such a kernel.

A process killed during the probe leaves its ``labkit_probe_<pid>`` namespace behind;
the name carries the pid so that every ``labkit clean`` can find and delete the
probes whose process is gone (:func:`dead_probes`).

There is no modprobe here: a type that is not built in or already loaded is missing.

The udp backend needs no link kind but a TUN device, made through ``/dev/net/tun``. In a
rootless lab (labkit/sandbox.py) that file is the host's, ``crw------- root``: the
learner's own uid cannot open it, so no flannel0 can exist there (:func:`tun_reason`).
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable

from ..ip import EOPNOTSUPP, errno_of

TUN_PATH = "/dev/net/tun"
SCRATCH_PREFIX = "labkit_probe_"   # "_" cannot occur in a lab name: no lab owns this
_cache: dict[tuple[str, tuple[str, ...]], bool | None] = {}


def probe_namespace(pid: int) -> str:
    """The scratch namespace of the probe run by process `pid`."""
    return f"{SCRATCH_PREFIX}{pid}"


def probe_owner(ns: str) -> int | None:
    """The pid in a probe namespace's name (None: not a probe namespace)."""
    rest = ns[len(SCRATCH_PREFIX):] if ns.startswith(SCRATCH_PREFIX) else ""
    return int(rest) if rest.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_probes(names: Iterable[str], alive: Callable[[int], bool] = _alive) -> list[str]:
    """The probe namespaces among `names` whose process no longer exists."""
    return [ns for ns in names if (pid := probe_owner(ns)) is not None and not alive(pid)]


def missing_link_type(kind: str) -> str:
    return (f"this kernel has no {kind} link type (`ip link add NAME type {kind}` fails with "
            f"\"Unknown device type\"): the {kind} kernel module is neither built in nor loaded")


def is_missing_link_type(err: BaseException) -> bool:
    """True for the kernel's answer to a link kind it does not know."""
    return errno_of(err) == EOPNOTSUPP


def link_kind_available(kind: str, *args: str) -> bool | None:
    """Can this kernel create a `kind` link (`args`: what that kind requires, such as a
    VXLAN id)? None when it cannot be tested (not root).

    The answer is cached: the kernel does not change under a running process.
    """
    if (kind, args) in _cache:
        return _cache[(kind, args)]
    if os.geteuid() != 0:
        return None
    ns = probe_namespace(os.getpid())
    answer = None
    try:
        if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
            return None
        r = subprocess.run(["ip", "-n", ns, "link", "add", "probe0", "type", kind, *args],
                           capture_output=True, text=True)
        if r.returncode == 0:
            answer = True
        elif "Unknown device type" in r.stderr or "not supported" in r.stderr.lower():
            answer = False
    except OSError:
        return None
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    _cache[(kind, args)] = answer
    return answer


def tun_reason(path: str = TUN_PATH) -> str:
    """"" when this process can open the TUN clone device (flannel's udp backend opens it
    to make flannel0, pkg/backend/udp), else why not. Opening it creates nothing."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (1, 13):  # EPERM, EACCES
            return (f"{path} cannot be opened by this user ({e.strerror}; it is root's, mode 0600): "
                    "a rootless lab cannot make flannel0, the udp backend's TUN device; "
                    f"an administrator can allow it with: chmod 0666 {path}")
        return f"{path} is not usable ({e.strerror}): the udp backend needs a TUN device"
    os.close(fd)
    return ""
