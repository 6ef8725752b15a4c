"""labkit's flanneld: the steps of flannel's main.go, in flannel's order.

Run inside a node (``python -m labkit.flannel.daemon -etcd-endpoints=... -iface=eth0``):

 1. flags (and FLANNELD_* environment variables), renew-margin check;
 2. the previous subnet, read back from the subnet file;
 3. the etcd subnet manager;
 4. the network config, retried every second until it exists and is valid;
 5. the br_netfilter check;
 6. the external interface (-iface / -public-ip);
 7. the backend named by Backend.Type; RegisterNetwork (device, lease, address);
    then the iptables rules (FORWARD accept; masquerade with -ip-masq);
 8. subnet.env, written atomically ("flannel is ready");
 9. Run: watch every lease and program the kernel for each remote one;
10. CompleteLease: renew our lease before it expires; stop if it is deleted.
Flags that start with -lab- are not flannel's: they shorten timers for the lab.
"""
from __future__ import annotations

import os
import queue
import random
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, TypeAlias, TypedDict, cast

from . import log, versions
from .subnetenv import previous_subnet, write_subnet_file

if TYPE_CHECKING:
    from .backends import Network
    from .etcd_manager import LocalManager, Snapshot
    from .subnet import Event

SRC = "main.go"

FlagValue = str | int | bool | list[str]
FlagKind = type[str] | type[int] | type[bool] | type[list[str]]

# name -> (default, kind); kind is str, int, bool or list (repeatable)
FLAGS: dict[str, tuple[FlagValue, FlagKind]] = {
    "etcd-endpoints": ("http://127.0.0.1:4001,http://127.0.0.1:2379", str),
    "etcd-prefix": ("/coreos.com/network", str),
    "etcd-keyfile": ("", str), "etcd-certfile": ("", str), "etcd-cafile": ("", str),
    "etcd-username": ("", str), "etcd-password": ("", str),
    "iface": ([], list), "iface-regex": ([], list), "iface-can-reach": ("", str),
    "public-ip": ("", str), "public-ipv6": ("", str),
    "subnet-file": ("/run/flannel/subnet.env", str),
    "subnet-lease-renew-margin": (60, int),
    "ip-masq": (False, bool),
    "iptables-forward-rules": (True, bool), "iptables-resync": (5, int),
    "healthz-ip": ("0.0.0.0", str), "healthz-port": (0, int),
    "kube-subnet-mgr": (False, bool), "v": (0, int), "version": (False, bool),
    # lab-only: real flannel has a fixed 24 h TTL and a margin in minutes
    "lab-subnet-ttl": (24 * 3600, int), "lab-renew-margin-seconds": (0, int), "lab-seed": ("", str),
    "lab-flannel-version": (versions.MODERN, str),  # the release whose profile to follow (versions.py)
}

# flannel's kube subnet manager keeps leases in Node objects of a Kubernetes API server. The
# lab has none and will not pretend to: none can be installed from the package registries it
# uses (Debian's and PyPI's), and a fake one would teach the wrong thing.
KUBE_SUBNET_MGR_REFUSAL = (
    "-kube-subnet-mgr needs a Kubernetes API server, and none can be "
    "installed from the package registries this lab uses (Debian, PyPI); use the etcd subnet manager "
    "instead: leave -kube-subnet-mgr out, write the network config into etcd (<etcd-prefix>/config) "
    "and flanneld keeps each node's lease there")


# the parsed flags (flannel's CmdLineOpts), one key per entry of FLAGS
Options = TypedDict("Options", {
    "etcd-endpoints": str, "etcd-prefix": str,
    "etcd-keyfile": str, "etcd-certfile": str, "etcd-cafile": str,
    "etcd-username": str, "etcd-password": str,
    "iface": list[str], "iface-regex": list[str], "iface-can-reach": str,
    "public-ip": str, "public-ipv6": str,
    "subnet-file": str,
    "subnet-lease-renew-margin": int,
    "ip-masq": bool,
    "iptables-forward-rules": bool, "iptables-resync": int,
    "healthz-ip": str, "healthz-port": int,
    "kube-subnet-mgr": bool, "v": int, "version": bool,
    "lab-subnet-ttl": int, "lab-renew-margin-seconds": int, "lab-seed": str, "lab-flannel-version": str,
})

# what the main loop waits on: watch events, a re-listed Snapshot, or None (a signal)
EventQueue: TypeAlias = "queue.Queue[list[Event] | Snapshot | None]"


class FlagError(Exception):
    pass


def _convert(name: str, kind: FlagKind, raw: str) -> FlagValue:
    if kind is bool:
        if raw.lower() in ("1", "t", "true"):
            return True
        if raw.lower() in ("0", "f", "false"):
            return False
        raise FlagError(f'invalid boolean value "{raw}" for -{name}: parse error')
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise FlagError(f'invalid value "{raw}" for flag -{name}: parse error') from None
    return raw


def parse_flags(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> Options:
    """Go `flag` syntax: -name=value, --name=value, -name value, bare -boolflag."""
    opts = {k: (list(d) if isinstance(d, list) else d) for k, (d, _) in FLAGS.items()}
    # environment first (FLANNELD_ETCD_PREFIX=...), then the command line wins
    for name, (_, kind) in FLAGS.items():
        env = environ.get("FLANNELD_" + name.upper().replace("-", "_"))
        if env is not None:
            opts[name] = env.split(",") if kind is list else _convert(name, kind, env)
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unexpected argument {arg}")
        name, eq, value = arg.lstrip("-").partition("=")
        if name in ("h", "help"):
            raise FlagError("help")
        if name not in FLAGS:
            raise FlagError(f"flag provided but not defined: -{name}")
        kind = FLAGS[name][1]
        if not eq:
            if kind is bool:
                value = "true"
            elif not args:
                raise FlagError(f"flag needs an argument: -{name}")
            else:
                value = args.pop(0)
        current = opts[name]
        if isinstance(current, list):  # a repeatable flag (kind list)
            current.append(value)
        else:
            opts[name] = _convert(name, kind, value)
    return cast(Options, opts)  # FLAGS and Options name the same flags with the same kinds


def usage() -> str:
    lines = ["Usage: flanneld [OPTION]..."]
    for name, (default, _) in FLAGS.items():
        lines.append(f"  -{name}  (default {default!r})")
    return "\n".join(lines)


MAX_DURATION_SECONDS = (2**63 - 1) / 1e9  # Go's maximum time.Duration, 2562047h47m16.854775807s


def go_duration(seconds: float) -> str:
    """Go's time.Duration String(): 23h0m0s, 1m30s, 4.5s (the longest Duration past its range)."""
    if seconds != seconds or seconds > MAX_DURATION_SECONDS:  # NaN, inf: Go saturates at ~292 years
        seconds = MAX_DURATION_SECONDS
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    s_txt = f"{s:.9f}".rstrip("0").rstrip(".")
    if h:
        return f"{int(h)}h{int(m)}m{s_txt}s"
    if m:
        return f"{int(m)}m{s_txt}s"
    return f"{s_txt}s"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_flags(sys.argv[1:] if argv is None else argv)
    except FlagError as e:
        if str(e) != "help":
            print(e, file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 0 if str(e) == "help" else 2
    try:
        profile = versions.activate(opts["lab-flannel-version"])
    except versions.VersionError as e:
        print(f"invalid value for flag -lab-flannel-version: {e}", file=sys.stderr)
        return 2
    if opts["version"]:
        print(f"v{profile.release}-labkit")
        return 0
    log.set_verbosity(opts["v"])  # klog.V: read by the backends (the udp proxy's errors)
    def go(v: object) -> str:  # Go's %+v of a flag value
        return "[" + " ".join(v) + "]" if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v)
    log.info(SRC, "CLI flags config: {" + " ".join(f"{k}:{go(v)}" for k, v in opts.items()) + "}")
    margin_min = opts["subnet-lease-renew-margin"]
    if margin_min >= 24 * 60 or margin_min <= 0:
        log.error(SRC, "Invalid subnet-lease-renew-margin option, out of acceptable range")
        return 1
    if opts["kube-subnet-mgr"]:
        log.error(SRC, f"Failed to create SubnetManager: {KUBE_SUBNET_MGR_REFUSAL}")
        return 1
    seed = opts["lab-seed"]

    # 2. previous subnet, 3. subnet manager
    prev = previous_subnet(opts["subnet-file"])
    from .etcd_manager import LocalManager, connect
    from .etcdv2_manager import V2LocalManager
    ttl = opts["lab-subnet-ttl"]
    margin: float = opts["lab-renew-margin-seconds"] or margin_min * 60
    if ttl > 0 and margin >= ttl:  # e.g. -lab-subnet-ttl=20 alone: flannel's share of the TTL, not its 1 h
        margin = max(ttl * margin_min / (24 * 60), ttl / 4)
    sm: LocalManager
    if profile.etcd_v2:  # flannel < 0.18.0: the etcd v2 keys API (subnet/etcdv2/)
        sm = V2LocalManager(opts["etcd-endpoints"], opts["etcd-prefix"], prev, ttl=ttl, renew_margin=margin,
                            previous=profile["previous_subnet"])
    else:
        client = None
        while client is None:
            try:
                client = connect(opts["etcd-endpoints"])
            except ConnectionError as e:
                log.error(SRC, f"Couldn't fetch network config: {e}")
                time.sleep(1)
        sm = LocalManager(client, opts["etcd-prefix"], prev, ttl=ttl, renew_margin=margin)
    log.info(SRC, f"Created subnet manager: Etcd Local Manager with Previous Subnet: "
                  f"{prev if prev else 'None'}")

    log.info(SRC, "Installing signal handlers")
    events: EventQueue = queue.Queue()
    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)
        events.put(None)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # 4. network config, retried every second (it is not watched afterwards)
    config = None
    while config is None and not stop:
        try:
            config = sm.get_network_config()
        except Exception as e:
            log.error(SRC, f"Couldn't fetch network config: {e}")
            try:
                events.get(timeout=1)
            except queue.Empty:
                pass
    if stop:
        return _exit_cleanly()
    assert config is not None  # the loop above ends with a config or a signal
    log.info(SRC, f"Found network config - Backend type: {config.backend_type}")

    # 5. br_netfilter (flannel >= 0.26.0)
    if profile["br_netfilter"] == "on" and not os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        log.error(SRC, "Failed to check br_netfilter: stat /proc/sys/net/bridge/bridge-nf-call-iptables: "
                       "no such file or directory")
        return 1

    # 6. external interface
    from pyroute2 import IPRoute

    from .iface import InterfaceError, lookup
    ipr = IPRoute()
    try:
        ext = lookup(ipr, opts["iface"][0] if opts["iface"] else None, opts["public-ip"] or None)
    except InterfaceError as e:
        log.error(SRC, str(e))
        return 1
    log.info("match.go", f"Using interface with name {ext.name} and address {ext.iface_addr}")
    log.info("match.go", f"Using {ext.ext_addr} as external address")
    if seed:
        # a seeded lab gets the same subnets on every run: only allocateSubnet's pick is seeded.
        # flannel.1's MAC stays random (pkg/mac), so a re-created device gets a new VtepMAC as
        # in flannel, and the "VtepMAC changed" reports stay reproducible.
        sm.rng = random.Random(f"{seed}/{ext.ext_addr}")

    # 7. backend
    from .backends import UnknownBackend, get_backend
    try:  # GetBackend also runs the backend's New (host-gw refuses a NAT there)
        be = get_backend(config.backend_type)(sm, ext, ipr)
    except (UnknownBackend, RuntimeError) as e:
        log.error(SRC, f"Error fetching backend: {e}")
        return 1
    try:
        bn = be.register_network(config)
    except Exception as e:
        log.error(SRC, f"Error registering network: {e}")
        return 1

    lease = bn.lease
    assert lease is not None  # RegisterNetwork acquired it

    # 7b. iptables: masquerade (-ip-masq) and FORWARD accept rules, kept by a resync loop
    from . import trafficmngr
    forward = profile["forward_rules"]  # none before v0.9.1 (PR #872): docker 1.13's DROP wins (#834)
    trafficmngr.setup(str(config.network), str(lease.subnet), opts["iptables-forward-rules"] and forward != "none",
                      opts["ip-masq"], opts["iptables-resync"], forward_style=forward,
                      bootstrap_style=profile["iptables_bootstrap"])

    # 8. subnet.env
    try:
        write_subnet_file(opts["subnet-file"], config.network, lease.subnet, bn.mtu(), opts["ip-masq"])
        log.info(SRC, f"Wrote subnet file to {opts['subnet-file']}")
        log.info(SRC, "flannel is ready")
    except OSError as e:
        log.warning(SRC, f"Failed to write subnet file: {e}")

    # 9. Run + 10. CompleteLease, in one loop fed by the etcd watch
    log.info(SRC, "Running backend.")
    return _run(sm, bn, events, stop)


def _run(sm: LocalManager, bn: Network, events: EventQueue, stop: list[int]) -> int:
    from .etcd_manager import Snapshot
    from .subnet import EVENT_REMOVED, LeaseWatcher
    lease = bn.lease
    assert lease is not None  # RegisterNetwork acquired it
    watcher = LeaseWatcher(own_subnet=lease.subnet)
    # each backend's network file logs this in flannel (vxlan_network.go, route_network.go, ...)
    log.info(type(bn).__module__.rsplit(".", 1)[-1] + ".go", "watching for new subnet leases")
    leases, rev = sm.get_subnets()
    bn.handle_subnet_events(watcher.reset(leases))
    sm.watch_leases(events.put, rev + 1)
    getattr(bn, "run", lambda: None)()  # vxlan: Run's device watcher (vxlan_network.go, flannel >= v0.27.4)

    renew_at = time.time() + sm.next_renewal(lease)
    if lease.expiration is not None:  # a reservation (no TTL) is never renewed
        log.info("local_manager.go", f"Waiting for {go_duration(renew_at - time.time())} to renew lease")
    while not stop:
        try:
            batch = events.get(timeout=max(0.0, min(renew_at - time.time(), 3600)))
        except queue.Empty:
            batch = []
        if stop:
            break
        if isinstance(batch, Snapshot):  # the watch fell behind compaction: diff a fresh list
            if not any(listed.subnet == lease.subnet for listed in batch):
                # resyncWatchSubnet: our key is gone, which reads as the lease being removed
                log.error("local_manager.go", "Lease has been revoked. Shutting down daemon.")
                log.info(SRC, "Waiting for all goroutines to exit")
                return _exit_cleanly()
            bn.handle_subnet_events(watcher.reset(list(batch)))
            batch = []
        for e in batch or []:
            if e.lease.subnet != lease.subnet:
                continue
            if e.type == EVENT_REMOVED:
                log.error("local_manager.go", "Lease has been revoked. Shutting down daemon.")
                log.info(SRC, "Waiting for all goroutines to exit")
                return _exit_cleanly()
            # our key put again: with a TTL (our renewal, or an admin's put --lease), or without
            # one, which makes it a reservation (reservations.md): nothing to renew any more
            lease.expiration = None if e.lease.expiration is None else \
                e.lease.expiration if e.lease.expiration != float("inf") else time.time() + sm.ttl
            renew_at = time.time() + sm.next_renewal(lease)
        if batch:
            bn.handle_subnet_events(watcher.update(batch))
        if time.time() >= renew_at:
            try:
                sm.renew_lease(lease)
                log.info("local_manager.go", "Lease renewed, new expiration: " +
                         time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(lease.expiration)))
                renew_at = time.time() + sm.next_renewal(lease)
            except Exception as e:
                from .etcd_manager import go_error
                log.error("local_manager.go", f"Error renewing lease (trying again in 1 min): {go_error(e)}")
                renew_at = time.time() + _renew_retry(sm)
            log.info("local_manager.go", f"Waiting for {go_duration(max(0, renew_at - time.time()))} "
                                         "to renew lease")
    log.info(SRC, "shutdownHandler sent cancel signal...")
    return _exit_cleanly()


def _renew_retry(sm: LocalManager) -> float:
    """flannel retries a failed renewal after 1 min, with its 24 h TTL and 60 min margin;
    a lab with shortened timers (-lab-subnet-ttl, -lab-renew-margin-seconds) shortens
    the retry in proportion (margin/60, at least 1 s), so that it still comes before expiry."""
    return 60.0 if sm.renew_margin >= 3600 else max(1.0, sm.renew_margin / 60)


def _exit_cleanly() -> NoReturn:
    """flanneld leaves its lease, device and routes in place when it stops."""
    log.info(SRC, "Exiting cleanly...")
    sys.stderr.flush()
    os._exit(0)  # skip grpc's watch-thread teardown noise


if __name__ == "__main__":
    sys.exit(main())
