"""A node's iptables rules as data, a table and a picture (notebook 11, the iptables lesson).

Two programs write a flannel node's netfilter rules: dockerd (its ``DOCKER*`` chains, the
FORWARD rules for docker0, ``MASQUERADE`` for docker0's subnet, and from docker 1.13 the
FORWARD policy DROP: ``labkit/docker/iptables.py``) and flanneld (``FLANNEL-FWD`` with
``-iptables-forward-rules``, ``FLANNEL-POSTRTG`` with ``-ip-masq``: flannel's
``pkg/trafficmngr/iptables/iptables.go``, here ``labkit/flannel/trafficmngr.py``).
Everything is read from ``iptables-save -c`` inside the node (the lab's namespace, never
the host's), so the counters are the kernel's own: the picture shows which rule a packet
met, not which rule we think it should.

Parsing and drawing are pure functions of that text (unit-tested without a lab); only
:func:`read` talks to a Lab.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import drawsvg

from .tables import Table

if TYPE_CHECKING:
    from ..lab import Lab

BUILTIN = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
COLOURS = {"flannel": "#dafbe1", "docker": "#ddf4ff", "other": "#f6f8fa"}
STROKES = {"flannel": "#1a7f37", "docker": "#0969da", "other": "#6e7781"}
_CHAIN_RE = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]$")
_RULE_RE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) ?(.*)$")


@dataclass
class Rule:
    """One rule as `iptables -S` spells it (without `-A CHAIN`), with its counters."""
    table: str
    chain: str
    spec: str
    packets: int = 0
    bytes: int = 0

    @property
    def target(self) -> str:
        m = re.search(r"(?:^| )-j (\S+)", self.spec)
        return m.group(1) if m else ""

    @property
    def by(self) -> str:
        return owner(self.chain, self.spec)


@dataclass
class Chain:
    table: str
    name: str
    policy: str | None          # None for a user-defined chain ('-' in iptables-save)
    packets: int = 0            # the policy's counters (built-in chains only)
    bytes: int = 0
    rules: list[Rule] = field(default_factory=list)


Ruleset = dict[tuple[str, str], Chain]   # (table, chain) -> Chain


def parse_save(text: str) -> Ruleset:
    """`iptables-save -c` output -> {(table, chain): Chain}, in the order it lists them."""
    out: Ruleset = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        m = _CHAIN_RE.match(line)
        if m:
            name, policy, pk, by = m.groups()
            out[(table, name)] = Chain(table, name, None if policy == "-" else policy, int(pk), int(by))
            continue
        m = _RULE_RE.match(line)
        if m:
            pk, by, chain, spec = m.groups()
            out.setdefault((table, chain), Chain(table, chain, None)).rules.append(
                Rule(table, chain, spec, int(pk), int(by)))
    return out


def owner(chain: str, spec: str) -> str:
    """Who writes a rule like this one: 'flannel', 'docker' or 'other' (an admin, a script).

    flannel's rules carry the comments "flanneld forward" / "flanneld masq" (v0.20+) or
    live in its FLANNEL-* chains; docker's live in its DOCKER* chains or name docker0.
    flannel < 0.20 wrote its rules without comments: they read as 'other' here."""
    if chain.startswith("FLANNEL-") or "flanneld" in spec or "FLANNEL-" in spec:
        return "flannel"
    if chain.startswith("DOCKER") or "docker0" in spec or re.search(r"-j DOCKER\S*", spec):
        return "docker"
    return "other"


def read(lab: Lab, node: str) -> Ruleset:
    """The node's rules now, with the kernel's counters."""
    r = lab.sh(node, "iptables-save -c")
    if r.returncode != 0:
        raise RuntimeError(f"iptables-save on {node} failed: {r.stderr.strip()}")
    return parse_save(r.stdout)


def rules_rows(rulesets: dict[str, Ruleset]) -> list[list[str]]:
    """One row per rule and per chain policy: node, table, chain, rule, written by."""
    rows = []
    for node, rs in rulesets.items():
        for (table, name), chain in rs.items():
            if chain.policy is not None and name in BUILTIN and chain.policy != "ACCEPT":
                rows.append([node, table, name, f"-P {name} {chain.policy}", "docker"])
            for rule in chain.rules:
                rows.append([node, table, name, rule.spec, rule.by])
    return rows


def rules_table(rulesets: dict[str, Ruleset], title: str | None = None) -> Table:
    """Who wrote which rule, node by node (ACCEPT policies, the kernel's default, left out;
    a DROP policy on a flannel node is docker's doing, flannel never sets one)."""
    return Table(["node", "table", "chain", "rule", "written by"], rules_rows(rulesets), title=title)


@dataclass
class Step:
    """One line of the picture: a rule (or the chain's policy) and how deep it is nested."""
    depth: int
    chain: str
    text: str
    packets: int
    by: str
    policy: bool = False


def walk(rs: Ruleset, table: str = "filter", chain: str = "FORWARD", depth: int = 0) -> list[Step]:
    """The chain's rules in order, each jump followed by the rules of the chain it jumps to
    (once; a chain with no rules is just its jump), then the built-in chain's policy."""
    steps: list[Step] = []
    c = rs.get((table, chain))
    if c is None:
        return steps
    for rule in c.rules:
        steps.append(Step(depth, chain, rule.spec, rule.packets, rule.by))
        target = rule.target
        if (table, target) in rs and target != chain and rs[(table, target)].policy is None \
                and rs[(table, target)].rules and depth < 2:
            steps += walk(rs, table, target, depth + 1)
    if c.policy is not None:
        steps.append(Step(depth, chain, f"policy {c.policy}", c.packets,
                          "docker" if c.policy != "ACCEPT" else "other", policy=True))
    return steps


class ChainPicture:
    """A chain drawn as the packets meet it: one box per rule, its packet counter on the
    left, flannel's rules green, docker's blue; a DROP policy that counted packets is red.
    Shown as SVG in JupyterLab; its text form (what nbval compares) is the same list."""

    def __init__(self, steps: list[Step], title: str) -> None:
        self.steps, self.title = steps, title

    def text(self) -> str:
        lines = [self.title]
        for s in self.steps:
            lines.append(f"{s.packets:>6}  {'    ' * s.depth}{s.chain}: {s.text}   [{s.by}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def drawing(self) -> drawsvg.Drawing:
        row, left, indent, char = 26, 64, 24, 7.0
        longest = max((len(f"{s.chain}: {s.text}") + 4 * s.depth for s in self.steps), default=20)
        width = int(left + 24 + longest * char + 3 * indent)
        height = 34 + row * len(self.steps) + 28
        d = drawsvg.Drawing(width, height, font_family="monospace", font_size=12)
        d.append(drawsvg.Rectangle(0, 0, width, height, fill="white"))
        d.append(drawsvg.Text(self.title, 13, 4, 18, font_weight="bold", font_family="sans-serif"))
        d.append(drawsvg.Text("packets", 11, left - 8, 32, text_anchor="end", font_family="sans-serif",
                              fill="#57606a"))
        for i, s in enumerate(self.steps):
            y = 38 + i * row
            x = left + s.depth * indent
            dropped = s.policy and s.text.endswith("DROP") and s.packets > 0
            fill = "#ffebe9" if dropped else ("#fff8c5" if s.policy else COLOURS[s.by])
            stroke = "#cf222e" if dropped else ("#9a6700" if s.policy else STROKES[s.by])
            d.append(drawsvg.Rectangle(x, y, width - x - 6, row - 6, rx=4, fill=fill, stroke=stroke,
                                       stroke_width=2.5 if s.packets else 1))
            d.append(drawsvg.Text(str(s.packets), 12, left - 8, y + 15, text_anchor="end",
                                  font_weight="bold" if s.packets else "normal"))
            d.append(drawsvg.Text(f"{s.chain}: {s.text}", 12, x + 6, y + 15))
        y = 38 + len(self.steps) * row + 8
        for j, (who, colour) in enumerate(STROKES.items()):
            d.append(drawsvg.Rectangle(4 + j * 110, y, 12, 12, fill=COLOURS[who], stroke=colour))
            d.append(drawsvg.Text(who if who != "other" else "kernel/other", 11, 20 + j * 110, y + 10,
                                  font_family="sans-serif"))
        return d

    def _repr_svg_(self) -> str:
        return str(self.drawing().as_svg())


def chain_picture(lab: Lab, node: str, title: str, table: str = "filter", chain: str = "FORWARD") -> ChainPicture:
    """The node's `chain` now, drawn with its counters (``iptables -Z`` zeroes them first)."""
    return ChainPicture(walk(read(lab, node), table, chain), title)
