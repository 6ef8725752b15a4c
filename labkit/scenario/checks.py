"""Check kinds: each check gathers what it needs from the lab, then a pure judge decides.

``evaluate(lab, check)`` returns a :class:`Result` (ok, expected, found, where to look). The
gathering is short (a few seconds at most: pings use ``-W 1``, commands a 10 s limit) and
is re-done on every call: nothing is remembered between checks. The judges (``judge_*``)
are pure functions of text a command printed, so tests feed them canned output.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import LabError

if TYPE_CHECKING:
    from ..lab import Lab

CMD_TIMEOUT = 10.0


@dataclasses.dataclass
class Result:
    id: str
    kind: str
    role: str
    ok: bool
    expected: str
    found: str
    show: str
    title: str = ""
    hint_ref: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Verdict:
    ok: bool
    expected: str
    found: str


Check = dict[str, Any]


# -- pure judges -------------------------------------------------------------------------------------
def judge_ping(expect: str, returncode: int, output: str, what: str) -> Verdict:
    answered = returncode == 0
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    said = next((ln for ln in lines if "Frag needed" in ln or "unreachable" in ln.lower()
                 or "too long" in ln), lines[-1] if lines else "no output")
    found = f"{what}: answered" if answered else f"{what}: no answer ({said.strip()})"
    return Verdict(answered == (expect == "ok"), f"{what}: {'answers' if expect == 'ok' else 'no answer'}", found)


def judge_connectivity(expect: str, matrix: dict[tuple[str, str], bool]) -> Verdict:
    bad = sorted(f"{a}->{b}" for (a, b), ok in matrix.items() if not ok)
    total = len(matrix)
    found = f"{total - len(bad)} of {total} pairs answer" + (f"; failing: {', '.join(bad[:6])}"
                                                             + (" ..." if len(bad) > 6 else "") if bad else "")
    all_ok = total > 0 and not bad
    return Verdict(all_ok == (expect == "ok"), f"{'every' if expect == 'ok' else 'not every'} pair answers",
                   found)


def judge_service(expect: str, active: bool, what: str) -> Verdict:
    state = "active" if active else "inactive"
    return Verdict(state == expect, f"{what} {expect}", f"{what} {state}")


def judge_command(expect: dict[str, Any], returncode: int, stdout: str) -> Verdict:
    want, got, ok = [], [f"exit {returncode}"], True
    if "exit" in expect:
        want.append(f"exit {expect['exit']}")
        ok &= returncode == expect["exit"]
    first = stdout.strip().splitlines()[:1]
    if "contains" in expect:
        want.append(f"output contains {expect['contains']!r}")
        ok &= expect["contains"] in stdout
    if "not_contains" in expect:
        want.append(f"output without {expect['not_contains']!r}")
        ok &= expect["not_contains"] not in stdout
    if "regex" in expect:
        want.append(f"output matches /{expect['regex']}/")
        ok &= re.search(expect["regex"], stdout, re.M) is not None
    if "not_regex" in expect:
        want.append(f"output does not match /{expect['not_regex']}/")
        ok &= re.search(expect["not_regex"], stdout, re.M) is None
    got.append(f"output {first[0][:100]!r}" + (" ..." if len(stdout.strip().splitlines()) > 1 else "")
               if first else "no output")
    return Verdict(bool(ok), ", ".join(want), ", ".join(got))


def parse_link(text: str) -> dict[str, Any] | None:
    """`ip -o -d link show dev X` + `ip -o -4 addr show dev X` -> {mtu, state, addresses}."""
    if not text.strip() or "does not exist" in text:
        return None
    m = re.search(r"\bmtu (\d+)", text)
    flags = re.search(r"<([^>]*)>", text)
    up = bool(flags and "UP" in flags.group(1).split(","))
    return {"mtu": int(m.group(1)) if m else None, "state": "UP" if up else "DOWN",
            "addresses": re.findall(r"inet (\S+)", text)}


def judge_link(expect: dict[str, Any], info: dict[str, Any] | None, device: str) -> Verdict:
    want = []
    if info is None:
        exists = expect.get("exists", True)
        return Verdict(not exists, f"{device} {'exists' if exists else 'absent'}", f"{device} absent")
    ok = expect.get("exists", True) is True
    want.append(f"{device} {'exists' if expect.get('exists', True) else 'absent'}")
    if "mtu" in expect:
        want.append(f"mtu {expect['mtu']}")
        ok &= info["mtu"] == expect["mtu"]
    if "state" in expect:
        want.append(f"state {expect['state']}")
        ok &= info["state"] == expect["state"]
    if "address" in expect:
        want.append(f"an address matching /{expect['address']}/")
        ok &= any(re.search(expect["address"], a) for a in info["addresses"])
    found = f"{device} mtu {info['mtu']} {info['state']}, addresses {' '.join(info['addresses']) or 'none'}"
    return Verdict(bool(ok), ", ".join(want), found)


def judge_route(expect: str, routes: str, dst: str, dev: str | None = None, via: str | None = None) -> Verdict:
    hits = []
    for line in routes.splitlines():
        words = line.split()
        if not words or words[0] != dst:
            continue
        if dev and f" dev {dev}" not in f" {line} ":
            continue
        if via and f" via {via} " not in f" {line} ":
            continue
        hits.append(line.strip())
    what = f"route {dst}" + (f" dev {dev}" if dev else "") + (f" via {via}" if via else "")
    found = f"{hits[0]}" if hits else f"no route {dst}" + (f" with dev {dev}" if dev else "") + \
        (f" via {via}" if via else "")
    return Verdict(bool(hits) == (expect == "present"), f"{what} {expect}", found)


def judge_entry(expect: str, table: str, needles: list[str], what: str) -> Verdict:
    """neigh/fdb: is there a line holding every needle (e.g. the peer's VtepMAC and address)?"""
    hit = next((ln.strip() for ln in table.splitlines() if all(n.lower() in ln.lower() for n in needles)), None)
    return Verdict((hit is not None) == (expect == "present"), f"{what} {expect}", hit or f"no {what}")


def judge_sysctl(expect: str | int, value: str, key: str) -> Verdict:
    return Verdict(value.strip() == str(expect), f"{key} = {expect}", f"{key} = {value.strip() or '?'}")


def judge_iptables(check: Check, rules: str) -> Verdict:
    table, chain = check.get("table", "filter"), check.get("chain")
    if "policy" in check:
        m = re.search(rf"^-P {re.escape(chain or '')} (\S+)", rules, re.M)
        got = m.group(1) if m else "?"
        ok = (got == check["policy"]) == (check["expect"] == "present")
        return Verdict(ok, f"{table} {chain} policy {check['policy']} {check['expect']}", f"policy {got}")
    hits = [ln for ln in rules.splitlines() if ln.startswith("-A") and re.search(check["rule"], ln)]
    ok = bool(hits) == (check["expect"] == "present")
    return Verdict(ok, f"{table} rule /{check['rule']}/ {check['expect']}", hits[0] if hits else "no such rule")


def _cut(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def json_field(value: str | None, field: str) -> Any:
    """The value of a dotted field of a JSON text (KeyError/ValueError if there is none)."""
    if value is None:
        raise KeyError(field)
    obj: Any = json.loads(value)
    for part in field.split("."):
        obj = obj[part]
    return obj


def judge_value(expect: str, value: str | None, what: str, field: str | None = None,
                equals: Any = None) -> Verdict:
    """etcd key / lease: exists or absent, and a JSON field's value."""
    if value is None:
        return Verdict(expect == "absent", f"{what} {expect}", f"{what} absent")
    if expect == "absent":
        return Verdict(False, f"{what} absent", f"{what} = {_cut(value)}")
    if field is None:
        return Verdict(True, f"{what} exists", f"{what} = {_cut(value)}")
    try:
        got = json_field(value, field)
    except (KeyError, ValueError, TypeError, IndexError):
        return Verdict(False, f"{what} {field} = {equals!r}", f"{what} has no {field} ({value[:80]})")
    return Verdict(got == equals, f"{what} {field} = {equals!r}", f"{what} {field} = {got!r}")


def judge_log(expect: str, log: str, regex: str, what: str) -> Verdict:
    hit = next((ln.strip() for ln in log.splitlines() if re.search(regex, ln)), None)
    return Verdict((hit is not None) == (expect == "present"), f"/{regex}/ {expect} in {what}",
                   hit[-160:] if hit else f"no line matching in {what}")


# -- gathering ---------------------------------------------------------------------------------------
def _sh(lab: Lab, target: str, script: str, timeout: float = CMD_TIMEOUT) -> tuple[int, str]:
    try:
        r = lab.sh(target, script, timeout=timeout, record=False)  # a probe, not typed
    except LabError as e:
        return 255, str(e)
    except Exception as e:  # subprocess.TimeoutExpired
        return 124, f"{type(e).__name__}: {e}"
    return r.returncode, (r.stdout or "") + (r.stderr or "")


def lease_of(lab: Lab, node: str) -> tuple[str | None, str | None]:
    """(subnet, lease JSON) of a node's lease: the one whose PublicIP is the node's address."""
    ip = str(lab.node(node).public_ip)
    for sn, (_key, value) in lab.leases().items():
        try:
            if json.loads(value).get("PublicIP") == ip:
                return sn, value
        except ValueError:
            continue
    return None, None


def resolve_dst(lab: Lab, dst: str) -> str:
    if dst.startswith("subnet-of:"):
        sn, _ = lease_of(lab, dst.split(":", 1)[1])
        if sn is None:
            raise LabError(f"{dst.split(':', 1)[1]} has no lease")
        return sn
    if dst == "network":
        return str(lab.spec.network)
    return dst


def _nodes(lab: Lab, value: str) -> list[str]:
    return [n.name for n in lab.nodes] if value == "all" else [value]


def _ping(lab: Lab, c: Check) -> Verdict:
    src, dst = c["from"], c["to"]
    ip = str(lab.address_of(dst))
    size = c.get("size")
    if size == "mtu":  # as big as the sender's interface toward dst lets it send
        _, route = _sh(lab, src, f"ip -o route get {shlex.quote(ip)}")
        m = re.search(r"\bdev (\S+)", route)
        if not m:
            return Verdict(c["expect"] == "fail", "a route to " + dst, f"no route from {src}: {route.strip()}")
        _, link = _sh(lab, src, f"ip -o link show dev {shlex.quote(m.group(1))}")
        mtu = re.search(r"\bmtu (\d+)", link)
        size = int(mtu.group(1)) - 28 if mtu else 1472
    args = ["ping", "-c", str(c.get("count", 2)), "-i", "0.2", "-W", "1"]
    if c.get("df"):
        args += ["-M", "do"]
    if size is not None:
        args += ["-s", str(size)]
    code, out = _sh(lab, src, shlex.join(args + [ip]))
    what = f"{src} -> {dst} ({ip})" + (f" {size} bytes" if size is not None else "") + (" DF" if c.get("df") else "")
    return judge_ping(c["expect"], code, out, what)


def _connectivity(lab: Lab, c: Check) -> Verdict:
    eps = c.get("endpoints") or lab.endpoints()
    return judge_connectivity(c["expect"], dict(lab.connectivity(eps)))


def _service(lab: Lab, c: Check) -> Verdict:
    verdicts = [judge_service(c["expect"], lab.service(n, c["service"]).is_active(), f"{c['service']} on {n}")
                for n in _nodes(lab, c["node"])]
    return _all(verdicts, _nodes(lab, c["node"]))


def _command(lab: Lab, c: Check) -> Verdict:
    code, out = _sh(lab, c["on"], c["run"])
    return judge_command(c["expect"], code, out)


def _link(lab: Lab, c: Check) -> Verdict:
    out = []
    for n in _nodes(lab, c["node"]):
        dev = shlex.quote(c["device"])
        code, text = _sh(lab, n, f"ip -o -d link show dev {dev} && ip -o -4 addr show dev {dev}")
        v = judge_link(c["expect"], parse_link(text) if code == 0 else None, c["device"])
        out.append(Verdict(v.ok, f"{n}: {v.expected}", f"{n}: {v.found}"))
    return _all(out, _nodes(lab, c["node"]))


def _route(lab: Lab, c: Check) -> Verdict:
    out = []
    dst = resolve_dst(lab, c["dst"])
    for n in _nodes(lab, c["node"]):
        _, routes = _sh(lab, n, "ip -4 route show")
        v = judge_route(c["expect"], routes, dst, c.get("dev"), c.get("via"))
        out.append(Verdict(v.ok, f"{n}: {v.expected}", f"{n}: {v.found}"))
    return _all(out, _nodes(lab, c["node"]))


def _peer_entry(lab: Lab, c: Check) -> Verdict:
    sn, lease = lease_of(lab, c["peer"])
    if lease is None:
        return Verdict(c["expect"] == "absent", f"an entry for {c['peer']}", f"{c['peer']} has no lease")
    data = json.loads(lease)
    mac = (data.get("BackendData") or {}).get("VtepMAC", "")
    dev = c.get("dev", "flannel.1")
    out = []
    for n in _nodes(lab, c["node"]):
        if c["kind"] == "neigh":
            _, table = _sh(lab, n, f"ip neigh show dev {shlex.quote(dev)}")
            needles, what = [str(ipaddress.IPv4Network(sn).network_address) + " ", mac], \
                f"ARP entry for {c['peer']} ({ipaddress.IPv4Network(sn).network_address} lladdr {mac})"
        else:
            _, table = _sh(lab, n, f"bridge fdb show dev {shlex.quote(dev)}")
            needles, what = [mac, f"dst {data.get('PublicIP')} "], f"FDB entry for {c['peer']} ({mac} dst " \
                f"{data.get('PublicIP')})"
        v = judge_entry(c["expect"], table + "\n", needles, what)
        out.append(Verdict(v.ok, f"{n}: {v.expected}", f"{n}: {v.found}"))
    return _all(out, _nodes(lab, c["node"]))


def _sysctl(lab: Lab, c: Check) -> Verdict:
    path = "/proc/sys/" + c["key"].replace(".", "/")
    out = []
    for n in _nodes(lab, c["node"]):
        _, value = _sh(lab, n, f"cat {shlex.quote(path)}")
        v = judge_sysctl(c["expect"], value, c["key"])
        out.append(Verdict(v.ok, f"{n}: {v.expected}", f"{n}: {v.found}"))
    return _all(out, _nodes(lab, c["node"]))


def _iptables(lab: Lab, c: Check) -> Verdict:
    args = ["iptables", "-w", "-t", c.get("table", "filter"), "-S"] + ([c["chain"]] if c.get("chain") else [])
    out = []
    for n in _nodes(lab, c["node"]):
        _, rules = _sh(lab, n, shlex.join(args))
        v = judge_iptables(c, rules)
        out.append(Verdict(v.ok, f"{n}: {v.expected}", f"{n}: {v.found}"))
    return _all(out, _nodes(lab, c["node"]))


def _etcd(lab: Lab, c: Check) -> Verdict:
    from ..etcd import V2Client
    api = c.get("api") or ("v2" if lab.spec.etcd_v2 else "v3")
    value: str | None
    if api == "v2":
        value = V2Client(lab.state.etcd_socket).get(c["key"])
    else:
        raw, _ = lab.etcd().get(c["key"])
        value = raw.decode() if raw is not None else None
    return judge_value(c["expect"], value, f"etcd ({api}) {c['key']}", c.get("field"), c.get("equals"))


def _lease(lab: Lab, c: Check) -> Verdict:
    out = []
    for n in _nodes(lab, c["of"]):
        _, value = lease_of(lab, n)
        out.append(judge_value(c["expect"], value, f"lease of {n}", c.get("field"), c.get("equals")))
    return _all(out, _nodes(lab, c["of"]))


def _log(lab: Lab, c: Check) -> Verdict:
    out = [judge_log(c["expect"], lab.service(n, c["service"]).log(), c["regex"], f"{c['service']} log on {n}")
           for n in _nodes(lab, c["node"])]
    return _all(out, _nodes(lab, c["node"]))


def _all(verdicts: list[Verdict], nodes: list[str] | None = None) -> Verdict:
    """One verdict for a check run on several nodes (`node: all`): ok when every node is."""
    if len(verdicts) == 1:
        return verdicts[0]
    bad = [v for v in verdicts if not v.ok]
    expected = verdicts[0].expected
    if nodes:
        expected = re.sub(rf"\b{re.escape(nodes[0])}\b", "each node", expected)
    if not bad:
        return Verdict(True, expected, f"all {len(verdicts)} nodes as expected (first: {verdicts[0].found[:80]})")
    return Verdict(False, expected, "; ".join(v.found for v in bad[:4]) + (" ..." if len(bad) > 4 else ""))


GATHER: dict[str, Callable[[Lab, Check], Verdict]] = {
    "ping": _ping, "connectivity": _connectivity, "service": _service, "command": _command, "link": _link,
    "route": _route, "neigh": _peer_entry, "fdb": _peer_entry, "sysctl": _sysctl, "iptables": _iptables,
    "etcd": _etcd, "lease": _lease, "log": _log,
}


def default_show(c: Check) -> str:
    """Where a learner looks for what this check judges, when the file does not say."""
    k, n = c["kind"], c.get("node") or c.get("on") or c.get("of") or c.get("from") or "master"
    n = "NODE" if n == "all" else n
    return {
        "ping": f"{c.get('from')}$ ping -c 2 {'-M do ' if c.get('df') else ''}"
                f"{'-s ' + str(c['size']) + ' ' if isinstance(c.get('size'), int) else ''}<address of {c.get('to')}>",
        "connectivity": "labkit check",
        "service": f"{n}$ systemctl status {c.get('service')}",
        "command": f"{n}$ {c.get('run')}",
        "link": f"{n}$ ip -d addr show {c.get('device')}",
        "route": f"{n}$ ip route",
        "neigh": f"{n}$ ip neigh show dev {c.get('dev', 'flannel.1')}",
        "fdb": f"{n}$ bridge fdb show dev {c.get('dev', 'flannel.1')}",
        "sysctl": f"{n}$ sysctl {c.get('key')}",
        "iptables": f"{n}$ iptables -t {c.get('table', 'filter')} -S {c.get('chain', '')}".rstrip(),
        "etcd": f"master$ etcdctl get {c.get('key')}",
        "lease": "master$ etcdctl get --prefix <prefix>/subnets   (or: labkit status)",
        "log": f"{n}$ journalctl -u {c.get('service')}",
    }[k]


def evaluate(lab: Lab, c: Check) -> Result:
    """Run one check now (never cached)."""
    try:
        v = GATHER[c["kind"]](lab, c)
    except Exception as e:  # a check that cannot look (etcd down, no such container) fails, and says why
        v = Verdict(False, "the check to run", f"could not check: {type(e).__name__ if not str(e) else e}")
    return Result(id=c["id"], kind=c["kind"], role=c["role"], ok=v.ok, expected=v.expected, found=v.found,
                  show=c.get("show") or default_show(c), title=c.get("title", ""), hint_ref=c.get("hint_ref"))
