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

import json
import os
import platform
import random
import selectors
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import netns
from .errors import LabError
from .lab import Lab, clean
from .node import Node
from .spec import LabSpec

IPERF_PORT = 5201
SMALL_PACKET = 64          # UDP payload bytes for the packet-rate test


def _progress(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda msg: None)


# -- iperf3 ----------------------------------------------------------------------------------
def _where(lab: Lab, target: str) -> tuple[str, dict[str, str]]:
    """The network namespace of a node or container, and the node's environment."""
    node, rec = lab.resolve(target)
    return (node.ns if rec is None else rec.netns), node.env()


def _server(lab: Lab, target: str, port: int) -> subprocess.Popen[bytes]:
    """`iperf3 -s -1` on target (one test, then it exits); returns once it listens."""
    ns, env = _where(lab, target)
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
    raise LabError(f"iperf3 server did not start on {target}: {seen.decode(errors='replace').strip()[:200]}")


def _client(lab: Lab, src: str, dst_ip: str, args: list[str], seconds: float, port: int) -> dict[str, Any]:
    r = lab.exec(src, ["iperf3", "-c", dst_ip, "-p", str(port), "-t", f"{seconds:g}", "-J", *args],
                 timeout=seconds + 30, record=False)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise LabError(f"iperf3 {src} -> {dst_ip} failed: {(r.stderr or r.stdout).strip()[:300]}") from None
    if out.get("error"):
        raise LabError(f"iperf3 {src} -> {dst_ip}: {out['error']}")
    return out


def _run(lab: Lab, src: str, dst: str, args: list[str], seconds: float, port: int) -> dict[str, Any]:
    server = _server(lab, dst, port)
    try:
        return _client(lab, src, str(lab.address_of(dst)), args, seconds, port)
    finally:
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def tcp(lab: Lab, src: str, dst: str, seconds: float = 5, port: int = IPERF_PORT) -> dict[str, Any]:
    """One TCP stream src -> dst: Gbit/s received, and the sender's retransmissions."""
    out = _run(lab, src, dst, [], seconds, port)
    end = out["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits")}


def small_packets(lab: Lab, src: str, dst: str, seconds: float = 3, size: int = SMALL_PACKET,
                  port: int = IPERF_PORT) -> dict[str, Any]:
    """A UDP flood of `size`-byte datagrams (iperf3 -u -b 0): packets/s that arrive."""
    out = _run(lab, src, dst, ["-u", "-b", "0", "-l", str(size)], seconds, port)
    s = out["end"]["sum"]
    dur = s.get("seconds") or seconds
    sent = s.get("packets", 0)
    lost = max(s.get("lost_packets", 0), 0)
    return {"pps": (sent - lost) / dur, "sent_pps": sent / dur, "lost_percent": s.get("lost_percent", 0.0)}


# -- throughput --------------------------------------------------------------------------------
def throughput(backends: Sequence[str] = ("vxlan", "host-gw", "udp"), seconds: float = 5,
               pps_seconds: float | None = None, name: str = "bench", progress: Callable[[str], None] | None = None,
               packet_size: int = SMALL_PACKET, repeat: int = 1) -> dict[str, Any]:
    """Underlay, then every backend, in one lab; see the module docstring.

    With `repeat` > 1 each measurement is taken that many times and the median is
    reported (the samples are kept too): on a small shared machine one run is noisy.
    """
    say = _progress(progress)
    pps_seconds = pps_seconds or max(1.0, min(seconds, 3.0))
    backends = list(backends)
    if not backends:
        raise LabError("no backend to measure")
    spec = LabSpec(name=name, nodes=2, containers=1, backend=backends[0]).validate()
    for b in backends[1:]:
        LabSpec(name=name, backend=b).check_kernel().validate()  # refuse bad input before building anything
    rows = []
    lab = Lab(spec, progress=say)
    try:
        lab.up()
        a, b = lab.nodes[0].name, lab.nodes[1].name

        def measure(path: str, src: str, dst: str, mtu: int) -> None:
            ts, us = [], []
            for _ in range(max(1, repeat)):
                say(f"{path}: TCP {src} -> {dst} for {seconds:g}s")
                ts.append(tcp(lab, src, dst, seconds))
                say(f"{path}: UDP {packet_size}-byte datagrams {src} -> {dst} for {pps_seconds:g}s")
                us.append(small_packets(lab, src, dst, pps_seconds, packet_size))
            t = min(ts, key=lambda x: abs(x["gbps"] - statistics.median(y["gbps"] for y in ts)))
            u = min(us, key=lambda x: abs(x["pps"] - statistics.median(y["pps"] for y in us)))
            rows.append({"path": path, "mtu": mtu, "tcp_gbps": t["gbps"], "tcp_retransmits": t["retransmits"],
                         "udp_pps": u["pps"], "udp_sent_pps": u["sent_pps"],
                         "udp_lost_percent": u["lost_percent"],
                         "tcp_gbps_samples": [x["gbps"] for x in ts], "udp_pps_samples": [x["pps"] for x in us]})
            say(f"{path}: {t['gbps']:.2f} Gbit/s, {u['pps'] / 1e3:.0f} kpps")

        measure("underlay", a, b, spec.mtu)
        for i, backend in enumerate(backends):
            if i:
                say(f"switching to {backend}")
                lab.switch_backend(backend)
            mtu = int(lab.nodes[0].subnet_env().get("FLANNEL_MTU", 0))
            measure(backend, f"{a}/c1", f"{b}/c1", mtu)
    finally:
        lab.down()
    base = rows[0]
    for r in rows:
        r["tcp_ratio"] = r["tcp_gbps"] / base["tcp_gbps"] if base["tcp_gbps"] else None
        r["udp_ratio"] = r["udp_pps"] / base["udp_pps"] if base["udp_pps"] else None
    return {"seconds": seconds, "pps_seconds": pps_seconds, "packet_size": packet_size, "repeat": repeat,
            "cpus": os.cpu_count(), "kernel": platform.release(), "results": rows}


def format_throughput(res: dict[str, Any]) -> str:
    runs = f", median of {res['repeat']} runs" if res.get("repeat", 1) > 1 else ""
    lines = [f"iperf3, {res['seconds']:g}s TCP / {res['pps_seconds']:g}s UDP ({res['packet_size']}-byte "
             f"datagrams){runs}, {res['cpus']} CPUs, kernel {res['kernel']}",
             f"{'path':<10} {'MTU':>5} {'TCP Gbit/s':>11} {'x underlay':>11} {'retrans':>8} "
             f"{'UDP kpps':>9} {'x underlay':>11} {'lost %':>7}"]
    for r in res["results"]:
        lines.append(f"{r['path']:<10} {r['mtu']:>5} {r['tcp_gbps']:>11.2f} {r['tcp_ratio']:>11.2f} "
                     f"{r['tcp_retransmits'] if r['tcp_retransmits'] is not None else '-':>8} "
                     f"{r['udp_pps'] / 1e3:>9.0f} {r['udp_ratio']:>11.2f} {r['udp_lost_percent']:>7.1f}")
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


def lab_memory(name: str) -> dict[str, Any]:
    """Sum of PSS (KiB) of the lab's processes, in total and per kind of process."""
    by_kind: dict[str, int] = {}
    count: dict[str, int] = {}
    for pid in lab_processes(name):
        kind = _kind(pid)
        by_kind[kind] = by_kind.get(kind, 0) + pss_kib(pid)
        count[kind] = count.get(kind, 0) + 1
    return {"total_kib": sum(by_kind.values()), "by_kind_kib": by_kind, "processes": count}


# -- scale -------------------------------------------------------------------------------------
class _PatientLab(Lab):
    """A Lab whose waits grow with its size (a 100-node bring-up takes minutes on 2 CPUs)."""

    def _patience(self) -> float:
        return 30 + 3 * len(self.nodes)

    def start_flanneld(self, nodes: list[Node] | None = None, timeout: float = 0, wait: bool = True) -> str:
        return super().start_flanneld(nodes, timeout or self._patience(), wait)

    def start_docker(self, nodes: list[Node] | None = None, timeout: float = 0) -> str:
        return super().start_docker(nodes, timeout or self._patience())

    def wait_converged(self, timeout: float = 0) -> str:
        return super().wait_converged(timeout or self._patience())


def sample_pings(lab: Lab, count: int = 10, seed: int = 0) -> tuple[int, int]:
    """Ping from `count` random nodes to another random node's docker0 address (across
    the overlay, VXLAN-encapsulated); returns (passed, tried)."""
    rng = random.Random(seed)
    nodes = lab.nodes
    tried = passed = 0
    for _ in range(min(count, len(nodes) * (len(nodes) - 1))):
        a, b = rng.sample(nodes, 2)
        target = b.subnet_env().get("FLANNEL_SUBNET", "").split("/")[0]
        if not target:
            continue
        tried += 1
        r = a.sh(["ping", "-c", "1", "-W", "2", target], timeout=10)
        passed += r.returncode == 0
    return passed, tried


def scale(sizes: Iterable[int] = (10, 50, 100), name: str = "scale", progress: Callable[[str], None] | None = None,
          pings: int = 10) -> dict[str, Any]:
    """Bring-up of vxlan labs of each size to a converged mesh: time and memory."""
    say = _progress(progress)
    rows = []
    for n in sizes:
        lab_name = f"{name}{n}"[:12]
        spec = LabSpec(name=lab_name, nodes=n, backend="vxlan").validate()
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
            t0 = time.monotonic()
            lab.up()
            t_up = time.monotonic() - t0
            passed, tried = sample_pings(lab, pings)
            t_mesh = time.monotonic() - t0
            mem = lab_memory(lab_name)
            rows.append({"nodes": n, "up_seconds": t_up, "converged_and_pinged_seconds": t_mesh,
                         "pings_passed": passed, "pings_tried": tried, "steps_seconds": steps,
                         "memory_kib": mem["total_kib"], "memory_by_kind_kib": mem["by_kind_kib"],
                         "processes": mem["processes"]})
            say(f"[{n} nodes] converged mesh in {t_mesh:.1f}s, {passed}/{tried} pings, "
                f"{mem['total_kib'] / 1024:.0f} MiB PSS")
        finally:
            lab.down()
            clean(lab_name)
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "results": rows}


def format_scale(res: dict[str, Any]) -> str:

    lines = [f"vxlan bring-up to a converged mesh, {res['cpus']} CPUs, kernel {res['kernel']}",
             f"{'nodes':>5} {'up s':>7} {'+pings s':>9} {'pings':>7} {'PSS MiB':>8} {'MiB/node':>9}  "
             f"by process (MiB)"]
    for r in res["results"]:
        kinds = ", ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(r["memory_by_kind_kib"].items()))
        lines.append(f"{r['nodes']:>5} {r['up_seconds']:>7.1f} {r['converged_and_pinged_seconds']:>9.1f} "
                     f"{r['pings_passed']:>3}/{r['pings_tried']:<3} {r['memory_kib'] / 1024:>8.0f} "
                     f"{r['memory_kib'] / 1024 / r['nodes']:>9.1f}  {kinds}")
    return "\n".join(lines)
