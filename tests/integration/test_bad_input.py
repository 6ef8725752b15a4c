"""The bad-input corpus: every bad input gives one clear line on stderr, a non-zero exit,
no traceback, and leaves nothing behind (no lab, namespace, state folder, host file).

Most CLI cases fail before anything is built and run in parallel; the cases that need a
running lab share one small lab (module fixture). Bad network configs are written into
that lab's etcd and read back from flanneld's log, in flannel's words.
"""
import os
import secrets
import subprocess
import sys

import pytest

from tests.helpers import ROOT, wait_for

TOKEN = secrets.token_hex(2)
LAB = f"bt{TOKEN}lab"           # the shared lab
NOLAB = f"bt{TOKEN}none"        # never built
_fresh = iter(range(100))


def fresh() -> str:
    """A lab name for an `up` that must build nothing."""
    return f"bt{TOKEN}u{next(_fresh):02d}"


def _netns() -> set:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _state() -> set:
    return set(os.listdir("/run/labkit")) if os.path.isdir("/run/labkit") else set()


@pytest.fixture(scope="module")
def lab():
    from labkit.lab import Lab, clean
    from labkit.spec import LabSpec
    try:
        yield Lab(LabSpec(name=LAB, nodes=2, containers=1)).up()
    finally:
        clean(LAB)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    d = tmp_path_factory.mktemp("badinput")
    (d / "afile").write_text("x")
    return str(d)


# (argv, words the one line must contain, host paths that must not exist afterwards)
def cli_cases(tmp):
    F, L = fresh, LAB
    no_dir = os.path.join(tmp, "no", "dir", "x.pcap")
    return [
        # up: refused before anything is built
        (["up", "--name", F(), "--underlay", "192.168.50.0/abc"], "invalid underlay '192.168.50.0/abc'", []),
        (["up", "--name", F(), "--underlay", "192.168.50.1/24"], "it has host bits set; the network is "
                                                                  "192.168.50.0/24", []),
        (["up", "--name", F(), "--underlay", "fd00::/64"], "the underlay is IPv4", []),
        (["up", "--name", F(), "--underlay", "127.0.0.0/24"], "the lab refuses underlay 127.0.0.0/24", []),
        (["up", "--name", F(), "--underlay", "192.168.50.0/30", "--nodes", "3"],
         "underlay 192.168.50.0/30 has room for 2 nodes, 3 asked", []),
        (["up", "--name", F(), "--network", "127.0.0.0/8"], "the lab refuses Network 127.0.0.0/8 because it "
                                                            "overlaps 127.0.0.0/8 (loopback)", []),
        (["up", "--name", F(), "--network", "224.0.0.0/4"], "because it overlaps 224.0.0.0/4 (multicast)", []),
        (["up", "--name", F(), "--network", "10.108.0.0/33"], "invalid CIDR address: 10.108.0.0/33", []),
        (["up", "--name", F(), "--network", "nonsense"], "invalid CIDR address: nonsense", []),
        (["up", "--name", F(), "--network", "fc00::/48"], "invalid IPv4 CIDR format", []),
        (["up", "--name", F(), "--network", "10.0.0.0/29"],
         "network is too small. Minimum useful network prefix is /28", []),
        (["up", "--name", F(), "--network", "192.168.50.0/23"], "overlaps the underlay", []),
        (["up", "--name", F(), "--subnet-len", "31"], "SubnetLen must be less than /31", []),
        (["up", "--name", F(), "--subnet-len", "8"], "network must be able to accommodate at least four subnets",
         []),
        (["up", "--name", F(), "--nodes", "100000"], "--nodes must be between 1 and 1000, got 100000", []),
        (["up", "--name", F(), "--nodes", "0"], "--nodes must be between 1 and 1000", []),
        (["up", "--name", F(), "--nodes", "x"], "argument --nodes: invalid int value: 'x'", []),
        (["up", "--name", F(), "--backend", "carrier-pigeon"], "unknown backend type: carrier-pigeon", []),
        (["up", "--name", F(), "--backend", "ipsec"], "does not implement yet", []),
        (["up", "--name", F(), "--vni", "99999999999"], "VNI must be between 1 and 9999999", []),
        (["up", "--name", F(), "--vni", "-5"], "VNI must be between 1 and 9999999", []),
        (["up", "--name", F(), "--port", "70000"], "port must be between 0 and 65535", []),
        (["up", "--name", F(), "--mtu", "100"], "underlay MTU must be between 576 and 9000", []),
        (["up", "--name", F(), "--containers", "51"], "--containers must be between 0 and 50", []),
        (["up", "--name", F(), "--segments", "9"], "--segments must be between 1 and 4", []),
        (["up", "--name", F(), "--etcd-prefix", "no-slash"], "invalid etcd prefix", []),
        (["up", "--name", F(), "--etcd-prefix", "/a;rm -rf /tmp"], "invalid etcd prefix", []),
        (["up", "--name", F(), "--flavour", "legacy", "--backend", "host-gw"],
         "needs --flannel-version 0.9.0 or later", []),
        (["up", "--name", F(), "--flavour", "ancient"], "argument --flavour: invalid choice: 'ancient'", []),
        # lab names with path tricks
        (["up", "--name", "../x"], "invalid lab name '../x'", ["/run/x", "/run/labkit/../x"]),
        (["up", "--name", "a/b"], "invalid lab name 'a/b'", ["/run/labkit/a"]),
        (["up", "--name", "x" * 300], "invalid lab name 'xxxxx", []),
        (["up", "--name", ""], "invalid lab name ''", []),
        (["up", "--name", "Lab"], "invalid lab name 'Lab'", []),
        (["up", "--name", "bt$(id)"], "invalid lab name 'bt$(id)'", []),
        (["status", "--name", "../x"], "invalid lab name '../x'", []),
        (["status", "--name", NOLAB], f"no lab named '{NOLAB}' is running", []),
        (["status", "--bogus"], "unrecognized arguments: --bogus", []),
        (["down", "--name", "../x"], "invalid lab name '../x'", []),
        (["down", "--name", "a b"], "invalid lab name 'a b'", []),
        (["add-node", "--name", NOLAB], f"no lab named '{NOLAB}' is running", []),
        (["add-node", "--name", "../../etc"], "invalid lab name '../../etc'", []),
        # exec: node and container names
        (["exec", "--name", L, "node9", "--", "true"], "no node or container called 'node9'", []),
        (["exec", "--name", L, "node1"], "nothing to run", []),
        (["exec", "--name", L, "node1/../../x", "--", "true"], "", []),
        (["exec", "--name", L, "master/c1;id", "--", "true"], "", []),
        (["exec", "--name", L, "master/nope", "--", "true"], "nope", []),
        (["exec", "--name", L, "$(reboot)", "--", "true"], "", []),
        (["exec", "--name", NOLAB, "master", "--", "true"], f"no lab named '{NOLAB}' is running", []),
        # ping
        (["ping", "--name", L, "-c", "100000000", "master", "node1"], "ping count must be between 1 and 1000", []),
        (["ping", "--name", L, "-c", "0", "master", "node1"], "ping count must be between 1 and 1000, got 0", []),
        (["ping", "--name", L, "-c", "-3", "master", "node1"], "ping count must be between 1 and 1000, got -3", []),
        (["ping", "--name", L, "-c", "abc", "master", "node1"], "argument -c/--count: invalid int value: 'abc'", []),
        (["ping", "--name", L, "master", "8.8.8.8"], "8.8.8.8 is not an address of this lab", []),
        (["ping", "--name", L, "master", "node1;id"], "", []),
        (["ping", "--name", L, "node9", "node1"], "no node or container called 'node9'", []),
        # capture: files, counts, filters (BPF injection, shell metacharacters), interfaces
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-w", tmp], "it is a directory", []),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-w", os.path.join(tmp, "afile", "x.pcap")],
         "is a file, not a directory", []),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-w", no_dir], "does not exist (labkit does not "
                                                                              "create it)", [no_dir]),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "--ping-count", "0", "--ping", "master", "node1"],
         "--ping-count must be between 1 and 1000, got 0", []),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-f", f"udp port 8472; rm -rf {tmp}"],
         "invalid capture filter", []),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-f", "$(touch /tmp/pwned-b2)"],
         "invalid capture filter", ["/tmp/pwned-b2"]),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-f", "icmp`id`"], "invalid capture filter", []),
        (["capture", "--name", L, "master", "eth0", "-t", "1", "-f", "tcp["], "invalid capture filter", []),
        (["capture", "--name", L, "master", "eth0", "udp", "-t", "1", "-f", "icmp"],
         "either after IFACE or with -f, not both", []),
        (["capture", "--name", L, "master", "eth0;id", "-t", "1"], "no interface 'eth0;id'", []),
        (["capture", "--name", L, "master", "../../etc", "-t", "1"], "", []),
        (["capture", "--name", L, "master", "eth0", "-c", "0"], "capture count must be between 1 and", []),
        (["capture", "--name", L, "master", "eth0", "-t", "0"], "capture timeout must be between 0 and", []),
        (["capture", "--name", L, "master", "eth0", "-t", "100000"], "capture timeout must be between 0 and", []),
        (["capture", "--name", L, "node9", "eth0", "-t", "1"], "no node or container called 'node9'", []),
        # logs and service
        (["logs", "--name", L, "node1", "nope"], "nope", []),
        (["logs", "--name", L, "node9", "flanneld"], "no node 'node9'", []),
        (["logs", "--name", L, "node1/../x", "flanneld"], "", []),
        (["service", "--name", L, "node1", "flanneld", "explode"], "argument action: invalid choice: 'explode'",
         []),
        (["service", "--name", L, "node1", "nope", "start"], "nope", []),
        (["service", "--name", L, "node9", "flanneld", "start"], "no node 'node9'", []),
        # bench: refused by argparse, before a lab is built
        (["bench", "scale", "--name", F(), "--sizes", "abc"], "give node counts from 1 to 1000", []),
        (["bench", "scale", "--name", F(), "--sizes", "2,,3"], "comma-separated (got '2,,3')", []),
        (["bench", "scale", "--name", F(), "--sizes", "0"], "give node counts from 1 to 1000", []),
        (["bench", "throughput", "--name", F(), "--seconds", "0"], "argument --seconds: give a number from 1 "
                                                                    "to 600 (got '0')", []),
        (["bench", "throughput", "--name", F(), "--seconds", "1e9"], "give a number from 1 to 600", []),
        (["bench", "throughput", "--name", F(), "--repeat", "-1"], "argument --repeat: give a number", []),
    ]


# One helper process imports the CLI once and forks a child per case: each child is a
# `labkit ...` process as far as exit code and file descriptors 1 and 2 go (an uncaught
# exception prints its traceback there, as the interpreter would), without paying
# Python's start-up and imports 80 times.
RUNNER = r"""
import json, os, sys, traceback
from labkit import cli
cases = json.load(sys.stdin)
out = []
def run(argv):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0); os.dup2(devnull, 1); os.dup2(w, 2)
        sys.argv = ["labkit", *argv]
        code = 0
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code or 0)
    os.close(w)
    return pid, r
pending = [run(a) for a in cases[:4]]
todo = cases[4:]
results = []
while pending:
    pid, r = pending.pop(0)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    results.append({"rc": os.waitstatus_to_exitcode(status), "stderr": data.decode("utf-8", "replace")})
    if todo:
        pending.append(run(todo.pop(0)))
json.dump(results, sys.stdout)
"""


def _run_all(argvs):
    import json
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("LABKIT_DEBUG", None)
    r = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(argvs), capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    return [subprocess.CompletedProcess(a, x["rc"], "", x["stderr"]) for a, x in zip(argvs, json.loads(r.stdout))]


def test_the_runner_sees_what_a_process_shows():
    """The forked runner must be able to fail: a crash is a traceback on fd 2, exit 1."""
    r = _run_all([["up", "--name", NOLAB, "--nodes", "x"], ["--help"]])
    assert r[0].returncode == 2 and r[0].stderr.count("\n") == 1
    assert r[1].returncode == 0 and r[1].stderr == ""
    real = subprocess.run([sys.executable, "-m", "labkit.cli", "up", "--name", NOLAB, "--nodes", "x"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (real.returncode, real.stderr) == (r[0].returncode, r[0].stderr)


def test_cli_bad_input_corpus(lab, tmp):
    cases = cli_cases(tmp)
    assert len(cases) >= 60
    lab_ns = {n for n in _netns() if n.startswith(LAB + "-")}
    before_ns, before_state = _netns(), _state()
    try:
        results = _run_all([c[0] for c in cases])
        _judge_corpus(cases, results, lab_ns, before_ns, before_state, tmp)
    finally:
        # a case that wrongly built a lab must not outlive the test (clean is idempotent)
        from labkit.lab import clean
        for argv, _, _ in cases:
            name = argv[argv.index("--name") + 1] if "--name" in argv else ""
            if name.startswith(f"bt{TOKEN}u"):
                clean(name)


def _judge_corpus(cases, results, lab_ns, before_ns, before_state, tmp):
    problems = []
    for (argv, words, paths), r in zip(cases, results):
        lines = r.stderr.splitlines()
        why = []
        if r.returncode == 0:
            why.append("exit 0")
        if len(lines) != 1:
            why.append(f"{len(lines)} lines on stderr")
        if "Traceback" in r.stderr or "internal error" in r.stderr:
            why.append("a traceback / internal error")
        if lines and not lines[0].startswith("labkit"):
            why.append("not labkit's message")
        if words not in r.stderr:
            why.append(f"{words!r} not said")
        why += [f"{p} exists" for p in paths if os.path.exists(p)]
        if why:
            problems.append(f"labkit {' '.join(argv)[:120]}: {', '.join(why)}\n    stderr: {r.stderr[:300]!r}")
    assert not problems, "\n".join(problems)
    # nothing left behind: no namespace or state folder of any lab these cases named,
    # and the shared lab exactly as it was
    after_ns, after_state = _netns(), _state()
    ours = lambda n: n.startswith(f"bt{TOKEN}") and not n.startswith(LAB)  # noqa: E731
    assert not {n for n in after_ns - before_ns if ours(n) or "/" in n or n.startswith("..")}
    assert not {n for n in after_state - before_state if ours(n)}
    assert {n for n in after_ns if n.startswith(LAB + "-")} == lab_ns
    assert sorted(os.listdir(tmp)) == ["afile"]


# (config written with etcdctl put, words in flanneld's log, does flanneld exit?)
CONFIGS = [
    ('{"Network":', "Couldn't fetch network config: unexpected end of JSON input", False),
    ('{"Network":"10.108.0.0/16",}', "Couldn't fetch network config: invalid character '}' looking for "
                                     "beginning of object key string", False),
    ('{}', "Couldn't fetch network config: please define a correct Network parameter in the flannel config",
     False),
    ('{"Network":"10.108.0.0/16","SubnetLen":"24"}', "Couldn't fetch network config: json: cannot unmarshal "
                                                      "string into Go struct field Config.SubnetLen of type uint",
     False),
    ('{"Network":"10.108.0.0/16","SubnetLen":-1}', "Couldn't fetch network config: json: cannot unmarshal "
                                                    "number -1 into Go struct field Config.SubnetLen of type uint",
     False),
    ('{"Network":"10.108.0.0/33"}', "Couldn't fetch network config: invalid CIDR address: 10.108.0.0/33", False),
    ('{"Network":"fc00::/48"}', "Couldn't fetch network config: invalid IPv4 CIDR format", False),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","VNI":99999999999}}',
     "Error registering network: failed to create vxlan device: numerical result out of range", True),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","VNI":-5}}',
     "Error registering network: failed to create vxlan device: numerical result out of range", True),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}',
     "Error registering network: failed to create vxlan device: numerical result out of range", True),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","VNI":"7"}}',
     "Error registering network: error decoding VXLAN backend config: json: cannot unmarshal string into Go "
     "struct field VXLANConfig.vni of type int", True),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"vxlan","Port":70000}}',
     "Error registering network: error decoding VXLAN backend config: Port 70000 is not a UDP port (0-65535); "
     "flannel has no check and would use UDP port 4464, labkit's flanneld refuses it", True),
    ('{"EnableIPv6": true, "EnableIPv4": false, "IPv6Network": "fc00::/48", "Backend": {"Type": "vxlan"}}',
     "Error registering network: labkit's flanneld runs IPv4 networks only, and this config has EnableIPv4 "
     "false", True),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"udp","Port":"x"}}',
     "Error registering network: error decoding UDP backend config: json: cannot unmarshal string into Go "
     "struct field .Port of type int", True),
    ('{"Network":"10.108.0.0/16","Backend":{"Type":"carrier-pigeon"}}',
     "Error fetching backend: unknown backend type: carrier-pigeon", True),
]


def test_bad_configs_in_etcd_give_flannels_messages(lab):
    svc = lab.service("node1", "flanneld")
    try:
        for cfg, words, exits in CONFIGS:
            svc.stop()
            lab.write_config(cfg)
            start = len(svc.log())
            svc.start()
            wait_for(lambda words=words, start=start: words in svc.log()[start:], timeout=15,
                     what=f"{words!r} for {cfg}")
            if exits:
                wait_for(lambda: not svc.is_active(), timeout=15, what=f"flanneld to stop for {cfg}")
            new = svc.log()[start:]
            for python in ("Traceback", "format requires", "NoneType", "object has no attribute"):
                assert python not in new, (cfg, new)
        # a Network with host bits is flannel's Network without them (net.ParseCIDR)
        svc.stop()
        lab.write_config('{"Network":"10.108.0.1/16","Backend":{"Type":"vxlan"}}')
        svc.start()
        env = lab.node("node1").subnet_env()
        assert env["FLANNEL_NETWORK"] == "10.108.0.0/16"
    finally:
        svc.stop()
        lab.write_config(lab.spec.network_config_json())
