"""Notebook 00: is this machine ready for a lab?

It asks the lab's own questions rather than keeping its own copy of them: the
programs a lab needs are ``lab.REQUIRED_BINARIES`` (what ``preflight`` refuses to
build without), and the kernel features are tried with the probe the lab uses before
it builds (``flannel/backends/kernel.py``: a throwaway device in a scratch namespace).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys

from .. import sandbox
from ..flannel.backends.kernel import link_kind_available, tun_reason
from ..lab import REQUIRED_BINARIES
from .tables import BAD, OK, Table

# Programs the notebooks use beyond the ones a lab cannot be built without.
OPTIONAL_BINARIES = {"bridge": "iproute2", "tcpdump": "tcpdump", "iperf3": "iperf3", "ifconfig": "net-tools",
                     "iptables": "iptables", "nft": "nftables"}
ORDER = ["ip", "bridge", "etcd", "etcdctl", "ping", "tcpdump", "iperf3", "ifconfig", "iptables", "nft"]
VERSION_ARGV = {"ip": ["ip", "-V"], "etcd": ["etcd", "--version"], "etcdctl": ["etcdctl", "version"],
                "ping": ["ping", "-V"], "tcpdump": ["tcpdump", "--version"], "iperf3": ["iperf3", "--version"],
                "iptables": ["iptables", "--version"], "nft": ["nft", "--version"]}
PACKAGES = ["pyroute2", "etcd3", "scapy", "ipywidgets", "jupyterlab", "nbval"]
# (what, link kind and its required arguments, kernel option)
LINK_PROBES = [
    ("veth pairs", ("veth",), "CONFIG_VETH"),
    ("bridges", ("bridge",), "CONFIG_BRIDGE"),
    ("VXLAN devices", ("vxlan", "id", "1", "dstport", "8472", "nolearning"), "CONFIG_VXLAN"),
]


def _version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def binaries() -> list[tuple[str, str, bool]]:
    """(program, Debian package, required by a lab) in the order notebook 00 shows them."""
    both = {**OPTIONAL_BINARIES, **REQUIRED_BINARIES}
    names = [b for b in ORDER if b in both] + [b for b in both if b not in ORDER]
    return [(b, both[b], b in REQUIRED_BINARIES) for b in names]


def kernel_rows() -> list[tuple[str, bool, str, str]]:
    rows = []
    answers = [(what, link_kind_available(*probe), need) for what, probe, need in LINK_PROBES]
    if all(a is None for _, a, _ in answers):
        return [("network namespaces", False, "a scratch namespace could not be made",
                 "a kernel with CONFIG_NET_NS, and root")]
    rows.append(("network namespaces", True, "ip netns add works", ""))
    for what, ok, need in answers:
        rows.append((what, bool(ok), "created one in a scratch namespace" if ok else "the kernel refused it",
                     "" if ok else f"a kernel with {need}"))
    ok = os.path.exists("/dev/net/tun")
    why = tun_reason() if ok else ""  # there, but closed to a rootless lab's user
    rows.append(("TUN devices", ok and not why, "/dev/net/tun is there" if ok and not why else
                 why.split(":")[0] if why else "no /dev/net/tun",
                 "" if ok and not why else "udp is greyed out; " + why.rsplit("; ", 1)[-1] if why else
                 "a kernel with CONFIG_TUN, /dev/net/tun"))
    ok = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
    rows.append(("br_netfilter", ok, "loaded" if ok else "not loaded",
                 "" if ok else "modprobe br_netfilter (flannel >= 0.26 refuses to start without it)"))
    return rows


def setup_check() -> Table:
    """Root, kernel features, programs and Python packages, with how to fix what is missing."""
    rows = []
    root = os.geteuid() == 0
    rows.append(("root", root, ("uid 0 in your sandbox" if sandbox.inside() else "uid 0") if root
                 else f"uid {os.geteuid()}",
                 "" if root else "run JupyterLab with sudo ./run lab, or as yourself in your sandbox: "
                                 "labkit sandbox run --publish 8888 -- jupyter lab --port 8888 "
                                 "(README: Rootless labs)"))
    rows.append(("Python", sys.version_info >= (3, 11), platform.python_version(),
                 "" if sys.version_info >= (3, 11) else "Python 3.11 or later"))
    rows.append(("Linux kernel", True, platform.release(), ""))
    if root:
        rows.extend(kernel_rows())
    for prog, pkg, required in binaries():
        path = shutil.which(prog)
        fix = f"apt-get install {pkg} (or ./run setup)" + ("; a lab cannot be built without it" if required else "")
        rows.append((prog, bool(path), (_version(VERSION_ARGV[prog]) if prog in VERSION_ARGV else path)
                     if path else "missing", "" if path else fix))
    for pkg in PACKAGES:
        try:
            rows.append((f"python: {pkg}", True, md.version(pkg), ""))
        except md.PackageNotFoundError:
            rows.append((f"python: {pkg}", False, "missing", "./run setup (installs the pinned versions)"))
    try:
        # imported here: the import itself is part of what this row checks (scapy + libpcap)
        from scapy.arch.common import compile_filter
        compile_filter("udp port 8472", linktype=1)
        rows.append(("libpcap (capture filters)", True, "compiles BPF filters", ""))
    except Exception as e:
        rows.append(("libpcap (capture filters)", False, str(e), "apt-get install libpcap0.8"))
    bad = [r for r in rows if not r[1]]
    title = (f"all {len(rows)} checks passed" if not bad
             else f"{len(bad)} of {len(rows)} checks failed: see the 'fix' column")
    return Table(["check", "ok", "detail", "fix"],
                 [(a, OK if ok else BAD, d, f) for a, ok, d, f in rows], title=title)
