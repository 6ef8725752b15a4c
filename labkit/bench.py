"""Benchmarks that put numbers on the blog's claims, on the learner's own machine.

* :func:`throughput` - one lab of two nodes with a container each. iperf3 measures
  a TCP stream (Gbit/s) and a flood of small UDP datagrams (packets per second that
  arrive) between the two nodes on the bare underlay, then between the containers
  through each backend in turn (the lab switches backends the way an admin would,
  see ``Lab.switch_backend``). Every figure is also given as a ratio to the
  underlay. The blog's claim: udp forwards in user space and loses, vxlan stays in
  the kernel and keeps most of the underlay's speed, host-gw adds nothing.
* :func:`scale` - bring-up of vxlan labs of several sizes to a fully converged mesh
  (every node has a route for every peer, and a sample of cross-node pings passes):
  the time it takes and the memory of the lab's processes (sum of their PSS, so
  shared pages are counted once).

All traffic stays between the lab's own namespaces and every run is bounded in
time (iperf3 -t) and in count. The lab is removed at the end, even on errors.
Figures vary from run to run and machine to machine: they are printed, never
asserted.
"""
from __future__ import annotations

import ipaddress
import json
import os
import platform
import random
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import netns, rtdump
from .errors import LabError
from .lab import Lab, clean
from .node import Node
from .spec import LabSpec

IPERF_PORT = 5201
SMALL_PACKET = 64          # UDP payload bytes for the packet-rate test


def _progress(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda msg: None)


# -- iperf3 ----------------------------------------------------------------------------------
# An endpoint is where iperf3 runs: (network namespace, environment, address to reach it at).
Endpoint = tuple[str, dict[str, str], str]


def endpoint(lab: Lab, target: str) -> Endpoint:
    """The namespace of a lab node or container, its node's environment and its address."""
    node, rec = lab.resolve(target)
    return (node.ns if rec is None else rec.netns), node.env(), str(lab.address_of(target))


def _server(where: Endpoint, port: int) -> subprocess.Popen[bytes]:
    """`iperf3 -s -1` at `where` (one test, then it exits); returns once it listens."""
    ns, env, _ = where
    proc = subprocess.Popen(netns.nsexec_argv(ns, ["iperf3", "-s", "-1", "--forceflush", "-p", str(port)]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None  # stdout=PIPE
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.1):
            seen += os.read(proc.stdout.fileno(), 4096)
            if b"Server listening" in seen:
                sel.close()
                return proc
    sel.close()
    proc.kill()
    proc.wait()
    raise LabError(f"iperf3 server did not start in {ns}: {seen.decode(errors='replace').strip()[:200]}")


def _client(src: Endpoint, dst_ip: str, args: list[str], seconds: float, port: int) -> dict[str, Any]:
    ns, env, _ = src
    r = subprocess.run(netns.nsexec_argv(ns, ["iperf3", "-c", dst_ip, "-p", str(port), "-t", f"{seconds:g}",
                                              "-J", *args]),
                       capture_output=True, text=True, env=env, timeout=seconds + 30, stdin=subprocess.DEVNULL)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise LabError(f"iperf3 {ns} -> {dst_ip} failed: {(r.stderr or r.stdout).strip()[:300]}") from None
    if out.get("error"):
        raise LabError(f"iperf3 {ns} -> {dst_ip}: {out['error']}")
    return out


def _run(src: Endpoint, dst: Endpoint, args: list[str], seconds: float, port: int) -> dict[str, Any]:
    server = _server(dst, port)
    try:
        return _client(src, dst[2], args, seconds, port)
    finally:
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def _ends(lab: Lab | None, src: str | Endpoint, dst: str | Endpoint) -> tuple[Endpoint, Endpoint]:
    if isinstance(src, str) or isinstance(dst, str):
        if lab is None:
            raise LabError("a lab target needs the lab")
        return (endpoint(lab, src) if isinstance(src, str) else src,
                endpoint(lab, dst) if isinstance(dst, str) else dst)
    return src, dst


def tcp(lab: Lab | None, src: str | Endpoint, dst: str | Endpoint, seconds: float = 5,
        port: int = IPERF_PORT) -> dict[str, Any]:
    """One TCP stream src -> dst: Gbit/s received, and the sender's retransmissions."""
    out = _run(*_ends(lab, src, dst), [], seconds, port)
    end = out["end"]
    gbps = end["sum_received"]["bits_per_second"] / 1e9
    cpu = end.get("cpu_utilization_percent") or {}
    # CPU-seconds both iperf3 processes spent (the veth/bridge/VXLAN work mostly runs in
    # their system time): Gbit per CPU-second resists a busy machine better than Gbit/s
    cpu_s = (cpu.get("host_total", 0.0) + cpu.get("remote_total", 0.0)) / 100 * seconds
    return {"gbps": gbps, "retransmits": end["sum_sent"].get("retransmits"),
            "gbit_per_cpu_s": gbps * seconds / cpu_s if cpu_s else None}


def small_packets(lab: Lab | None, src: str | Endpoint, dst: str | Endpoint, seconds: float = 3,
                  size: int = SMALL_PACKET, port: int = IPERF_PORT) -> dict[str, Any]:
    """A UDP flood of `size`-byte datagrams (iperf3 -u -b 0): packets/s that arrive."""
    out = _run(*_ends(lab, src, dst), ["-u", "-b", "0", "-l", str(size)], seconds, port)
    s = out["end"]["sum"]
    dur = s.get("seconds") or seconds
    sent = s.get("packets", 0)
    lost = max(s.get("lost_packets", 0), 0)
    return {"pps": (sent - lost) / dur, "sent_pps": sent / dur, "lost_percent": s.get("lost_percent", 0.0)}


# -- throughput --------------------------------------------------------------------------------
def _median_of(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The sample whose `key` is the median (the middle one: an odd count is a real run)."""
    med = statistics.median(x[key] for x in samples)
    return min(samples, key=lambda x: abs(x[key] - med))


def _pair_ratios(got: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]], a: str, b: str,
                 name: str) -> dict[str, Any]:
    """Ratios a/b of each interleaved pair (TCP Gbit/s, UDP packets/s, TCP Gbit per CPU-second),
    and their medians: `tcp_<name>`, `udp_<name>`, `tcp_per_cpu_<name>` (+ `_pairs`)."""
    out: dict[str, Any] = {}
    for metric, idx, key in (("tcp", 0, "gbps"), ("udp", 1, "pps"), ("tcp_per_cpu", 0, "gbit_per_cpu_s")):
        pairs = [x[key] / y[key] for x, y in zip(got[a][idx], got[b][idx]) if x[key] and y[key]]
        out[f"{metric}_{name}_pairs"] = pairs
        if pairs:
            out[f"{metric}_{name}"] = statistics.median(pairs)
    return out


def throughput(backends: Sequence[str] = ("vxlan", "host-gw", "udp"), seconds: float = 5,
               pps_seconds: float | None = None, name: str = "bench", progress: Callable[[str], None] | None = None,
               packet_size: int = SMALL_PACKET, repeat: int = 3, reference: bool = True) -> dict[str, Any]:
    """Underlay, then every backend, in one lab, each against the hand-built reference.

    Every measurement is taken `repeat` times (at least 3 with the reference). For
    vxlan and host-gw each lab run is paired with a run through the reference overlay
    (``labkit/reference.py``: the same path built with plain `ip` commands, no flanneld,
    no docker), interleaved lab, reference, reference, lab, ... so that a change in the
    machine's load hits both; the ratio is the median of the pairs' ratios. The udp
    backend is paired with the reference in vxlan mode, which gives a factor that the
    load cannot skew as much as two separate medians.
    """
    say = _progress(progress)
    pps_seconds = pps_seconds or max(1.0, min(seconds, 3.0))
    repeat = max(3 if reference else 1, repeat)
    backends = list(backends)
    if not backends:
        raise LabError("no backend to measure")
    spec = LabSpec(name=name, nodes=2, containers=1, backend=backends[0]).validate()
    for b in backends[1:]:
        LabSpec(name=name, backend=b).check_kernel().validate()  # refuse bad input before building anything
    rows: list[dict[str, Any]] = []
    lab = Lab(spec, progress=say)
    ref: Any = None
    vx: dict[str, object] = {}
    try:
        lab.up()
        a, b = lab.nodes[0].name, lab.nodes[1].name

        def one(label: str, src: Endpoint, dst: Endpoint) -> tuple[dict[str, Any], dict[str, Any]]:
            say(f"{label}: TCP for {seconds:g}s, UDP {packet_size}-byte datagrams for {pps_seconds:g}s")
            return tcp(None, src, dst, seconds), small_packets(None, src, dst, pps_seconds, packet_size)

        def measure(path: str, src: Endpoint, dst: Endpoint, mtu: int, ref_mode: str | None,
                    with_rules: bool = False) -> None:
            """`repeat` rounds of lab, reference (and reference with the lab's rules), ABBA."""
            kinds = ["lab"]
            ends: dict[str, tuple[Endpoint, Endpoint]] = {"lab": (src, dst)}
            if ref_mode:
                ref.set_mode(ref_mode, vx, ref_mtu.get(ref_mode, mtu))
                for kind, pair in (("ref", 0), ("ref+rules", 1))[:2 if with_rules else 1]:
                    r1, r2 = ref.pair(pair)
                    ends[kind] = (r1.cns, {}, str(r1.container_ip)), (r2.cns, {}, str(r2.container_ip))
                    kinds.append(kind)
            got: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {k: ([], []) for k in kinds}
            for i in range(repeat):
                for kind in (kinds if i % 2 == 0 else kinds[::-1]):   # ABBA: a drift in load hits all
                    label = path if kind == "lab" else f"reference {ref_mode}" + (
                        " with the lab's iptables rules" if kind == "ref+rules" else "")
                    t, u = one(f"{label} run {i + 1}/{repeat}", *ends[kind])
                    got[kind][0].append(t)
                    got[kind][1].append(u)
            ts, us = got["lab"]
            t, u = _median_of(ts, "gbps"), _median_of(us, "pps")
            row: dict[str, Any] = {
                "path": path, "mtu": mtu, "tcp_gbps": t["gbps"], "tcp_retransmits": t["retransmits"],
                "udp_pps": u["pps"], "udp_sent_pps": u["sent_pps"], "udp_lost_percent": u["lost_percent"],
                "tcp_gbps_samples": [x["gbps"] for x in ts], "udp_pps_samples": [x["pps"] for x in us],
                "tcp_gbit_per_cpu_s_samples": [x["gbit_per_cpu_s"] for x in ts]}
            for kind, key in (("ref", "ref"), ("ref+rules", "ref_rules")):
                if kind not in got:
                    continue
                rts, rus = got[kind]
                row[f"{key}_tcp_gbps_samples"] = [x["gbps"] for x in rts]
                row[f"{key}_udp_pps_samples"] = [x["pps"] for x in rus]
                row[f"{key}_tcp_gbit_per_cpu_s_samples"] = [x["gbit_per_cpu_s"] for x in rts]
                row[f"{key}_tcp_gbps"] = statistics.median(x["gbps"] for x in rts)
                row[f"{key}_udp_pps"] = statistics.median(x["pps"] for x in rus)
            if "ref" in got:
                row["reference"] = ref_mode
                row.update(_pair_ratios(got, "lab", "ref", "vs_reference"))
                if "ref+rules" in got:   # how much of the gap the lab's netfilter rules explain
                    row.update(_pair_ratios(got, "ref+rules", "ref", "rules_vs_reference"))
                    row.update(_pair_ratios(got, "lab", "ref+rules", "vs_reference_with_rules"))
            rows.append(row)
            vs = f", {row['tcp_vs_reference']:.2f}x the reference ({ref_mode})" if "ref" in got else ""
            say(f"{path}: {t['gbps']:.2f} Gbit/s, {u['pps'] / 1e3:.0f} kpps{vs}")

        ref_mtu: dict[str, int] = {}
        measure("underlay", endpoint(lab, a), endpoint(lab, b), spec.mtu, None)
        for i, backend in enumerate(backends):
            if i:
                say(f"switching to {backend}")
                lab.switch_backend(backend)
            mtu = int(lab.nodes[0].subnet_env().get("FLANNEL_MTU", 0))
            if reference and ref is None and backend == "vxlan":
                from . import reference as refmod
                vx = refmod.vxlan_settings(lab.nodes[0].ns)
                say("reference overlay: two nodes and containers built with plain ip commands")
                ref = refmod.build(lab.state, spec.underlay_net(), [n.public_ip for n in lab.nodes], spec.mtu,
                                   ipaddress.IPv4Network(spec.network), spec.subnet_len or 24, vx)
                refmod.copy_rules(ref, 1, [(n.ns, n.subnet_env().get("FLANNEL_SUBNET", "").replace(".1/", ".0/"))
                                           for n in lab.nodes])
            if backend in ("vxlan", "host-gw"):
                ref_mtu[backend] = mtu
            mode = None
            if ref is not None:
                mode = backend if backend in ("vxlan", "host-gw") else "vxlan"
            measure(backend, endpoint(lab, f"{a}/c1"), endpoint(lab, f"{b}/c1"), mtu, mode,
                    with_rules=backend in ("vxlan", "host-gw"))
    finally:
        if ref is not None:
            from . import reference as refmod
            refmod.remove(ref)
        lab.down()
    base = rows[0]
    for r in rows:
        r["tcp_ratio"] = r["tcp_gbps"] / base["tcp_gbps"] if base["tcp_gbps"] else None
        r["udp_ratio"] = r["udp_pps"] / base["udp_pps"] if base["udp_pps"] else None
    by = {r["path"]: r for r in rows}
    summary: dict[str, Any] = {}
    for bk in ("vxlan", "host-gw"):
        if bk in by and "tcp_vs_reference" in by[bk]:
            summary[f"{bk}_vs_reference"] = by[bk]["tcp_vs_reference"]
            for key, what in (("tcp_per_cpu_vs_reference", "per_cpu_vs_reference"),
                              ("tcp_rules_vs_reference", "reference_with_lab_rules_vs_reference"),
                              ("tcp_vs_reference_with_rules", "vs_reference_with_lab_rules")):
                if key in by[bk]:
                    summary[f"{bk}_{what}"] = by[bk][key]
    if "udp" in by and "vxlan" in by and by["udp"]["tcp_gbps"]:
        summary["vxlan_over_udp"] = by["vxlan"]["tcp_gbps"] / by["udp"]["tcp_gbps"]
        if by["udp"].get("tcp_vs_reference_pairs"):   # udp paired with the reference in vxlan mode
            summary["reference_vxlan_over_udp"] = statistics.median(
                1 / x for x in by["udp"]["tcp_vs_reference_pairs"])
    return {"seconds": seconds, "pps_seconds": pps_seconds, "packet_size": packet_size, "repeat": repeat,
            "cpus": os.cpu_count(), "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                        time.gmtime()),
            "summary": summary, "reference_script": ref.script if ref is not None else [], "results": rows}


def format_throughput(res: dict[str, Any]) -> str:
    runs = f", median of {res['repeat']} runs" if res.get("repeat", 1) > 1 else ""
    lines = [f"iperf3, {res['seconds']:g}s TCP / {res['pps_seconds']:g}s UDP ({res['packet_size']}-byte "
             f"datagrams){runs}, {res['cpus']} CPUs, kernel {res['kernel']}",
             f"{'path':<10} {'MTU':>5} {'TCP Gbit/s':>11} {'x underlay':>11} {'x ref':>6} {'retrans':>8} "
             f"{'UDP kpps':>9} {'x underlay':>11} {'x ref':>6} {'lost %':>7}"]
    for r in res["results"]:
        tref = f"{r['tcp_vs_reference']:.2f}" if "tcp_vs_reference" in r else "-"
        uref = f"{r['udp_vs_reference']:.2f}" if "udp_vs_reference" in r else "-"
        lines.append(f"{r['path']:<10} {r['mtu']:>5} {r['tcp_gbps']:>11.2f} {r['tcp_ratio']:>11.2f} {tref:>6} "
                     f"{r['tcp_retransmits'] if r['tcp_retransmits'] is not None else '-':>8} "
                     f"{r['udp_pps'] / 1e3:>9.0f} {r['udp_ratio']:>11.2f} {uref:>6} {r['udp_lost_percent']:>7.1f}")
    refs = [r for r in res["results"] if "ref_tcp_gbps" in r]
    for r in refs:
        with_rules = (f"; with the lab's iptables rules {r['ref_rules_tcp_gbps']:.2f} Gbit/s "
                      f"({r.get('tcp_rules_vs_reference', 0):.2f}x, per CPU-s "
                      f"{r.get('tcp_per_cpu_rules_vs_reference', 0):.2f}x)" if "ref_rules_tcp_gbps" in r else "")
        lines.append(f"  reference {r['reference']} beside {r['path']}: {r['ref_tcp_gbps']:.2f} Gbit/s, "
                     f"{r['ref_udp_pps'] / 1e3:.0f} kpps; {r['path']} per CPU-s "
                     f"{r.get('tcp_per_cpu_vs_reference', 0):.2f}x{with_rules}")
    sm = res.get("summary", {})
    if sm:
        lines.append("x ref = median of interleaved lab/reference ratios (reference: plain ip, no flanneld/docker); "
                     + ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}" for k, v in sm.items()))
    return "\n".join(lines)


# -- memory ------------------------------------------------------------------------------------
def lab_processes(name: str) -> list[int]:
    """Every process started for lab `name` (they all carry LABKIT_LAB=<name>)."""
    tag = f"LABKIT_LAB={name}\0".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if tag in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _kind(pid: int) -> str:
    """What a lab process is: the zygote's children carry their service's name in comm."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        return "gone"
    if "labkit.flannel.backends.udp.proxy" in cmdline:
        return "udp-proxy"
    for key, kind in (("flanneld", "flanneld"), ("labkit.flannel.daemon", "flanneld"), ("docker", "docker"),
                      ("labkit.supervisor", "supervisor"),
                      ("labkit.docker.daemon", "docker"), ("zygote", "zygote"), ("etcd", "etcd")):
        if key in comm or key in cmdline:
            return kind
    return comm or "other"


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, with that of the children it has
    waited for (iptables, ip: /proc/PID/stat utime, stime, cutime, cstime)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def lab_memory(name: str) -> dict[str, Any]:
    """Sum of PSS (KiB) of the lab's processes, in total and per kind of process, with the
    CPU-seconds each kind has used (a figure a busy machine hardly changes: the time a
    bring-up *costs*, where wall time also counts the waiting)."""
    by_kind: dict[str, int] = {}
    count: dict[str, int] = {}
    cpu: dict[str, float] = {}
    for pid in lab_processes(name):
        kind = _kind(pid)
        by_kind[kind] = by_kind.get(kind, 0) + pss_kib(pid)
        count[kind] = count.get(kind, 0) + 1
        cpu[kind] = cpu.get(kind, 0.0) + cpu_seconds(pid)
    per = {k: by_kind[k] / count[k] for k in by_kind}
    return {"total_kib": sum(by_kind.values()), "by_kind_kib": by_kind, "processes": count,
            "per_process_kib": per, "cpu_seconds_by_kind": cpu}


# -- scale -------------------------------------------------------------------------------------
class _PatientLab(Lab):
    """A Lab whose waits grow with its size (a 100-node bring-up takes minutes on 2 CPUs)."""

    def _patience(self) -> float:
        return 30 + 3 * len(self.nodes)

    def start_flanneld(self, nodes: list[Node] | None = None, timeout: float = 0, wait: bool = True,
                       docker: bool = False) -> str:
        return super().start_flanneld(nodes, timeout or self._patience(), wait, docker)

    def start_docker(self, nodes: list[Node] | None = None, timeout: float = 0) -> str:
        return super().start_docker(nodes, timeout or self._patience())

    def wait_converged(self, timeout: float = 0) -> str:
        return super().wait_converged(timeout or self._patience())


def sample_pings(lab: Lab, count: int = 10, seed: int = 0) -> tuple[int, int]:
    """Ping from `count` random nodes to another random node's docker0 address (across
    the overlay, VXLAN-encapsulated), all at once (one after another they were most of the
    time between a converged mesh and the end of the check); returns (passed, tried).
    Each ping is started with `ip netns exec` (a network namespace is all it needs), not
    through a node's shell (labkit.nsexec, a Python start and the node's /etc overlay):
    0.04 s for ten instead of 0.23-0.46 s of start-up, which is not the lab's time."""
    import concurrent.futures
    rng = random.Random(seed)
    nodes = lab.nodes
    pairs = []
    for _ in range(min(count, len(nodes) * (len(nodes) - 1))):
        a, b = rng.sample(nodes, 2)
        target = b.subnet_env().get("FLANNEL_SUBNET", "").split("/")[0]
        if target:
            pairs.append((a, target))
    if not pairs:
        return 0, 0
    def ping(pair: tuple[Node, str]) -> int:
        argv = ["ip", "netns", "exec", pair[0].ns, "ping", "-c", "1", "-W", "2", pair[1]]
        return subprocess.run(argv, capture_output=True, timeout=10).returncode

    with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
        codes = list(pool.map(ping, pairs))
    return sum(c == 0 for c in codes), len(pairs)


def mesh(lab: Lab) -> dict[str, Any]:
    """Convergence of a vxlan lab: every node has a route, an ARP and an FDB entry for every
    peer. Returns how many nodes are complete and the fewest of each kind on any node."""
    want = len(lab.nodes) - 1
    per = {n.name: rtdump.vxlan_peers(n.ns, f"flannel.{lab.spec.vni or 1}") for n in lab.nodes}
    fewest = {k: min(p[k] for p in per.values()) for k in ("routes", "arp", "fdb")}
    complete = sum(all(p[k] >= want for k in fewest) for p in per.values())
    return {"peers_each": want, "nodes_complete": complete, "nodes": len(per), "fewest": fewest,
            "converged": complete == len(per)}


def _netns_probe() -> float:
    """Seconds to make a throwaway namespace (anonymous: `unshare -n`, gone when the command
    ends) with a veth pair in it: what the kernel's namespace work costs right now."""
    t = time.monotonic()
    try:
        subprocess.run(["unshare", "-n", "sh", "-c", "ip link add name va type veth peer name vb && ip link del va"],
                       capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):  # no unshare here: nothing to wait for
        return 0.0
    return time.monotonic() - t


def settle(baseline: float, limit: float = 60.0) -> float:
    """After a big lab's `down`, the kernel still dismantles its namespaces in the background
    (cleanup_net), holding the locks the next lab's namespaces and devices need: measured, a
    2-node bring-up took 7.5 s instead of 1 s right after a 250-node lab, and back-to-back
    100-node underlays 2.1-5.5 s. Wait (up to `limit`) until the probe is back to twice its
    `baseline` twice in a row; returns the seconds waited, reported as `settle_seconds`."""
    t0, good = time.monotonic(), 0
    while good < 2 and time.monotonic() - t0 < limit:
        good = good + 1 if _netns_probe() <= 2 * baseline + 0.005 else 0
        time.sleep(0.2)
    return time.monotonic() - t0


def _own_cpu() -> float:
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def scale(sizes: Iterable[int] = (10, 50, 100), name: str = "scale", progress: Callable[[str], None] | None = None,
          pings: int = 10, bringup_runs: int = 3) -> dict[str, Any]:
    """Bring-up of vxlan labs of each size to a converged mesh: time, memory and CPU; then
    the 2-node bring-up to a first cross-node container ping, from the library and the CLI."""
    say = _progress(progress)
    rows = []
    baseline = min(_netns_probe() for _ in range(3))
    for n in sizes:
        settled = settle(baseline)  # the previous lab's namespaces are gone from the kernel too
        lab_name = f"{name}{n}"[:12]
        # flannel's /16 holds 255 /24 subnets: up to 100 nodes the lab's default Network (and its
        # lease races, which are part of the cost); above, a /12, as a cluster that size needs
        network = "10.108.0.0/16" if n <= 100 else "10.96.0.0/12"
        spec = LabSpec(name=lab_name, nodes=n, backend="vxlan", network=network).validate()
        steps: dict[str, float] = {}

        def record(msg: str, _steps: dict[str, float] = steps, _n: int = n) -> None:
            say(f"[{_n} nodes] {msg}")
            head, sep, tail = msg.partition(": ")
            if sep and tail.endswith("s)") and "(" in tail:
                try:
                    _steps[head] = float(tail.rsplit("(", 1)[1][:-2])
                except ValueError:
                    pass

        lab = _PatientLab(spec, progress=record)
        try:
            cpu0 = _own_cpu()
            t0 = time.monotonic()
            lab.up()
            t_up = time.monotonic() - t0
            deadline = time.monotonic() + 30 + n   # routes are there; ARP and FDB come first (flannel's order)
            while not (m := mesh(lab))["converged"] and time.monotonic() < deadline:
                time.sleep(0.1)
            t_conv = time.monotonic() - t0
            passed, tried = sample_pings(lab, pings)
            t_mesh = time.monotonic() - t0
            lab_cpu = _own_cpu() - cpu0
            mem = lab_memory(lab_name)
            rows.append({"nodes": n, "network": network, "up_seconds": t_up, "converged_seconds": t_conv,
                         "converged_and_pinged_seconds": t_mesh, "mesh": m,
                         "pings_passed": passed, "pings_tried": tried, "steps_seconds": steps,
                         "flanneld_restarts": dict(lab.flanneld_restarts), "settle_seconds": settled,
                         "memory_kib": mem["total_kib"], "memory_by_kind_kib": mem["by_kind_kib"],
                         "memory_per_process_kib": mem["per_process_kib"], "processes": mem["processes"],
                         "cpu_seconds_by_kind": {**mem["cpu_seconds_by_kind"], "labkit (this process + its "
                                                 "commands)": lab_cpu}})
            say(f"[{n} nodes] converged mesh ({m['nodes_complete']}/{m['nodes']} nodes with every peer's "
                f"route, ARP and FDB entry) and {passed}/{tried} pings in {t_mesh:.1f}s, "
                f"{mem['total_kib'] / 1024:.0f} MiB PSS")
        finally:
            lab.down()
            clean(lab_name)
    res: dict[str, Any] = {"cpus": os.cpu_count(), "kernel": platform.release(),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": rows}
    if bringup_runs:
        res["bringup_settle_seconds"] = settle(baseline)
        res["bringup"] = bringup(f"{name}up"[:12], bringup_runs, say)
    return res


def _first_ping_lib(name: str) -> float:
    """Library: Lab(nodes=2, containers=1).up(), then ping master/c1 -> node1/c1 until it answers."""
    clean(name)
    t0 = time.monotonic()
    lab = Lab(LabSpec(name=name, nodes=2, containers=1))
    try:
        lab.up()
        while not lab.ping("master/c1", "node1/c1", count=1, timeout=1)[0]:
            if time.monotonic() - t0 > 60:
                raise LabError("no first ping within 60 s")
        return time.monotonic() - t0
    finally:
        lab.down()


def _first_ping_cli(name: str) -> float:
    """CLI: `labkit up --nodes 2 --containers 1`, `labkit status --json` (for node1/c1's
    address), `labkit exec master/c1 -- ping -c 1 -W 1 ADDR` until it answers."""
    clean(name)
    cli = [sys.executable, "-m", "labkit.cli"]
    env = dict(os.environ)
    t0 = time.monotonic()
    try:
        subprocess.run([*cli, "up", "--name", name, "--nodes", "2", "--containers", "1"], check=True,
                       capture_output=True, env=env, timeout=120)
        st = json.loads(subprocess.run([*cli, "status", "--name", name, "--json"], check=True, capture_output=True,
                                       text=True, env=env, timeout=60).stdout)
        node1 = next(nd for nd in st["nodes"] if nd["name"] == "node1")
        addr = node1["containers"][0]["ip"]
        while subprocess.run([*cli, "exec", "--name", name, "master/c1", "--", "ping", "-c", "1", "-W", "1", addr],
                             capture_output=True, env=env, timeout=30).returncode != 0:
            if time.monotonic() - t0 > 60:
                raise LabError("no first ping within 60 s")
        return time.monotonic() - t0
    finally:
        clean(name)


def bringup(name: str = "benchup", runs: int = 3, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """2 nodes to the first cross-node container ping, `runs` interleaved library/CLI pairs."""
    say = _progress(progress)
    lib: list[float] = []
    cli: list[float] = []
    for i in range(runs):
        for how in (("lib", "cli") if i % 2 == 0 else ("cli", "lib")):
            t = _first_ping_lib(name) if how == "lib" else _first_ping_cli(name)
            (lib if how == "lib" else cli).append(t)
            say(f"bring-up {how} run {i + 1}/{runs}: first cross-node container ping after {t:.2f}s")
    return {"lib_seconds": statistics.median(lib), "cli_seconds": statistics.median(cli),
            "lib_samples": lib, "cli_samples": cli, "targets": {"lib": 0.5, "cli": 1.0}}


def format_scale(res: dict[str, Any]) -> str:
    lines = [f"vxlan bring-up to a converged mesh, {res['cpus']} CPUs, kernel {res['kernel']}, {res.get('date', '')}",
             f"{'nodes':>5} {'up s':>6} {'mesh s':>7} {'+pings s':>9} {'mesh':>8} {'pings':>7} {'PSS MiB':>8} "
             f"{'MiB/node':>9}  per process (MiB PSS) | CPU-s by kind"]
    for r in res["results"]:
        per = ", ".join(f"{k} {v / 1024:.1f}" for k, v in sorted(r.get("memory_per_process_kib", {}).items()))
        cpu = ", ".join(f"{k.split(' ')[0]} {v:.1f}" for k, v in sorted(r.get("cpu_seconds_by_kind", {}).items()))
        m = r.get("mesh", {})
        lines.append(f"{r['nodes']:>5} {r['up_seconds']:>6.1f} {r.get('converged_seconds', 0):>7.1f} "
                     f"{r['converged_and_pinged_seconds']:>9.1f} "
                     f"{m.get('nodes_complete', 0):>3}/{m.get('nodes', 0):<4} "
                     f"{r['pings_passed']:>3}/{r['pings_tried']:<3} {r['memory_kib'] / 1024:>8.0f} "
                     f"{r['memory_kib'] / 1024 / r['nodes']:>9.1f}  {per} | {cpu}")
    b = res.get("bringup")
    if b:
        lines.append(f"2 nodes to the first cross-node container ping (median of {len(b['lib_samples'])}, "
                     f"interleaved): library {b['lib_seconds']:.2f}s (target {b['targets']['lib']:g}), "
                     f"CLI up + status --json + exec ping {b['cli_seconds']:.2f}s (target {b['targets']['cli']:g})")
    return "\n".join(lines)
