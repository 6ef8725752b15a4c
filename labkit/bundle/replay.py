"""`labkit replay FILE --name NEW`: rebuild a lab in the state a bundle describes.

In the order the original lab lived it:

1. the bundle is read and checked whole (labkit/bundle/model.py) before anything is built;
2. the lab is built from the spec `up` used (topology, flavour, flags, versions, the config);
3. between etcd and flanneld, the bundle's leases are put into etcd, each under its key with
   its value (a lease with a TTL gets the lab's lease TTL, a reservation none; a vxlan
   lease without its old VtepMAC, see seed_leases): every
   flanneld then finds the lease for its PublicIP and reuses it, as flannel does after a
   reboot (``Found lease ... for current IP ..., reusing``), so every node gets its subnet;
   each node's subnet.env gets the bundle's FLANNEL_SUBNET, before flanneld and before every
   step, so that a node whose lease is gone or no longer fits the Network (a config change)
   takes the subnet it had in the end, not a random one (pin_subnets);
4. the transcript's steps, in order: an ``argv`` is run as that argv (no shell anywhere),
   a ``run`` line goes to the node's own shell as it was typed there, an action through the
   lab's methods (as a scenario step); a MAC address in a command that was a device's MAC in
   the original lab is replaced by the MAC of the same device here (the kernel draws MACs at
   random). Commands follow at the pace they were typed (a pause longer than MAX_PAUSE is
   cut to it): a flanneld restart, say, has its lease event handled by the peers before the
   next command, as it had then. A failing step is reported and the replay goes on, as the person typing went on;
   interactive sessions are listed, not replayed;
   a change made through Lab (reconfigure, add_node, remove_node) is made again with
   :meth:`Lab.reconfigure` where it was;
5. if the spec still differs from the bundle's (a bundle without those entries), a last reconfigure.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shlex
import time
import urllib.parse
from collections.abc import Callable

from .. import transcript
from ..errors import LabError
from ..etcd import http_request
from ..flannel.subnet import parse_subnet_key
from ..lab import Lab
from ..spec import check_lab_name
from .model import Bundle, load, spec_from
from .normalise import MAC_RE, canonical_mac, mac_names

MAX_PAUSE = 2.0   # seconds: a longer pause between two commands is replayed as this long


@dataclasses.dataclass
class ReplayResult:
    """What a replay did: the lab's name, the leases seeded, each step with its exit status."""
    name: str
    leases: list[str] = dataclasses.field(default_factory=list)
    steps: list[tuple[str, int]] = dataclasses.field(default_factory=list)   # (what, exit status)
    skipped: list[str] = dataclasses.field(default_factory=list)             # interactive sessions

    def text(self) -> str:
        lines = [f"lab {self.name}: {len(self.leases)} leases seeded ({', '.join(self.leases) or 'none'})"]
        lines += [f"  [{'ok' if rc == 0 else f'exit {rc}'}] {what}" for what, rc in self.steps]
        lines += [f"  [not replayed] interactive shell on {t}" for t in self.skipped]
        return "\n".join(lines)


def seed_leases(lab: Lab, bundle: Bundle) -> list[str]:
    """Put the bundle's leases into the new lab's etcd (before any flanneld starts)."""
    spec = lab.spec
    network = ipaddress.IPv4Network(spec.network)
    ips = {str(n.public_ip) for n in lab.nodes}
    seeded = []
    for lease in bundle.leases():
        sn = parse_subnet_key(lease["key"])
        try:
            attrs = json.loads(lease["value"])
            public_ip = attrs.get("PublicIP")
        except (ValueError, AttributeError):
            continue
        value = lease["value"]
        if attrs.get("BackendType") == "vxlan":
            # the VtepMAC is the old lab's: peers starting before the owner has renewed its lease would
            # program an FDB entry for it, and flannel never removes one for a MAC that changed. Without
            # its type the peers skip the lease ("ignoring non-vxlan v4Subnet", vxlan_network.go) until
            # its owner reuses it and writes its own VtepMAC and type
            value = json.dumps({**attrs, "BackendType": "", "BackendData": None}, separators=(",", ":"))
        # a lease outside the Network `up` writes, or of an address no node has, would be
        # deleted or ignored by flanneld: leave it to the transcript (a config change) to recreate
        if sn is None or not sn.subnet_of(network) or public_ip not in ips:
            continue
        ttl = spec.lease_ttl if lease.get("ttl") is not None else None
        if spec.etcd_v2:   # the release's etcd API (before flannel 0.18: v2)
            body = {"value": value, **({"ttl": str(ttl)} if ttl else {})}
            code, got = http_request(lab.state.etcd_socket, "PUT", "/v2/keys" + urllib.parse.quote(lease["key"]), body)
            if code >= 300:
                raise LabError(f"etcd v2 refused lease {lease['key']}: {got}")
        else:
            client = lab.etcd()
            client.put(lease["key"], value, lease=client.lease(ttl) if ttl else None)
        seeded.append(f"{sn}={public_ip}")
    return seeded


SUBNET_ENV_LINE = re.compile(r'^FLANNEL_[A-Z0-9_]{1,40}="?[A-Za-z0-9./:,-]{0,100}"?$')


def pin_subnets(lab: Lab, bundle: Bundle, initial: bool = False) -> list[str]:
    """Each node's FLANNEL_SUBNET in /run/flannel/subnet.env set to the one in the bundle.

    flanneld reads its previous subnet there when no lease in etcd fits it (its lease was
    deleted, or the Network changed: ``Found previously leased subnet ..., reusing``), so a
    node that got a new subnet during the original session gets the same one here. Done
    before flanneld first starts and before every step (flanneld rewrites the file at each
    start; when it has a fitting lease it keeps that, as the original did). Only a
    FLANNEL_*=plain-value file from the bundle is used; the node's other lines are kept.
    ``initial``: before flanneld's first start, the subnet `up` gave the node (initial_subnets)."""
    done = []
    for node in lab.nodes:
        text = (bundle.nodes.get(node.name) or {}).get("subnet_env")
        if not isinstance(text, str) or len(text) > 2048 \
                or not all(SUBNET_ENV_LINE.match(ln) for ln in text.splitlines() if ln.strip()):
            continue
        want = [ln for ln in text.splitlines() if ln.startswith("FLANNEL_SUBNET=")]
        first = bundle.data.get("initial_subnets", {}).get(node.name)
        if initial and first:   # flanneld's first start: the subnet `up` gave it (validated: a CIDR)
            want = [f"FLANNEL_SUBNET={first}"]
        if not want:
            continue
        try:
            with open(node.subnet_file) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = text.splitlines()
        if want[0] in lines:
            continue
        lines = [want[0] if ln.startswith("FLANNEL_SUBNET=") else ln for ln in lines]
        lines += [] if want[0] in lines else want
        tmp = node.subnet_file + ".labkit-replay"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, node.subnet_file)
        done.append(node.name)
    return done


def _current_mac(lab: Lab, node: str, ifname: str) -> str | None:
    r = lab.node(node).sh(["ip", "-o", "link", "show", "dev", ifname], timeout=10)
    m = re.search(r"link/ether\s+(\S+)", r.stdout)
    return canonical_mac(m.group(1)) if r.returncode == 0 and m else None


def translate_macs(text: str, old: dict[str, str], current: Callable[[str, str], str | None]) -> str:
    """Each MAC in `text` that was a device's MAC in the original lab (`old`: {mac: node/ifname})
    -> that device's MAC now (`current(node, ifname)`); others stay."""
    def repl(m: re.Match[str]) -> str:
        owner = old.get(canonical_mac(m.group(1)))
        if owner is None or "veth*" in owner:
            return m.group(1)
        node, _, ifname = owner.partition("/")
        return current(node, ifname) or m.group(1)
    return MAC_RE.sub(repl, text)


def run_steps(lab: Lab, bundle: Bundle, result: ReplayResult) -> None:
    """The transcript's steps, in order (see the module doc, point 4)."""
    from ..scenario.engine import describe_step, run_step
    old = mac_names(bundle.nodes)

    def current(node: str, ifname: str) -> str | None:
        return _current_mac(lab, node, ifname)

    last: float | None = None        # when the previous command was typed (the bundle's clock)
    started = time.monotonic()       # when it was replayed (ours)
    for entry in bundle.transcript:
        t = entry.get("t")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            if last is not None and t > last:   # the pace it was typed at, pauses cut to MAX_PAUSE
                time.sleep(max(0.0, min(t - last, MAX_PAUSE) - (time.monotonic() - started)))
            last, started = t, time.monotonic()
        if isinstance(entry.get("reconfigure"), dict):   # a change through Lab: the same change here
            pin_subnets(lab, bundle)
            change = entry["reconfigure"]
            new = dataclasses.replace(lab.spec, **{k: v for k, v in change.items() if k != "revoke"})
            res = lab.reconfigure(new, revoke=bool(change.get("revoke", True)))
            result.steps.append((f"reconfigure {json.dumps(change, sort_keys=True)}: {res.summary()}", 0))
            continue
        if "interactive" in entry:   # listed, and noted in the new lab's transcript as it was in the old
            result.skipped.append(str(entry["interactive"]))
            transcript.record_interactive(lab.state, str(entry["interactive"]), "replay")
            continue
        step = entry.get("step")
        if not isinstance(step, dict):
            continue
        pin_subnets(lab, bundle)
        timeout = float(step.get("timeout", 60))
        if "argv" in step:
            argv = [translate_macs(w, old, current) for w in step["argv"]]
            r = lab.exec(step["on"], argv, timeout=timeout, input=step.get("input"), via="replay")
            result.steps.append((f"{step['on']}$ {shlex.join(argv)}", r.returncode))
        elif "run" in step:
            line = translate_macs(step["run"], old, current)
            r = lab.sh(step["on"], line, timeout=timeout, via="replay")
            result.steps.append((f"{step['on']}$ {line}", r.returncode))
        else:
            try:   # recorded as it is in the bundle; a failure is reported, the replay goes on
                run_step(lab, step)
                result.steps.append((describe_step(step), 0))
            except LabError as e:
                result.steps.append((f"{describe_step(step)}: {e}", 1))


def plan(bundle: Bundle | str) -> list[str]:
    """What :func:`replay` would do, one line each, without building anything (`--dry-run`)."""
    from ..scenario.engine import describe_step
    if isinstance(bundle, str):
        bundle = load(bundle)
    spec = bundle.initial_spec
    lines = [f"build: {spec.nodes} nodes, {spec.flavour} flannel, backend {spec.backend}, Network {spec.network}, "
             f"{spec.containers} containers per node, docker {spec.docker_profile}",
             f"leases: {', '.join(k['key'].rsplit('/', 1)[-1] for k in bundle.leases()) or 'none'}",
             "first subnets: " + (", ".join(f"{n}={s}" for n, s in bundle.data.get("initial_subnets", {}).items())
                                  or "-")]
    for entry in bundle.transcript:
        step = entry.get("step")
        if "reconfigure" in entry:
            lines.append(f"reconfigure {json.dumps(entry['reconfigure'], sort_keys=True)}   (Lab.reconfigure)")
        elif "interactive" in entry:
            lines.append(f"not replayed: an interactive shell on {entry['interactive']}")
        elif isinstance(step, dict) and "argv" in step:
            lines.append(f"{step['on']}$ {shlex.join(step['argv'])}   (argv, no shell)"
                         + ("   with input" if "input" in step else ""))
        elif isinstance(step, dict) and "run" in step:
            lines.append(f"{step['on']}$ {step['run']}   (the node's shell)")
        elif isinstance(step, dict):
            lines.append(describe_step(step))
    if dataclasses.asdict(bundle.spec) != dataclasses.asdict(bundle.initial_spec):
        lines.append("reconfigure to the bundle's spec")
    return lines


def replay(bundle: Bundle | str, name: str, progress: Callable[[str], object] | None = None,
           built_by: str = "labkit replay") -> tuple[Lab, ReplayResult]:
    """Build lab `name` in the bundle's state; returns (the lab, what was done).

    Bad input (the bundle, the name) raises before anything is built; a lab that fails
    to build is removed again (Lab.up)."""
    check_lab_name(name)
    if isinstance(bundle, str):
        bundle = load(bundle)
    spec = spec_from(dataclasses.asdict(bundle.initial_spec), "initial_spec", name)
    final = spec_from(dataclasses.asdict(bundle.spec), "spec", name)
    lab = Lab(spec, progress=progress, built_by=built_by)
    result = ReplayResult(name=name)

    def leases() -> str:
        result.leases.extend(seed_leases(lab, bundle))
        files = pin_subnets(lab, bundle, initial=True)
        return f"{len(result.leases)} leases from the bundle, subnet.env of {', '.join(files) or 'no node'}"
    lab.before_flanneld = leases
    lab.up()
    try:
        run_steps(lab, bundle, result)
        if dataclasses.asdict(final) != dataclasses.asdict(lab.spec):
            res = lab.reconfigure(final)
            result.steps.append((f"reconfigure: {res.summary()}", 0))
    except BaseException:
        lab.down()
        raise
    return lab, result


__all__ = ["replay", "ReplayResult", "seed_leases", "translate_macs", "run_steps"]
