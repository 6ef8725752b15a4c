"""The root namespace is never changed; bad input changes nothing; cleanup always works."""
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from labkit.state import fs_type, mounts_under
from tests.helpers import ROOT, labkit, unique_name

SYSCTLS = ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding",
           "net/ipv4/ping_group_range", "net/bridge/bridge-nf-call-iptables",
           "net/bridge/bridge-nf-call-ip6tables", "net/bridge/bridge-nf-call-arptables",
           "net/ipv4/conf/default/rp_filter"]


def root_snapshot() -> dict:
    """Everything about the root network namespace a lab could conceivably change."""
    def run(*argv):
        if not shutil.which(argv[0]):
            return f"{argv[0]} missing"
        r = subprocess.run(list(argv), capture_output=True, text=True)
        return r.stdout + r.stderr
    snap = {
        "link": run("ip", "-d", "link"), "addr": run("ip", "addr"), "route": run("ip", "route"),
        "route6": run("ip", "-6", "route"), "rule": run("ip", "rule"),
        "neigh_bridge": run("bridge", "fdb", "show"),
        # comments carry timestamps and counters move with host traffic: drop both
        "iptables": re.sub(r"\[\d+:\d+\]", "", "\n".join(
            line for line in run("iptables-save").splitlines() if not line.startswith("#"))),
        "nft": run("nft", "list", "ruleset"),
        # sockets listening in the root namespace that belong to a lab process; other
        # programs on the machine may come and go while the test runs
        "listen": "\n".join(line for line in run("ss", "-H", "-ltnup").splitlines()
                            if any(w in line for w in ("etcd", "python", "labkit"))
                            and _is_lab_process(line)),
    }
    for s in SYSCTLS:
        try:
            snap[s] = open(f"/proc/sys/{s}").read()
        except OSError:
            snap[s] = "absent"
    return snap


def _is_lab_process(ss_line: str) -> bool:
    for pid in re.findall(r"pid=(\d+)", ss_line):
        try:
            if b"LABKIT_LAB=" in open(f"/proc/{pid}/environ", "rb").read():
                return True
        except OSError:
            pass
    return False


def leftovers(name: str) -> list[str]:
    out = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(name + "-")] \
        if os.path.isdir("/run/netns") else []
    if os.path.exists(f"/run/labkit/{name}"):
        out.append("state dir")
    with open("/proc/mounts") as f:
        out += [f"mount {line.split()[1]}" for line in f if f"/{name}-" in line or f"/labkit/{name}" in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if f"LABKIT_LAB={name}\0".encode() in env:
            out.append(f"process {pid}")
    return out


def test_up_and_down_leave_the_root_namespace_unchanged():
    name = unique_name("safe")
    before = root_snapshot()
    try:
        labkit("up", "--name", name, "--nodes", "3", "--containers", "1", check=True)
        during = root_snapshot()
        # the lab's folder is on a tmpfs (its own where /run is a disk: LabState.mount_tmpfs),
        # so it goes with a reboot as the namespaces do; `down` unmounts it (leftovers, below)
        assert fs_type(f"/run/labkit/{name}") == "tmpfs"
        if fs_type("/run/labkit") != "tmpfs":
            assert f"/run/labkit/{name}" in mounts_under(f"/run/labkit/{name}")
        if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
            # the switch does not filter (labkit/underlay.py: switch_no_netfilter); nodes keep the host's default
            def nf(ns):
                key = "/proc/sys/net/bridge/bridge-nf-call-iptables"
                return subprocess.run(["ip", "netns", "exec", ns, "cat", key],
                                      capture_output=True, text=True, check=True).stdout.strip()
            assert nf(f"{name}-switch") == "0"
            assert nf(f"{name}-node1") == "1"
        labkit("down", "--name", name, check=True)
    finally:
        labkit("clean", "--name", name)
    after = root_snapshot()
    import difflib
    for key in before:
        for label, snap in (("while the lab ran", during), ("after down", after)):
            diff = "\n".join(difflib.unified_diff(before[key].splitlines(), snap[key].splitlines(), lineterm=""))
            assert snap[key] == before[key], f"root namespace {key} changed {label}:\n{diff}"
    assert leftovers(name) == []


def test_clean_after_a_crash_is_complete_and_idempotent():
    """Kill `labkit up` half-way (SIGKILL: no cleanup code runs), then `labkit clean`."""
    name = unique_name("crash")
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "up", "--name", name, "--nodes", "4",
                             "--containers", "1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until flanneld processes are being started
        if "flanneld ..." in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert leftovers(name), "the crash should have left something for clean to do"
    r = labkit("clean", "--name", name, check=True)
    assert "removed" in r.stdout
    assert leftovers(name) == []
    r = labkit("clean", "--name", name, check=True)
    assert "nothing to remove" in r.stdout


def test_clean_touches_nothing_without_the_lab_prefix(make_lab):
    other = make_lab(nodes=2)
    bystander = "labkitbystander"
    subprocess.run(["ip", "netns", "add", bystander], check=True)
    try:
        name = unique_name("near")
        # a lab whose name is a prefix of another lab's must not touch it
        labkit("clean", "--name", other.spec.name[:-1], check=True)
        labkit("clean", "--name", name, check=True)
        assert os.path.exists(f"/run/netns/{bystander}")
        assert all(other.connectivity().values())
    finally:
        subprocess.run(["ip", "netns", "del", bystander])


def test_two_labs_side_by_side(make_lab):
    a = make_lab(nodes=2, containers=1)
    name_b = unique_name("side")
    try:
        labkit("up", "--name", name_b, "--nodes", "2", "--containers", "1", "--network", "10.20.0.0/16",
               check=True)
        from labkit.lab import Lab
        b = Lab.attach(name_b)
        assert all(a.connectivity().values()) and all(b.connectivity().values())
        assert all(n.subnet.startswith("10.20.") for n in b.status().nodes)
        labkit("down", "--name", name_b, check=True)
        assert all(a.connectivity().values())
    finally:
        labkit("clean", "--name", name_b)


BAD_INPUT = [
    (["--network", "10.108.0.0/33"], "invalid network config: "),
    (["--network", "10.108.0.0/29"], "network is too small. Minimum useful network prefix is /28"),
    (["--subnet-len", "31"], "SubnetLen must be less than /31"),
    (["--subnet-len", "17"], "network must be able to accommodate at least four subnets"),
    (["--backend", "carrier-pigeon"], "unknown backend type: carrier-pigeon"),
    (["--backend", "ipsec"], "labkit does not implement yet"),
    (["--nodes", "0"], "--nodes must be between 1 and"),
    (["--vni", "0"], "VNI must be between 1 and"),
    (["--underlay", "192.168.50.0/30", "--nodes", "3"], "has room for 2 nodes"),
    (["--network", "192.168.0.0/16"], "overlaps the underlay"),
    (["--nodes", "4", "--network", "10.5.0.0/22"], "out of subnets"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_gives_one_clear_error_and_changes_nothing(args, message):
    name = unique_name("bad")
    r = labkit("up", "--name", name, *args)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr
    assert r.stderr.count("labkit: error:") == 1
    assert leftovers(name) == []  # no namespace, mount, process or state of this lab


@pytest.mark.parametrize("name", ["bad-name", "../etc", "UPPER", "a" * 13, "x;rm"])
def test_invalid_lab_names_are_refused(name):
    r = labkit("up", "--name", name)
    assert r.returncode == 1 and "invalid lab name" in r.stderr


def test_not_root_outside_a_sandbox_is_refused_before_anything_happens(tmp_path):
    """The labkit command takes an ordinary user into their own sandbox (README: Rootless labs,
    tests/integration/test_rootless.py); a program that is not in it, such as a Jupyter kernel
    started outside, is refused with what to do, and nothing is made."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop root")
    name = unique_name("user")
    env = dict(os.environ, HOME=str(tmp_path))
    code = ("from labkit import Lab, LabSpec, LabError\n"
            f"try:\n    Lab(LabSpec(name={name!r})).up()\nexcept LabError as e:\n    print(e)")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                        "--bounding-set=-all", sys.executable, "-c", code],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert "labkit must run as root or in your sandbox" in r.stdout and "labkit sandbox run" in r.stdout
    assert leftovers(name) == []


def test_missing_etcd_binary_is_named(tmp_path):
    for tool in ("ip", "ping", "etcdctl"):  # everything but etcd
        os.symlink(shutil.which(tool), tmp_path / tool)
    name = unique_name("noetcd")
    r = labkit("up", "--name", name, env=dict(os.environ, PATH=str(tmp_path)))
    assert r.returncode == 1
    assert "missing programs: etcd (Debian package etcd-server)" in r.stderr
    assert leftovers(name) == []


def test_existing_lab_is_not_touched_by_a_second_up(make_lab):
    lab = make_lab(nodes=2)
    r = labkit("up", "--name", lab.spec.name)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert all(lab.connectivity().values())
