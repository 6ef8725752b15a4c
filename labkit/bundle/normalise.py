"""What two bundles must agree on, and the diff between them. Pure logic.

Two labs in the same state still differ in what cannot be the same by construction: their
names (and so every namespace's), the MAC addresses the kernel drew for their devices, the
names docker drew for container veths, interface and netns ids, process ids, timestamps,
packet counters and the seconds left on each lease. :func:`sections` rewrites a bundle
into labelled lines with all of that taken out, so that :func:`diff` can compare two labs
line by line:

* a MAC address becomes the device that has it, ``<mac node1/flannel.1>`` (from each node's
  ``ip -d link``), so a lease whose VtepMAC is not its node's flannel.1 MAC still differs;
  an unknown unicast MAC is ``<mac>``, multicast MACs stay as they are;
* ``vethXXXXXXX`` is ``veth*``; ``N:`` and ``@ifN`` interface indexes, ``link-netns``,
  ``link-netnsid`` and bridge timers are dropped; the lab name in namespace names is ``LAB``;
* ARP and FDB entries the kernel learned (REACHABLE, STALE, ... and non-permanent FDB
  entries) are caches of traffic, not state: only PERMANENT/NOARP neighbours and permanent
  or static FDB entries are kept; lines whose order the kernel chooses are sorted;
* iptables-save's comments and ``[packets:bytes]`` counters go; the rules' order stays;
* IPv6 solicited-node multicast MACs (33:33:ff:..., made from a link-local address, made
  from a MAC) are ``33:33:ff:<solicited-node>``;
* a lease's remaining TTL becomes whether it has one (a reservation has none);
* services' logs are left out (timestamps and pids on every line); the transcript is
  compared as its commands (who typed them and when is left out).
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any

MAC_RE = re.compile(r"(?<![0-9a-fA-F:])((?:[0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2})(?![0-9a-fA-F:])")
VETH_RE = re.compile(r"\bveth[0-9a-f]{7}\b")
LINK_HEADER_RE = re.compile(r"^(\d+):\s+([^:@\s]+)(@[^:\s]+)?:(.*)$")
TIMER_RE = re.compile(r"\b(\w+_timer)\s+[0-9.]+")
SORTED_SECTIONS = ("ip_route", "ip_neigh", "bridge_fdb", "sysctl")
NODE_SECTIONS = ("spec_flags", "sysconfig", "ip_link", "ip_addr", "ip_route", "ip_neigh", "bridge_fdb",
                 "iptables_save", "sysctl", "subnet_env", "docker_opts", "units", "containers")
# spec fields that name the lab rather than shape it
SPEC_IGNORED = ("name",)


def canonical_mac(mac: str) -> str:
    """'2:42:AC:11:0:1' -> '02:42:ac:11:00:01' (iproute2 prints bridge ids without zeros)."""
    return ":".join(f"{int(b, 16):02x}" for b in mac.split(":"))


def is_multicast(mac: str) -> bool:
    return bool(int(canonical_mac(mac).split(":")[0], 16) & 1)


def link_blocks(text: str) -> list[tuple[str, list[str]]]:
    """`ip link`/`ip addr` output -> [(ifname, its lines)] (veth names kept)."""
    blocks: list[tuple[str, list[str]]] = []
    for line in (text or "").splitlines():
        m = LINK_HEADER_RE.match(line)
        if m:
            blocks.append((m.group(2), [line]))
        elif blocks and line.strip():
            blocks[-1][1].append(line)
    return blocks


def mac_names(nodes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{mac: 'node/ifname'} from every node's `ip -d link` (veth names normalised)."""
    names: dict[str, str] = {}
    for node in sorted(nodes):
        for ifname, lines in link_blocks(str(nodes[node].get("ip_link") or "")):
            for line in lines[1:2]:
                m = re.search(r"link/ether\s+(\S+)", line)
                if m and MAC_RE.fullmatch(m.group(1)):
                    names.setdefault(canonical_mac(m.group(1)), f"{node}/{VETH_RE.sub('veth*', ifname)}")
    return names


class Normaliser:
    """Rewrites text from one lab so that it compares with another's (see the module doc)."""

    def __init__(self, lab: str, macs: dict[str, str]) -> None:
        self.lab = lab
        self.macs = macs
        self._ns = re.compile(rf"\b{re.escape(lab)}-(?=[a-z])") if lab else None

    def mac(self, mac: str) -> str:
        if canonical_mac(mac).startswith("33:33:ff:"):  # IPv6 solicited-node: from a link-local address
            return "33:33:ff:<solicited-node>"
        if is_multicast(mac):
            return canonical_mac(mac)
        name = self.macs.get(canonical_mac(mac))
        return f"<mac {name}>" if name else "<mac>"

    def text(self, line: str) -> str:
        """The rewrites every line gets: MACs, veth names, the lab's namespace prefix."""
        line = re.sub(r"\b(8000|[0-9a-f]{4})\.((?:[0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2})\b",
                      lambda m: f"{m.group(1)}.{self.mac(m.group(2))}", line)  # bridge ids
        line = MAC_RE.sub(lambda m: self.mac(m.group(1)), line)
        line = VETH_RE.sub("veth*", line)
        if self._ns is not None:
            line = self._ns.sub("LAB-", line)
        return line.rstrip()

    def link(self, text: str, addr: bool = False) -> list[str]:
        """`ip -d link` / `ip addr`: per interface, sorted by name, without ids and timers."""
        out: list[tuple[str, list[str]]] = []
        for ifname, lines in link_blocks(text):
            block = []
            for i, line in enumerate(lines):
                if i == 0:
                    m = LINK_HEADER_RE.match(line)
                    assert m is not None
                    line = f"{m.group(2)}{'@if' if m.group(3) else ''}:{m.group(4)}"
                line = re.sub(r"\s+link-netns(id)?\s+\S+", "", line)
                line = TIMER_RE.sub(r"\1 *", line)
                line = re.sub(r"\b(valid_lft|preferred_lft)\s+\d+sec", r"\1 *", line)
                line = re.sub(r"\binet6 fe80::\S+", "inet6 fe80::<link-local>", line)
                block.append(self.text(line))
            out.append((VETH_RE.sub("veth*", ifname), block))
        out.sort(key=lambda b: (b[0], b[1]))
        return [line for _, block in out for line in block]

    def neigh(self, text: str) -> list[str]:
        return sorted(self.text(ln) for ln in (text or "").splitlines()
                      if re.search(r"\b(PERMANENT|NOARP)\b", ln))

    def fdb(self, text: str) -> list[str]:
        return sorted(self.text(ln) for ln in (text or "").splitlines() if re.search(r"\b(permanent|static)\b", ln))

    def iptables(self, text: str) -> list[str]:
        out = []
        for ln in (text or "").splitlines():
            if ln.startswith("#") or not ln.strip():
                continue
            ln = re.sub(r"^(:\S+ \S+) \[\d+:\d+\]$", r"\1", ln)   # chain policy counters
            ln = re.sub(r"^\[\d+:\d+\] ", "", ln)                 # rule counters (iptables-save -c)
            out.append(self.text(ln))
        return out

    def lines(self, text: str | None, sort: bool = False) -> list[str]:
        got = [self.text(ln) for ln in (text or "").splitlines() if ln.strip()]
        got = [re.sub(r"\bexpires \d+sec\b", "expires *", ln) for ln in got]
        return sorted(got) if sort else got


def _lease_value(norm: Normaliser, value: str) -> str:
    """A lease's JSON with its VtepMAC named, keys sorted."""
    try:
        obj = json.loads(value)
    except ValueError:
        return norm.text(value)
    return norm.text(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def transcript_lines(entries: Iterable[dict[str, Any]], norm: Normaliser | None = None) -> list[str]:
    """The transcript as commands: 'node1$ ip route', '[interactive] node1', 'labkit link node1 down'."""
    out = []
    for e in entries:
        step = e.get("step")
        if "interactive" in e:
            out.append(f"[interactive shell] {e['interactive']}")
        elif "reconfigure" in e:
            out.append(f"[reconfigure] {json.dumps(e['reconfigure'], sort_keys=True)}")
        elif isinstance(step, dict) and "argv" in step:
            out.append(f"{step.get('on')}$ {json.dumps(step['argv'])}" + (" <input>" if "input" in step else ""))
        elif isinstance(step, dict) and "run" in step:
            out.append(f"{step.get('on')}$ {step['run']}")
        elif isinstance(step, dict):
            out.append(json.dumps({k: v for k, v in step.items() if k != "note"}, sort_keys=True))
        elif "too_long" in e:
            out.append(f"[a command too long to keep: {e['too_long']} bytes]")
        elif "full" in e:
            out.append("[transcript full]")
    return [norm.text(line) for line in out] if norm is not None else out


def sections(data: dict[str, Any]) -> dict[str, list[str]]:
    """A bundle document as {section title: normalised lines} (see the module doc)."""
    nodes: dict[str, dict[str, Any]] = data.get("nodes") or {}
    norm = Normaliser(str(data.get("lab", "")), mac_names(nodes))
    out: dict[str, list[str]] = {}
    spec = {k: v for k, v in (data.get("spec") or {}).items() if k not in SPEC_IGNORED}
    out["spec"] = [f"{k} = {json.dumps(v, sort_keys=True)}" for k, v in sorted(spec.items())]
    out["versions"] = [f"{k} = {v}" for k, v in sorted((data.get("versions") or {}).items())]
    etcd = data.get("etcd") or {}
    for api in ("v3", "v2"):
        lines = []
        for k in etcd.get(api) or []:
            ttl = "lease with a TTL" if k.get("ttl") is not None else "no TTL"
            lines.append(f"{k.get('key')} = {_lease_value(norm, str(k.get('value')))}  ({ttl})")
        out[f"etcd {api} keys"] = sorted(lines)
    for node in sorted(nodes):
        info = nodes[node] or {}
        out[f"{node}: flanneld flags"] = [norm.text(" ".join(info.get("flanneld_flags") or []))]
        out[f"{node}: /etc/sysconfig/flanneld"] = norm.lines(info.get("sysconfig"))
        out[f"{node}: ip -d link"] = norm.link(str(info.get("ip_link") or ""))
        out[f"{node}: ip addr"] = norm.link(str(info.get("ip_addr") or ""), addr=True)
        out[f"{node}: ip route"] = norm.lines(info.get("ip_route"), sort=True)
        out[f"{node}: ip neigh (permanent)"] = norm.neigh(str(info.get("ip_neigh") or ""))
        out[f"{node}: bridge fdb (permanent, static)"] = norm.fdb(str(info.get("bridge_fdb") or ""))
        out[f"{node}: iptables-save"] = norm.iptables(str(info.get("iptables_save") or ""))
        out[f"{node}: sysctl"] = norm.lines(info.get("sysctl"), sort=True)
        out[f"{node}: /run/flannel/subnet.env"] = norm.lines(info.get("subnet_env"))
        out[f"{node}: /run/flannel/docker"] = norm.lines(info.get("docker_opts"))
        out[f"{node}: units"] = [f"{u}: {s}" for u, s in sorted((info.get("units") or {}).items())]
        out[f"{node}: containers"] = sorted(
            f"{c.get('name')} {c.get('ip') or '-'} {'running' if c.get('running') else 'stopped'}"
            for c in info.get("containers") or [])
    out["transcript"] = transcript_lines(data.get("transcript") or [], norm)
    return out


def diff(a: dict[str, Any], b: dict[str, Any], a_name: str = "a", b_name: str = "b", context: int = 1) -> str:
    """Unified-style differences between two bundle documents after normalisation ('' = same).

    Each section that differs gets its own ``--- a_name: section`` / ``+++ b_name: section``
    header; a section only one side has is shown whole."""
    sa, sb = sections(a), sections(b)
    chunks: list[str] = []
    for title in list(sa) + [t for t in sb if t not in sa]:
        la, lb = sa.get(title, []), sb.get(title, [])
        if la == lb:
            continue
        body = list(difflib.unified_diff(la, lb, f"{a_name}: {title}", f"{b_name}: {title}", n=context,
                                         lineterm=""))
        chunks.append("\n".join(body))
    return "\n".join(chunks) + ("\n" if chunks else "")
