"""`labkit`: argument parsing and printing only; every behaviour lives in Lab and friends."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import bench_args, capture, sandbox, sandbox_cli, tally, transcript
from .classroom import cli as classroom_cli
from .errors import BROKEN_PIPE_EXIT, LabError, internal_error, quiet_stdout
from .lab import Lab, clean
from .services import systemd_failure
from .spec import MAX_NODES, LabSpec, blog_spec, parse_node_values
from .state import list_labs
from .status import NodeStatus
from .tally import TerminalBar

DEFAULT_NAME = os.environ.get("LABKIT_NAME", "lab")

EPILOG = """examples:
  labkit up --nodes 3 --network 10.108.0.0/16 --backend vxlan --containers 1
  labkit status                     # the cluster as etcd and the kernel see it
  labkit status --svg lab.svg       # ... and its picture (open lab.svg in a browser)
  labkit exec node1 -- ip -d link show flannel.1
  labkit exec node1 -- cat /run/flannel/subnet.env
  labkit ping master/c1 node1/c1    # container to container, across nodes
  labkit check                      # all-pairs connectivity matrix
  labkit logs node1 flanneld
  labkit capture master eth0 udp port 8472 --ping master/c1 node1/c1 --layers
  labkit down                       # or: labkit clean (after a crash)
  labkit up --segments 2 --router-mtu 1400 --router-drop-icmp   # a PMTU black hole on the router
  labkit up --nics 2                # the Vagrant trap: every node's eth0 is 10.0.2.15 (fix: --iface eth1)
  labkit up --nat node1 --nat-public-ip   # node1 behind a NAT; flanneld -public-ip=<the NAT's address>
  labkit up --outside --ip-masq --containers 1   # pods reach 203.0.113.1 (inside the lab), masqueraded
  labkit link node1 down            # unplug node1's cable (up: plug it back; del/add: re-create eth0)
  labkit up --blog --name blog      # the blog's cluster: legacy flannel, waiting for `etcdctl set`
  labkit shell master --name blog   # a root shell on the master (systemctl, docker, ifconfig, etcdctl)
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


class _IntermixedParser(_Parser):
    """A command whose trailing words may follow its options, as tcpdump's filter does
    (`labkit capture master eth0 -c 5 udp port 8472`); plain argparse reads the filter as
    unrecognized arguments once an option came between IFACE and it."""

    _mixing = False

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if self._mixing:   # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def _progress(msg: str) -> None:
    clear = "\r\x1b[K" if sys.stdout.isatty() else ""   # over a progress bar (tally.TerminalBar)
    print(f"{clear}[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


STATUS_ROWS = 20   # `labkit status` shows at most this many nodes unless --all


def _lease_fields(ttl: int | None) -> dict:
    """--lease-ttl: the TTL, and a renew margin that fits it (flannel's 1 h of 24 h, at most,
    and at least a quarter of a short TTL, so that a renewal comes in time on a busy machine)."""
    if ttl is None:
        return {}
    return {"lease_ttl": ttl, "renew_margin": min(3600, max(1, ttl // 4))}


def cmd_up(a: argparse.Namespace) -> int:
    if a.blog:
        spec = blog_spec(a.name, flavour=a.flavour or ("modern" if a.flannel_version else "legacy"), seed=a.seed,
                         docker_version=a.docker_version, flannel_version=a.flannel_version,
                         flannel_options=a.flannel_options or "", **_lease_fields(a.lease_ttl))
    else:
        spec = LabSpec(name=a.name, nodes=a.nodes, network=a.network, subnet_len=a.subnet_len,
                       backend=a.backend, vni=a.vni, port=a.port, direct_routing=a.direct_routing,
                       containers=a.containers, underlay=a.underlay, mtu=a.mtu, prefix=a.etcd_prefix,
                       seed=a.seed, flavour=a.flavour or "modern", write_config=not a.no_config,
                       segments=a.segments, node_mtu=parse_node_values(a.node_mtu, "--node-mtu"),
                       router_mtu=a.router_mtu, router_drop_icmp=a.router_drop_icmp, nics=a.nics,
                       iface=a.iface, nat=a.nat or [], nat_public_ip=a.nat_public_ip, outside=a.outside,
                       ip_masq=a.ip_masq, flannel_options=a.flannel_options or "",
                       docker_version=a.docker_version, flannel_version=a.flannel_version,
                       **_lease_fields(a.lease_ttl))
    Lab(spec, progress=_progress, built_by="labkit up", ticker=TerminalBar()).up()
    if not spec.write_config:
        print(f"\nflanneld is waiting for {spec.prefix}/config: write it on the master, e.g.\n"
              f"  labkit shell master --name {a.name}\n"
              + ("  etcdctl set " if spec.etcd_v2 else "  etcdctl put ")
              + f"{spec.prefix}/config '{{\"Network\":\"10.108.0.0/16\",\"Backend\": {{\"Type\": \"vxlan\"}}}}'")
    print(f"\nnext: labkit status --name {a.name}    |    labkit check --name {a.name}")
    return 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_status(a: argparse.Namespace) -> int:
    if a.svg is not None:   # drawsvg is imported only for a picture
        from .pictures import topology
        from .pictures.svgfile import check_svg_path
        check_svg_path(a.svg)   # a bad file name: one line, before anything is read or written
    st = Lab.attach(a.name).status()
    said = ""
    if a.svg is not None:
        pic = topology(st)
        said = (f"picture: {pic.save(a.svg)} (topology of lab {st.name}, {pic.drawn} of {len(st.nodes)} "
                "nodes drawn in full)")
    if a.json:
        print(st.to_json(kernel=False))
        if said:
            print(said, file=sys.stderr)
        return 0 if st.etcd_ok else 2
    print(f"lab {st.name}: Network {st.network}, backend {st.backend}, etcd prefix {st.prefix}")
    if not st.etcd_ok:
        print(f"WARNING: {st.etcd_error}: leases and the config in etcd are unknown, IN RANGE cannot "
              f"be judged (is etcd running? labkit service master etcd status --name {st.name})")
    for n in st.nodes:
        if n.namespace_gone:
            print(f"WARNING: network namespace {n.namespace} of node {n.name} no longer exists (deleted "
                  f"under the lab?): its kernel cannot be read; `labkit down --name {st.name}` removes the lab")
    rows = [["NODE", "NAMESPACE", "PUBLIC IP", "SUBNET", "VTEP MAC", "DOCKER0", "IN RANGE",
             "FLANNELD", "DOCKER", "CONTAINERS"]]
    shown, note = _status_nodes(st.nodes, a.all)
    for n in shown:
        rows.append([n.name, n.namespace + (" (gone)" if n.namespace_gone else ""), n.public_ip,
                     n.subnet or "-", n.vtep_mac or "-",
                     n.docker0 or "-", {True: "yes", False: "NO", None: "?"}[n.in_range],
                     n.services["flanneld"], n.services["docker"],
                     " ".join(f"{c.name}={c.ip or 'stopped'}" for c in n.containers) or "-"])
    print(_table(rows))
    if note:
        print(note)
    if said:
        print(said)
    return 0 if st.etcd_ok else 2


def _healthy(n: NodeStatus) -> bool:
    return (not n.namespace_gone and n.in_range is True and n.services.get("flanneld") == "active"
            and n.services.get("docker") == "active"
            and all(c.running for c in n.containers))


def _status_nodes(nodes: list[NodeStatus], everything: bool) -> tuple[list[NodeStatus], str]:
    """The nodes `status` shows, and a summary of the rest: every node of a small lab (or with
    --all); of a big one the nodes with a problem first, then the first healthy ones, at most
    STATUS_ROWS, so that it fits a screen."""
    if everything or len(nodes) <= STATUS_ROWS:
        return nodes, ""
    sick = [n for n in nodes if not _healthy(n)]
    shown = sick[:STATUS_ROWS]
    shown += [n for n in nodes if _healthy(n)][:max(0, STATUS_ROWS - len(shown))]
    order = {n.name: i for i, n in enumerate(nodes)}
    shown.sort(key=lambda n: order[n.name])
    healthy = len(nodes) - len(sick)
    subnets = tally.listing({n.name: n.subnet or "-" for n in nodes}, "leases")
    boxes = sum(len(n.containers) for n in nodes)
    running = sum(c.running for n in nodes for c in n.containers)
    return shown, (f"{len(shown)} of {len(nodes)} nodes shown ({len(sick)} with a problem first); "
                   f"{healthy} healthy (flanneld and docker active, docker0 in range, containers running); "
                   f"{subnets}; containers {running}/{boxes} running. Every node: labkit status --all")


def cmd_exec(a: argparse.Namespace) -> int:
    if not a.command:
        raise LabError("nothing to run: labkit exec NODE -- COMMAND [ARGS...]")
    lab = Lab.attach(a.name)
    argv, env = lab.command(a.target, a.command)
    if a.command[0] in ("bash", "sh") and "-c" not in a.command:  # a shell of its own: interactive
        transcript.record_interactive(lab.state, a.target, "labkit exec")
    else:
        transcript.record(lab.state, {"on": a.target, "argv": list(a.command)}, "labkit exec")
    return subprocess.call(argv, env=env)  # stdin, stdout and stderr stay the user's


def cmd_shell(a: argparse.Namespace) -> int:
    lab = Lab.attach(a.name)
    argv, env = lab.command(a.target, ["bash", "--norc", "-i"])
    transcript.record_interactive(lab.state, a.target)  # noted; what is typed in it is not seen
    env["PS1"] = "[root@\\h \\W]# "
    os.chdir(os.path.expanduser("~"))  # a login lands in root's home, as on the blog's hosts
    os.execvpe(argv[0], argv, env)


def cmd_ping(a: argparse.Namespace) -> int:
    ok, out = Lab.attach(a.name).ping(a.src, a.dst, count=a.count)
    print(out.rstrip())
    return 0 if ok else 1


def cmd_check(a: argparse.Namespace) -> int:
    lab = Lab.attach(a.name)
    eps = lab.endpoints()
    res = lab.connectivity(eps)
    rows = [["FROM \\ TO"] + eps]
    for s in eps:
        rows.append([s] + ["-" if s == d else "SAME" if res.same_address(s, d) else ("ok" if res[(s, d)] else "FAIL")
                           for d in eps])
    print(_table(rows))
    bad = sum(1 for v in res.values() if not v)
    print(f"\n{len(res) - bad} of {len(res)} pairs reachable")
    for addr, group in res.duplicates.items():
        print(f"SAME address {addr}: {', '.join(group)} (not pinged: a ping would answer locally)")
    return 0 if bad == 0 else 1


def cmd_link(a: argparse.Namespace) -> int:
    print(Lab.attach(a.name).link(a.node, a.action, via="labkit link"))
    return 0


def cmd_logs(a: argparse.Namespace) -> int:
    sys.stdout.write(Lab.attach(a.name).node(a.node).service(a.service).log())
    return 0


def cmd_service(a: argparse.Namespace) -> int:
    lab = Lab.attach(a.name)
    svc = lab.node(a.node).service(a.service)
    if a.action != "status":
        transcript.record(lab.state, {"action": a.action, "service": a.service, "on": a.node}, "labkit service")
    if a.action == "status":
        print(f"{a.service}@{a.node}: {svc.status()} (pid {svc.pid() or '-'})")
        return 0 if svc.is_active() else 3
    if a.action in ("start", "restart"):  # as `systemctl` on the node: done once the unit is ready
        why = svc.start_ready(restart=a.action == "restart")
        if why is not None:
            print(systemd_failure(a.service, why), file=sys.stderr)
            return 1
        return 0
    getattr(svc, a.action)()
    return 0


def cmd_add_node(a: argparse.Namespace) -> int:
    lab = Lab.attach(a.name, progress=_progress)
    lab.ticker = TerminalBar()
    node = lab.add_node()
    print(f"{node.name} joined: {node.public_ip}, subnet {node.subnet_env().get('FLANNEL_SUBNET', '-')}")
    return 0


def cmd_reconfigure(a: argparse.Namespace) -> int:
    lab = Lab.attach(a.name, progress=_progress)
    lab.ticker = TerminalBar()
    given = {"network": a.network, "subnet_len": a.subnet_len, "backend": a.backend, "vni": a.vni,
             "port": a.port, "direct_routing": a.direct_routing, "nodes": a.nodes}
    new = dataclasses.replace(lab.spec, **{k: v for k, v in given.items() if v is not None})
    plan = lab.plan(new, clean=not a.keep_leftovers, revoke=not a.no_revoke)
    if not plan:
        print(f"lab {a.name}: nothing to change")
        return 0
    res = lab.reconfigure(new, clean=not a.keep_leftovers, revoke=not a.no_revoke,
                          progress=lambda i, n, text: _progress(f"[{i + 1}/{n}] {text}") if i < n else None)
    for s in res.steps:
        print(f"  {s.seconds:6.2f}s  {s.step}: {s.detail}")
    print(f"lab {a.name}: {res.summary()}")
    return 0


def cmd_down(a: argparse.Namespace) -> int:
    removed = clean(a.name)
    print(f"lab {a.name}: removed {len(removed)} items" if removed else f"lab {a.name}: nothing to remove")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from . import bench  # here: measuring is rare, and it costs every other command 12 ms
    # with --json, standard output is the JSON alone (a program reads it); progress and the
    # summary for people go to standard error
    human = sys.stderr if a.json else sys.stdout

    def progress(message: str) -> None:
        if a.json:
            print(message, file=sys.stderr, flush=True)
        else:
            _progress(message)
    res: dict[str, Any]
    if a.kind == "scale":
        res = bench.scale(a.sizes, name=a.name, progress=progress, pings=a.pings,
                          bringup_runs=0 if a.no_bringup else 3)
        print(bench.format_scale(res), file=human)
    else:
        backends = [b.strip() for b in a.backends.split(",") if b.strip()]
        res = bench.throughput(backends, seconds=a.seconds, name=a.name, repeat=a.repeat, progress=progress,
                               reference=not a.no_reference)
        print(bench.format_throughput(res), file=human)
    if a.json:
        print(json.dumps(res, indent=2))
    return 0


def cmd_capture(a: argparse.Namespace) -> int:
    if a.write:  # before anything runs: a capture is not thrown away for a bad file name
        capture.check_pcap_path(a.write)
    if a.expr and a.filter:
        raise LabError("give the BPF filter either after IFACE or with -f, not both")
    lab = Lab.attach(a.name)
    traffic = capture.ping(lab, a.ping[0], a.ping[1], count=a.ping_count) if a.ping else None
    cap = capture.capture(lab, a.target, a.iface, filter=a.expr or " ".join(a.filter) or None, count=a.count,
                          timeout=a.timeout, traffic=traffic, pcap=a.write, progress=_progress)
    print(cap.text())
    for p in cap.packets if a.layers else []:
        print(f"\npacket {p.index}:\n{capture.layers_text(p)}")
    return 0 if cap.packets else 1


def cmd_export(a: argparse.Namespace) -> int:
    from .bundle import export
    data = export(Lab.attach(a.name), a.output)
    steps = sum(1 for e in data["transcript"] if "step" in e)
    print(f"lab {a.name}: bundle written to {a.output} ({os.path.getsize(a.output)} bytes; {len(data['nodes'])} "
          f"nodes, {len(data['etcd'][data['etcd']['api']])} etcd keys, {steps} commands in the transcript)")
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from .bundle import replay
    from .bundle.replay import plan
    if a.dry_run:
        print("\n".join(plan(a.file)))
        return 0
    _, result = replay(a.file, a.name, progress=_progress)
    print(result.text())
    print(f"\nnext: labkit diff --name {a.name} {a.file}    |    labkit check --name {a.name}")
    return 0


def cmd_diff(a: argparse.Namespace) -> int:
    from .bundle import diff_lab, load
    bundle = load(a.file)   # checked before the lab is read
    out = diff_lab(Lab.attach(a.name), bundle, context=a.context)
    sys.stdout.write(out)
    return 1 if out else 0


def cmd_versions(a: argparse.Namespace) -> int:
    from .flannel import versions
    if a.version:
        try:
            p = versions.profile(a.version)
        except versions.VersionError as e:
            raise LabError(str(e), field="flannel_version") from None
        print(f"flannel {p.release}")
        for name, value in p.values().items():
            era = versions.SWITCH[name].at(p.release)
            print(f"  {name:<19} {value:<16} {era.what}  [{era.source}]")
        return 0
    print(versions.markdown() if a.markdown else versions.text(), end="" if a.markdown else "\n")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    for name in list_labs():
        print(name)
    return 0


def cmd_scenario(a: argparse.Namespace) -> int:
    """`labkit scenario list|show|start|check|hint|solve|verify|down` (README: Scenarios)."""
    from .scenario import engine, model
    if a.verb == "from-bundle":
        from .bundle import load, scenario_yaml
        name = os.path.splitext(os.path.basename(a.output))[0]
        if not a.output.endswith((".yaml", ".yml")) or not re.match(model.NAME_RE, name):
            raise LabError(f"-o must be NAME.yaml with NAME of 2-48 lower-case letters, digits and '-' (the "
                           f"scenario's name); got {a.output!r}")
        from .outfile import check_output_path
        check_output_path(a.output, "scenario file", "from-report.yaml")
        if os.path.lexists(a.output):
            raise LabError(f"{a.output} exists; pick another file name")
        text = scenario_yaml(load(a.file), name)
        try:
            with open(a.output, "x") as f:
                f.write(text)
        except FileExistsError:
            raise LabError(f"{a.output} exists; pick another file name") from None
        print(f"scenario {name} written to {a.output}: fill in its TODOs, then labkit scenario verify {a.output}")
        return 0
    if a.verb == "list":
        found, bad = model.load_all()
        if a.json:
            print(json.dumps([{"name": s.name, "title": s.title, "minutes": s.minutes, **s.tags} for s in found]
                             + [{"error": str(e)} for e in bad], indent=1))
        else:
            rows = [["NAME", "TOPIC", "DIFFICULTY", "FLAVOUR", "MIN", "TITLE"]]
            rows += [[s.name, s.tags.get("topic", ""), s.tags.get("difficulty", ""),
                      s.tags.get("flavour", s.lab.get("flavour", "modern"))
                      + (f" {s.lab['flannel_version']}" if s.lab.get("flannel_version") else ""),
                      str(s.minutes), s.title] for s in found]
            print(_table(rows))
            for e in bad:
                print(f"\nrefused:\n{e}", file=sys.stderr)
        return 1 if bad else 0
    if a.verb == "show":
        sc = model.load(a.scenario)
        print(f"{sc.title}  ({sc.name}; {', '.join(f'{k} {v}' for k, v in sc.tags.items())}; ~{sc.minutes} min)\n")
        print(sc.summary + "\n")
        print(f"lab: {json.dumps(sc.lab) if sc.lab else 'the default lab'}")
        print("checks:")
        for c in sc.checks:
            print(f"  {c['id']} ({c['kind']}, {c['role']})" + (f": {c['title']}" if c.get("title") else ""))
        if a.solution:
            print("\nsolution:\n" + "\n".join("  " + engine.describe_step(s) for s in sc.solution))
            print("\n" + sc.explanation)
        print("\nreferences:\n" + "\n".join("  " + r for r in sc.references))
        return 0
    if a.verb == "verify":
        names = sorted(model.available()) if a.all else [a.scenario]
        if not names or names == [None]:
            raise LabError("verify NAME, or --all")
        failed = 0
        for n in names:
            res = engine.Challenge(n, name=a.name).verify(keep=a.keep)
            print(res.text() + "\n", flush=True)
            failed += not res.ok
        if len(names) > 1:
            print(f"{len(names) - failed} of {len(names)} scenarios verified")
        return 1 if failed else 0
    if a.verb == "start":
        ch = engine.Challenge(a.scenario, name=a.name).start(progress=_progress)
        sc = ch.scenario
        print(f"\n{sc.title}\n\n{sc.summary}\n")
        print(f"look around: labkit shell NODE --name {a.name}  |  labkit status --name {a.name}")
        print(f"then: labkit scenario check --name {a.name}   (hint: labkit scenario hint --name {a.name})")
        return 0
    ch = engine.Challenge.attach(a.name)
    if a.verb == "check":
        report = ch.check()
        print(json.dumps(report.to_dict(), indent=1) if a.json else report.text())
        return 0 if report.solved else 1
    if a.verb == "hint":
        tier, text = ch.hint()
        print(f"hint {tier} of {len(ch.scenario.hints)}: {text}")
        return 0
    if a.verb == "solve":
        for line in ch.solve():
            print(line)
        report = ch.wait_solved()
        print("\n" + report.text() + "\n\n" + ch.scenario.explanation)
        return 0 if report.solved else 1
    if a.verb == "down":
        ch.down()
        return 0
    raise LabError(f"unknown scenario command {a.verb}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="labkit", description="A flannel cluster in network namespaces.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            parser_class: type[_Parser] = _Parser) -> argparse.ArgumentParser:
        sub._parser_class = parser_class   # argparse's own hook, set per command
        sp = sub.add_parser(name, help=help_, description=help_)
        sub._parser_class = _Parser
        sp.add_argument("--name", default=DEFAULT_NAME, help=f"which lab (default: {DEFAULT_NAME})")
        sp.set_defaults(fn=fn)
        return sp

    up = add("up", cmd_up, "build a lab: underlay, etcd, flanneld and docker on every node, containers")
    up.add_argument("--nodes", type=int, default=2,
                    help=f"number of nodes, master included (default 2, at most {MAX_NODES})")
    up.add_argument("--network", default="10.108.0.0/16", help="flannel Network (default 10.108.0.0/16)")
    up.add_argument("--subnet-len", type=int, default=None, help="flannel SubnetLen (default: flannel's)")
    up.add_argument("--backend", default="vxlan", help="Backend.Type (default vxlan)")
    up.add_argument("--vni", type=int, default=None, help="VXLAN VNI (default 1)")
    up.add_argument("--port", type=int, default=None,
                    help="backend UDP port (vxlan: the kernel's 8472; udp: 8285)")
    up.add_argument("--direct-routing", action="store_true", help="VXLAN (or ipip) DirectRouting")
    up.add_argument("--containers", type=int, default=0, help="containers per node (default 0)")
    up.add_argument("--underlay", default=None,
                    help="node addresses (default 192.168.50.0/24; with more nodes than it holds, the "
                         "smallest block around it that does, up to 192.168.48.0/20: "
                         "/23, 192.168.48.0/22, ...)")
    up.add_argument("--mtu", type=int, default=1500, help="underlay link MTU (default 1500)")
    up.add_argument("--etcd-prefix", default="/coreos.com/network", help="flanneld -etcd-prefix")
    up.add_argument("--seed", type=int, default=None,
                    help="same subnets on every run (flannel.1's MAC stays random, as in flannel)")
    up.add_argument("--lease-ttl", type=int, default=None,
                    help="subnet lease TTL in seconds (default 86400, flannel's 24 h); renewed a quarter "
                         "of it (at most 1 h) before it expires. -lab-subnet-ttl=N in a node's "
                         "FLANNEL_OPTIONS overrides it")
    up.add_argument("--flannel-options", default=None,
                    help="more flanneld flags for every node's FLANNEL_OPTIONS in /etc/sysconfig/flanneld, "
                         "e.g. --flannel-options=-v=2 (flannel's klog verbosity; use the = form)")
    up.add_argument("--segments", type=int, default=1,
                    help="split the nodes over this many L2 segments joined by a router (default 1)")
    kn = up.add_argument_group("underlay knobs (README: Underlay knobs)")
    kn.add_argument("--node-mtu", action="append", metavar="NODE=MTU",
                    help="one node's uplink MTU, both ends of its cable (repeatable), e.g. node1=1400")
    kn.add_argument("--router-mtu", type=int, default=None,
                    help="MTU of the router's links (needs --segments 2+ or --outside): a smaller hop")
    kn.add_argument("--router-drop-icmp", action="store_true",
                    help="the router drops the ICMP 'frag needed' it sends: a PMTU black hole")
    kn.add_argument("--nics", type=int, default=1,
                    help="2: the Vagrant trap: eth0 is a NAT link with 10.0.2.15 and the default route on "
                         "every node, eth1 the cluster network (flanneld then picks eth0)")
    kn.add_argument("--iface", default=None,
                    help="flanneld -iface (default: eth0; with --nics 2 none, so flannel takes the default "
                         "route's interface; --iface eth1 is the fix)")
    kn.add_argument("--nat", action="append", metavar="NODE",
                    help="put NODE behind a NAT router of its own (repeatable; UDP 8472 forwarded to it)")
    kn.add_argument("--nat-public-ip", action="store_true",
                    help="flanneld on --nat nodes gets -public-ip=<the NAT's outside address>")
    kn.add_argument("--outside", action="store_true",
                    help="an outside network <lab>-outside (203.0.113.1, inside the lab only) behind the "
                         "router; nodes get a default route to it")
    kn.add_argument("--ip-masq", action="store_true", help="flanneld -ip-masq (masquerade traffic leaving "
                                                           "the flannel Network)")
    up.add_argument("--flavour", choices=["modern", "legacy"], default=None,
                    help="modern: flannel v0.2x, etcd v3 (default); legacy: flannel 0.7.1 as CentOS 7 "
                         "shipped it, etcd v2")
    up.add_argument("--flannel-version", default=None, metavar="V",
                    help="a flannel release, 0.7.1 to 0.28.9 (v prefix optional, 0.9 = newest 0.9.x; legacy = "
                         "0.7.1, modern = 0.28.0): the lab's flanneld behaves as that release's profile "
                         "(`labkit versions` lists the switches and their sources)")
    up.add_argument("--docker-version", default=None, metavar="VERSION",
                    help="docker profile: 1.12 (pre-1.13, CentOS 7's; default with --flavour legacy), "
                         "1.13 or 24.0 (default with modern). Every dockerd turns ip_forward on and "
                         "masquerades docker0's subnet (--ip-masq=true); from 1.13 it sets the iptables "
                         "FORWARD policy to DROP, which legacy flannel has no rules against (flannel #603)")
    up.add_argument("--no-config", action="store_true",
                    help="do not write the network config: flanneld waits until you do")
    up.add_argument("--blog", action="store_true",
                    help="the blog's cluster: master + one node, legacy flannel under /flannel/network, "
                         "no config yet (add --flavour modern to try the blog on today's flannel)")

    st = add("status", cmd_status, "show nodes, leases, docker0 and containers (from etcd and the kernel)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--all", action="store_true", help=f"every node (a lab of more than {STATUS_ROWS} nodes "
                                                       "shows the ones with a problem and a summary)")
    st.add_argument("--svg", metavar="FILE", help="also draw the topology (nodes, switch, etcd, eth0, flannel's "
                                                  "device, docker0, veths, containers) into FILE.svg")

    ex = add("exec", cmd_exec, "run a command on a node or in a container (NODE, NODE/CONTAINER)")
    ex.add_argument("target")
    ex.add_argument("command", nargs=argparse.REMAINDER)

    sh = add("shell", cmd_shell, "an interactive shell on a node or in a container")
    sh.add_argument("target")

    pg = add("ping", cmd_ping, "ping from one node/container to another (or to a lab address)")
    pg.add_argument("src")
    pg.add_argument("dst")
    pg.add_argument("-c", "--count", type=int, default=3, help="pings to send (default 3, at most 1000)")

    add("check", cmd_check, "all-pairs connectivity check between containers (or nodes)")

    lk = add("link", cmd_link, "unplug or plug a node's cable (down, up: its switch port), or delete and "
                               "re-create its uplink NIC with the same address (del, add)")
    lk.add_argument("node", help="master, node1, ...")
    lk.add_argument("action", choices=["down", "up", "del", "add"],
                    help="down: cable unplugged (NO-CARRIER); up: plugged back; del: ip link del of its "
                         "uplink (eth0; eth1 with --nics 2); add: re-created with its address and routes")

    lg = add("logs", cmd_logs, "a service's log on a node (flanneld, docker, etcd)")
    lg.add_argument("node")
    lg.add_argument("service")

    sv = add("service", cmd_service, "start/stop/restart/status a node service")
    sv.add_argument("node")
    sv.add_argument("service")
    sv.add_argument("action", choices=["start", "stop", "restart", "status"])

    bn = sub.add_parser("bench", help="measure: iperf3 through each backend vs the underlay, or bring-up at scale",
                        description="throughput: one lab, iperf3 TCP and small-packet UDP between containers on "
                                    "two nodes through each backend, and between the nodes on the bare underlay. "
                                    "scale: bring-up time and memory of vxlan labs of several sizes. The lab is "
                                    "removed afterwards; all traffic stays inside it.")
    bn.add_argument("kind", nargs="?", choices=["throughput", "scale"], default="throughput")
    bn.add_argument("--name", default="bench", help="name of the temporary lab (default: bench)")
    bn.add_argument("--backends", default="vxlan,host-gw,udp", help="throughput: backends, in order")
    bn.add_argument("--seconds", type=bench_args.number_in(int, 1, 600), default=5,
                    help="throughput: whole seconds per measurement, 1 to 600 (default 5)")
    bn.add_argument("--repeat", type=bench_args.number_in(int, 1, 50), default=3,
                    help="throughput: runs per measurement, interleaved with the reference's (median shown; "
                         "at least 3 with the reference, up to 50)")
    bn.add_argument("--no-reference", action="store_true",
                    help="throughput: skip the hand-built reference overlay (labkit/reference.py)")
    bn.add_argument("--sizes", type=bench_args.sizes, default=[10, 50, 100],
                    help=f"scale: node counts, comma-separated, each 1 to {MAX_NODES} (default 10,50,100)")
    bn.add_argument("--pings", type=bench_args.number_in(int, 0, 1000), default=10,
                    help="scale: cross-node pings per size, 0 to 1000 (default 10)")
    bn.add_argument("--no-bringup", action="store_true",
                    help="scale: skip the 2-node bring-up to a first ping (library and CLI, 3 pairs)")
    bn.add_argument("--json", action="store_true", help="also print the figures as JSON")
    bn.set_defaults(fn=cmd_bench)

    add("add-node", cmd_add_node, "a new node joins the running lab (flanneld, docker, containers)")
    rc = add("reconfigure", cmd_reconfigure, "change a running lab's network config and node count "
                                             "(flanneld and docker restarted on every node)")
    rc.add_argument("--network", help="flannel Network")
    rc.add_argument("--subnet-len", type=int, help="flannel SubnetLen")
    rc.add_argument("--backend", help="Backend.Type (vxlan, udp, host-gw, ...)")
    rc.add_argument("--vni", type=int, help="VXLAN VNI")
    rc.add_argument("--port", type=int, help="backend UDP port")
    rc.add_argument("--direct-routing", action=argparse.BooleanOptionalAction, default=None,
                    help="VXLAN DirectRouting")
    rc.add_argument("--nodes", type=int, help="node count: nodes join or leave (the last ones)")
    rc.add_argument("--keep-leftovers", action="store_true",
                    help="keep the previous backend's devices and routes (flanneld never removes them)")
    rc.add_argument("--no-revoke", action="store_true",
                    help="a leaving node's lease is left to expire, as a crashed node's is")
    add("down", cmd_down, "remove the lab (everything it created)")
    add("clean", cmd_down, "remove everything the lab owns, even after a crash (idempotent)")
    cp = add("capture", cmd_capture, "capture packets on a node's (or container's) interface, decoded "
                                     "layer by layer (VXLAN on UDP 8472 included)", _IntermixedParser)
    cp.add_argument("target", help="node or NODE/CONTAINER")
    cp.add_argument("iface", help="interface, e.g. eth0, flannel.1, docker0")
    cp.add_argument("filter", nargs="*", default=[],
                    help="BPF filter (tcpdump syntax) after IFACE, before or after the options, e.g. udp port 8472")
    cp.add_argument("-f", "--filter", dest="expr", metavar="EXPR", help="the BPF filter as one argument")
    cp.add_argument("-c", "--count", type=int, default=10, help="stop after this many packets (default 10)")
    cp.add_argument("-t", "--timeout", type=float, default=5.0, help="stop after this many seconds (default 5)")
    cp.add_argument("-w", "--write", metavar="FILE", help="save the packets as a pcap file")
    cp.add_argument("--ping", nargs=2, metavar=("SRC", "DST"), help="traffic: ping SRC -> DST once capturing")
    cp.add_argument("--ping-count", type=int, default=1, help="pings to send with --ping (default 1)")
    cp.add_argument("--layers", action="store_true", help="print every packet's layers with byte offsets")

    sc = sub.add_parser("scenario", help="a broken cluster to diagnose and fix (README: Scenarios)",
                        description="scenarios: list, show NAME, start NAME, check, hint, solve, verify NAME|--all, "
                                    "down")
    scs = sc.add_subparsers(dest="verb", required=True, metavar="VERB")
    sc_name = "which lab (default: scenario)"
    for verb, help_ in [("list", "the scenarios found"), ("show", "a scenario's task, checks, references"),
                        ("start", "build its lab and break it"), ("check", "run every check now"),
                        ("hint", "the next hint"), ("solve", "apply the solution"),
                        ("verify", "start, outcome checks fail, solve, they pass, remove"),
                        ("down", "remove the scenario's lab")]:
        vp = scs.add_parser(verb, help=help_, description=help_)
        vp.set_defaults(fn=cmd_scenario)
        if verb in ("show", "start"):
            vp.add_argument("scenario", help="a name from `labkit scenario list` (or a .yaml file)")
        if verb == "verify":
            vp.add_argument("scenario", nargs="?", help="a name from `labkit scenario list` (or a .yaml file)")
            vp.add_argument("--all", action="store_true", help="every scenario, one after the other")
            vp.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
        if verb != "list":
            vp.add_argument("--name", default="scenario", help=sc_name)
        if verb in ("list", "check"):
            vp.add_argument("--json", action="store_true", help="machine-readable output")
        if verb == "show":
            vp.add_argument("--solution", action="store_true", help="also the solution and the explanation")
    fb = scs.add_parser("from-bundle", help="a scenario skeleton from a bundle (labkit export)",
                        description="write a valid scenario file whose lab is the bundle's and whose fault is "
                                    "its transcript; fill in the task, hints and solution")
    fb.add_argument("file", help="the bundle (labkit export -o FILE)")
    fb.add_argument("-o", "--output", required=True, help="the new scenario file, NAME.yaml")
    fb.set_defaults(fn=cmd_scenario)

    xp = add("export", cmd_export, "write the lab's state as one JSON file for a bug report: spec, versions, "
                                   "etcd keys, each node's flags, links, routes, ARP, FDB, iptables, sysctls, "
                                   "flannel files, units and logs, and the commands typed since up")
    xp.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle file to write")
    rp = add("replay", cmd_replay, "build a new lab in a bundle's state: its spec, its leases, then the "
                                   "commands of its transcript (interactive sessions are listed, not replayed)")
    rp.add_argument("file", help="a bundle written by labkit export")
    rp.add_argument("--dry-run", action="store_true", help="check the bundle and list what would be done "
                                                           "(every command), build nothing")
    df = add("diff", cmd_diff, "what differs between a running lab and a bundle, ignoring what cannot be "
                               "the same (names, MACs, veth names, ids, timestamps, counters, TTLs left); "
                               "exit 1 when something differs")
    df.add_argument("file", help="a bundle written by labkit export")
    df.add_argument("-U", "--context", type=int, default=1, help="lines of context (default 1)")

    vs = add("versions", cmd_versions, "the flannel releases a lab can run (--flannel-version) and what "
             "changes between them, each switch with flannel's source file or PR")
    vs.add_argument("version", nargs="?", help="one release: its switches")
    vs.add_argument("--markdown", action="store_true", help="the table of docs/versions.md")
    classroom_cli.add_parser(sub)

    ls = sub.add_parser("list", help="running labs")
    ls.set_defaults(fn=cmd_list)

    sandbox_cli.add_parser(sub)
    return p


class Terminated(BaseException):
    """SIGTERM or SIGHUP (`kill`, a closed terminal, a job's timeout) while a command works.
    Raised in the main thread as Ctrl-C's KeyboardInterrupt is, and like it not an
    Exception: `up` then removes the half-built lab (Lab.up's clean-up) before labkit exits
    with 128 + the signal, instead of dying with the namespaces and processes left behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _terminated(signum: int, frame: object) -> None:
    for s in (signal.SIGTERM, signal.SIGHUP):  # the clean-up that follows is not cut short
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    import threading
    in_main = threading.current_thread() is threading.main_thread()  # only there can it set handlers
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)} if in_main else {}
    for s, handler in before.items():
        if handler == signal.SIG_DFL:  # not when an embedding program chose otherwise
            signal.signal(s, _terminated)
    try:
        if args.fn.__module__ != sandbox_cli.__name__:  # `sandbox` verbs join (or not) themselves
            sandbox.enter_early(argv)  # an ordinary user's labs live in their sandbox
        return args.fn(args)
    except Terminated as e:
        print(f"labkit: {e}", file=sys.stderr)
        return 128 + e.signum
    except sandbox.SandboxError as e:
        print(f"labkit: error: {e}", file=sys.stderr)
        return 1
    except LabError as e:
        print(f"labkit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `labkit ... | head`: the reader has gone, which is not an error
        quiet_stdout()
        return BROKEN_PIPE_EXIT
    except Exception as e:  # a bug, not bad input: still one line (LABKIT_DEBUG=1 shows the traceback)
        if os.environ.get("LABKIT_DEBUG"):
            raise
        print(internal_error("labkit", e), file=sys.stderr)
        return 1
    finally:
        for s, handler in before.items():
            if handler is not None:
                signal.signal(s, handler)


def finish(code: int) -> NoReturn:
    """Leave the process with `code` without Python's interpreter teardown: freeing every
    module (pyroute2's, asyncio's) took 0.1-0.2 s after each command, a third of a quick
    `labkit status` or `exec`. Output is flushed and atexit handlers run first; when a
    thread other than the idle netlink worker is still alive, the normal exit joins it."""
    import atexit
    import threading
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # `labkit ... | head`: the reader has gone
        quiet_stdout()
        os._exit(code or BROKEN_PIPE_EXIT)
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
            and not t.name.startswith("labkit-netlink")]
    if busy:
        sys.exit(code)
    atexit._run_exitfuncs()
    os._exit(code)


def entry() -> NoReturn:
    """The `labkit` command (and `python -m labkit.cli`): main, then a quick exit."""
    finish(main())


if __name__ == "__main__":
    entry()
