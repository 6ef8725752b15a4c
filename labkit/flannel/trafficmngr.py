"""iptables rules flanneld keeps in its node (mirrors pkg/trafficmngr/iptables/iptables.go).

* FORWARD (``-iptables-forward-rules``, on by default): a ``FLANNEL-FWD`` chain jumped to
  from FORWARD, accepting traffic from and to the flannel Network. Docker >= 1.13 sets
  the FORWARD policy to DROP; without these rules encapsulated packets arrive and are
  then dropped on their way to docker0.
* masquerade (``-ip-masq``): a ``FLANNEL-POSTRTG`` chain in nat/POSTROUTING: traffic
  inside the flannel Network keeps its addresses, traffic leaving it is masqueraded.

Every ``-iptables-resync`` seconds the rules are checked; if one is missing, all are
deleted and re-added in order ("Some iptables rules are missing; ..."). The commands
run inside the node's network namespace, never the host's.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
import time

from . import log

SRC = "iptables.go"
KUBE_PROXY_MARK = "0x4000/0x4000"

# (table, chain, rule spec)
Rule = tuple[str, str, list[str]]


def forward_rules(network: str, style: str = "chain") -> list[Rule]:
    """The FORWARD rules of each era (versions.py, forward_rules): "forward" (v0.9.1, PR #872:
    two rules appended to FORWARD), "forward-comment" (v0.17.0: the same with a comment),
    "chain" (v0.20.0, PR #1650: in FLANNEL-FWD, jumped to from FORWARD)."""
    c = ["-m", "comment", "--comment", "flanneld forward"]
    if style in ("forward", "forward-comment"):
        c = c if style == "forward-comment" else []
        return [("filter", "FORWARD", ["-s", network] + c + ["-j", "ACCEPT"]),
                ("filter", "FORWARD", ["-d", network] + c + ["-j", "ACCEPT"])]
    return [("filter", "FORWARD", c + ["-j", "FLANNEL-FWD"]),
            ("filter", "FLANNEL-FWD", ["-s", network] + c + ["-j", "ACCEPT"]),
            ("filter", "FLANNEL-FWD", ["-d", network] + c + ["-j", "ACCEPT"])]


def masq_rules(network: str, lease_subnet: str, random_fully: bool = True) -> list[Rule]:
    c = ["-m", "comment", "--comment", "flanneld masq"]
    rf = ["--random-fully"] if random_fully else []
    return [("nat", "POSTROUTING", c + ["-j", "FLANNEL-POSTRTG"]),
            ("nat", "FLANNEL-POSTRTG", ["-m", "mark", "--mark", KUBE_PROXY_MARK] + c + ["-j", "RETURN"]),
            ("nat", "FLANNEL-POSTRTG", ["-s", lease_subnet, "-d", network] + c + ["-j", "RETURN"]),
            ("nat", "FLANNEL-POSTRTG", ["-s", network, "-d", lease_subnet] + c + ["-j", "RETURN"]),
            ("nat", "FLANNEL-POSTRTG", ["!", "-s", network, "-d", lease_subnet] + c + ["-j", "RETURN"]),
            ("nat", "FLANNEL-POSTRTG", ["-s", network, "!", "-d", "224.0.0.0/4"] + c + ["-j", "MASQUERADE"] + rf),
            ("nat", "FLANNEL-POSTRTG", ["!", "-s", network, "-d", network] + c + ["-j", "MASQUERADE"] + rf)]


def _iptables(*args: str) -> int:
    return subprocess.run(["iptables", "-w", *args], capture_output=True).returncode


def _listing(table: str) -> set[tuple[str, ...]]:
    """`iptables -t TABLE -S`'s rules as token tuples (chain, spec...), quotes removed."""
    import shlex
    r = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
    out: set[tuple[str, ...]] = set()
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        if line.startswith("-A "):
            try:
                out.add(tuple(shlex.split(line)[1:]))
            except ValueError:
                continue
    return out


class RuleSet:
    """One ordered set of rules, kept in place by a resync thread."""

    def __init__(self, name: str, rules: list[Rule]) -> None:
        self.name, self.rules = name, rules

    def exist(self) -> bool:
        """go-iptables' Exists for every rule. flannel execs `iptables -C` per rule; here one
        `iptables -S` per table lists them all, and only a rule not found in that listing is
        asked about with `-C` (the listing's spelling may differ from ours): the answer is
        the same, with one process per resync instead of one per rule (every 5 s on every
        node, which in a 100-node lab on two cores was a steady load of its own)."""
        listed: dict[str, set[tuple[str, ...]]] = {}
        for t in dict.fromkeys(t for t, _, _ in self.rules):
            listed[t] = _listing(t)
        return all((chain, *spec) in listed[t] or _iptables("-t", t, "-C", chain, *spec) == 0
                   for t, chain, spec in self.rules)

    def bootstrap(self) -> None:
        for t, chain, _ in self.rules:
            if chain.startswith("FLANNEL-"):
                _iptables("-t", t, "-N", chain)  # exists already: fine
        for t, chain, spec in self.rules:  # delete (all copies) then append, keeping the order
            while _iptables("-t", t, "-D", chain, *spec) == 0:
                pass
        for t, chain, spec in self.rules:
            _iptables("-t", t, "-A", chain, *spec)

    def ensure(self) -> None:
        if not self.exist():
            log.info(SRC, "Some iptables rules are missing; deleting and recreating rules")
            self.bootstrap()

    def keep(self, resync_seconds: int) -> None:
        def loop() -> None:
            while True:
                time.sleep(resync_seconds)
                try:
                    self.ensure()
                except Exception as e:
                    log.error(SRC, f"Failed to ensure iptables rules: {e}")
        threading.Thread(target=loop, daemon=True, name=f"iptables-{self.name}").start()


def setup(network: str, lease_subnet: str, forward: bool, masq: bool, resync: int,
          forward_style: str = "chain") -> None:
    """main.go's traffic-manager steps: masquerade rules if asked, forward rules by default."""
    if not shutil.which("iptables"):
        log.error(SRC, "Failed to setup IPTables. iptables binary was not found: "
                       'exec: "iptables": executable file not found in $PATH')
        return
    log.info(SRC, "Starting flannel in iptables mode...")
    sets: list[RuleSet] = []
    if masq:
        log.info(SRC, "Setting up masking rules")
        sets.append(RuleSet("masq", masq_rules(network, lease_subnet)))
    if forward:
        log.info(SRC, "Changing default FORWARD chain policy to ACCEPT")
        sets.append(RuleSet("forward", forward_rules(network, forward_style)))
    for rs in sets:
        rs.bootstrap()
        log.info(SRC, "bootstrap done")
        rs.keep(resync)
