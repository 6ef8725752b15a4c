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

How the rules are put in place changed in v0.19.0 (versions.py, ``iptables_bootstrap``):
before, one ``iptables`` command per deletion and per rule; since, flannel builds one
``iptables-restore --noflush`` transaction (``ipTablesBootstrap``): a ``-D`` for each rule
found, then every rule in order, so nothing foreign lands between them. It is also fewer
processes: 2 instead of 7 for the FORWARD rules on each node.
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


def rule_words(line: str) -> list[str]:
    """The words of one `iptables -S` line, as shlex.split reads them (ValueError when it
    cannot). shlex reads a character at a time, and every resync lists every rule of
    docker's and flannel's on every node: here a line is split on whitespace, and on double
    quotes that stand alone around a word (iptables' --comment "..."); anything else
    (backslashes, single quotes, a quote inside a word) still goes to shlex."""
    if "\\" not in line and "'" not in line:
        parts = line.split('"')
        last = len(parts) - 1
        if len(parts) % 2 == 1 and all((parts[i - 1][-1:].isspace() or (i == 1 and not parts[0])) and
                                       (parts[i + 1][:1].isspace() or (i + 1 == last and not parts[last]))
                                       for i in range(1, last, 2)):
            words: list[str] = []
            for i, part in enumerate(parts):
                if i % 2:
                    words.append(part)
                else:
                    words.extend(part.split())
            return words
    import shlex
    return shlex.split(line)


def _listing(table: str) -> set[tuple[str, ...]]:
    """`iptables -t TABLE -S`'s rules as token tuples (chain, spec...), quotes removed, and
    each chain as a 1-tuple (chain,)."""
    r = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
    out: set[tuple[str, ...]] = set()
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        if line.startswith(("-A ", "-N ", "-P ")):
            try:
                words = rule_words(line)
            except ValueError:
                continue
            out.add(tuple(words[1:]) if words[0] == "-A" else (words[1],))
    return out


def _restore_line(words: list[str]) -> str:
    """One iptables-restore line; a comment is quoted, as flannel's payload builder does."""
    return " ".join(f'"{w}"' if i and words[i - 1] == "--comment" else w for i, w in enumerate(words))


class RuleSet:
    """One ordered set of rules, kept in place by a resync thread."""

    def __init__(self, name: str, rules: list[Rule], style: str = "restore") -> None:
        self.name, self.rules, self.style = name, rules, style

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
        if self.style == "restore":
            self._bootstrap_restore()
        else:
            self._bootstrap_commands()

    def _bootstrap_restore(self) -> None:
        """ipTablesBootstrap (v0.19.0+): is each rule there already? Then one transaction
        with a -D for each that is and a -A for all, in order. A rule in (or jumping to) a
        FLANNEL- chain that does not exist yet cannot exist: that chain is declared in the
        transaction instead (flannel creates it first with ClearChain)."""
        listed = {t: _listing(t) for t in dict.fromkeys(t for t, _, _ in self.rules)}
        payload: dict[str, list[str]] = {}
        new: set[tuple[str, str]] = set()  # chains this transaction creates
        for t, chain, spec in self.rules:
            lines = payload.setdefault(t, [])
            ours = [c for c in dict.fromkeys((chain, spec[-1])) if c.startswith("FLANNEL-")]
            for c in ours:
                if (c,) not in listed[t] and (t, c) not in new:
                    lines.insert(0, f":{c} - [0:0]")
                    new.add((t, c))
            fresh = any((t, c) in new for c in ours)  # in or to a chain created just now: not there yet
            if not fresh and ((chain, *spec) in listed[t] or _iptables("-t", t, "-C", chain, *spec) == 0):
                lines.append(_restore_line(["-D", chain, *spec]))
            lines.append(_restore_line(["-A", chain, *spec]))
        text = "".join(f"*{t}\n" + "".join(f"{x}\n" for x in lines) + "COMMIT\n" for t, lines in payload.items())
        r = subprocess.run(["iptables-restore", "--noflush", "--wait"], input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"failed to apply partial iptables-restore unable to run iptables-restore "
                               f"({r.stdout.strip()}, {r.stderr.strip()}): exit status {r.returncode}")

    def _bootstrap_commands(self) -> None:
        """Before v0.19.0: one iptables command per deletion and per rule."""
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
          forward_style: str = "chain", bootstrap_style: str = "restore") -> None:
    """main.go's traffic-manager steps: masquerade rules if asked, forward rules by default."""
    for tool in ("iptables", "iptables-restore") if bootstrap_style == "restore" else ("iptables",):
        if not shutil.which(tool):
            log.error(SRC, f"Failed to setup IPTables. {tool} binary was not found: "
                           f'exec: "{tool}": executable file not found in $PATH')
            return
    log.info(SRC, "Starting flannel in iptables mode...")
    sets: list[RuleSet] = []
    if masq:
        log.info(SRC, "Setting up masking rules")
        sets.append(RuleSet("masq", masq_rules(network, lease_subnet), bootstrap_style))
    if forward:
        log.info(SRC, "Changing default FORWARD chain policy to ACCEPT")
        sets.append(RuleSet("forward", forward_rules(network, forward_style), bootstrap_style))
    for rs in sets:
        try:
            rs.bootstrap()
            log.info(SRC, "bootstrap done")
        except RuntimeError as e:
            log.error(SRC, f"Failed to bootstrap IPTables: {e}")
        rs.keep(resync)
