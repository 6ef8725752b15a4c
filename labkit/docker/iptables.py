"""What dockerd does to its host's netfilter and ip_forward at start, per docker version.

Run by ``labkit.docker.daemon`` inside its node's namespace (the commands are plain argv
lists; nothing here reaches the host's tables). At every start dockerd

* turns ``net.ipv4.ip_forward`` on (``--ip-forward=true`` is docker's default);
* creates its chains and the FORWARD rules for docker0, as ``iptables -S`` showed them:
  docker 1.12/1.13 ``DOCKER`` and ``DOCKER-ISOLATION``; current docker (17.06+ and 18.x
  chain names, as 24.0 has them) ``DOCKER-USER`` and ``DOCKER-ISOLATION-STAGE-1/2``;
* with ``--ip-masq=true`` (docker's default; mk-docker-opts.sh writes it unless flanneld
  masquerades itself) adds ``-t nat POSTROUTING -s <bip subnet> ! -o docker0 -j MASQUERADE``.
  A rule for an older docker0 subnet goes (docker removes the old default bridge network);
* from 1.13 sets the FORWARD policy to DROP. Docker 1.13 did it at every start (what
  broke flannel < 0.9.1 hosts: flannel #603, #834); later versions only when dockerd had
  to turn ip_forward on itself (moby's iptables documentation, "iptables for a new Daemon").
"""
from __future__ import annotations

import ipaddress
import re
import subprocess

Rule = tuple[str, str, list[str]]   # (table, chain, rule spec)

_LEGACY_FILTER = [
    ("filter", "FORWARD", ["-j", "DOCKER-ISOLATION"]),
    ("filter", "FORWARD", ["-o", "docker0", "-j", "DOCKER"]),
    ("filter", "FORWARD", ["-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
    ("filter", "FORWARD", ["-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"]),
    ("filter", "FORWARD", ["-i", "docker0", "-o", "docker0", "-j", "ACCEPT"]),
    ("filter", "DOCKER-ISOLATION", ["-j", "RETURN"]),
]
_MODERN_FILTER = [
    ("filter", "FORWARD", ["-j", "DOCKER-USER"]),
    ("filter", "FORWARD", ["-j", "DOCKER-ISOLATION-STAGE-1"]),
    ("filter", "FORWARD", ["-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
    ("filter", "FORWARD", ["-o", "docker0", "-j", "DOCKER"]),
    ("filter", "FORWARD", ["-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"]),
    ("filter", "FORWARD", ["-i", "docker0", "-o", "docker0", "-j", "ACCEPT"]),
    ("filter", "DOCKER-ISOLATION-STAGE-1", ["-i", "docker0", "!", "-o", "docker0", "-j", "DOCKER-ISOLATION-STAGE-2"]),
    ("filter", "DOCKER-ISOLATION-STAGE-1", ["-j", "RETURN"]),
    ("filter", "DOCKER-ISOLATION-STAGE-2", ["-o", "docker0", "-j", "DROP"]),
    ("filter", "DOCKER-ISOLATION-STAGE-2", ["-j", "RETURN"]),
    ("filter", "DOCKER-USER", ["-j", "RETURN"]),
]
_NAT = [
    ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
    ("nat", "OUTPUT", ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
    ("nat", "DOCKER", ["-i", "docker0", "-j", "RETURN"]),
]
CHAINS = {
    "legacy": [("filter", "DOCKER"), ("filter", "DOCKER-ISOLATION"), ("nat", "DOCKER")],
    "modern": [("filter", "DOCKER"), ("filter", "DOCKER-ISOLATION-STAGE-1"), ("filter", "DOCKER-ISOLATION-STAGE-2"),
               ("filter", "DOCKER-USER"), ("nat", "DOCKER")],
}
MASQ_RE = re.compile(r"^-A POSTROUTING -s (\S+) ! -o docker0 -j MASQUERADE$")


def generation(profile: str) -> str:
    """'legacy' chain names (1.12, 1.13) or 'modern' ones (17.06 on)."""
    return "legacy" if profile in ("1.12", "1.13") else "modern"


def rules(profile: str, bip: ipaddress.IPv4Interface, ip_masq: bool) -> list[Rule]:
    """Docker's rules for this profile, in the order `iptables -S` lists them."""
    out = list(_LEGACY_FILTER if generation(profile) == "legacy" else _MODERN_FILTER) + list(_NAT)
    if ip_masq:
        out.append(masq_rule(bip))
    return out


def masq_rule(bip: ipaddress.IPv4Interface) -> Rule:
    return ("nat", "POSTROUTING", ["-s", str(bip.network), "!", "-o", "docker0", "-j", "MASQUERADE"])


def forward_policy_drop(profile: str, forward_was_on: bool) -> bool:
    """Does this docker set FORWARD's policy to DROP at this start?"""
    if profile == "1.12":
        return False
    if profile == "1.13":
        return True
    return not forward_was_on


def _iptables(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def plan(saved: str, profile: str, bip: ipaddress.IPv4Interface, ip_masq: bool,
         forward_was_on: bool) -> tuple[str, list[str]]:
    """From `iptables-save` text: the `iptables-restore --noflush` input that does what
    `apply_each` does command by command, and the log lines. Pure.

    The chains that are missing are declared (a declared chain that exists would be
    flushed); a rule already listed in `saved` is skipped (docker's -C); FORWARD rules are
    inserted at their position from the top, the others appended; old MASQUERADE rules of
    docker0 are deleted; FORWARD's policy is set with the builtin chain's header line."""
    tables: dict[str, tuple[set[str], set[str]]] = {"filter": (set(), set()), "nat": (set(), set())}
    table = None
    for line in saved.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif table in tables and line.startswith(":"):
            tables[table][0].add(line[1:].split()[0])
        elif table in tables and line.startswith("-A "):
            tables[table][1].add(line)
    out: dict[str, list[str]] = {"filter": [], "nat": []}
    for t, chain in CHAINS[generation(profile)]:
        if chain not in tables[t][0]:
            out[t].append(f":{chain} - [0:0]")
    forward_pos = 0
    for t, chain, spec in rules(profile, bip, ip_masq):
        if chain == "FORWARD":
            forward_pos += 1
        if f"-A {chain} {' '.join(spec)}" in tables[t][1]:
            continue
        out[t].append(f"-I FORWARD {forward_pos} {' '.join(spec)}" if chain == "FORWARD"
                      else f"-A {chain} {' '.join(spec)}")
    done = []
    want = str(bip.network) if ip_masq else None
    for line in sorted(tables["nat"][1]):
        m = MASQ_RE.match(line)
        if m and m.group(1) != want:
            out["nat"].append(f"-D POSTROUTING -s {m.group(1)} ! -o docker0 -j MASQUERADE")
            done.append(f"removed MASQUERADE for {m.group(1)}")
    if ip_masq:
        done.append(f"MASQUERADE for {bip.network} ! -o docker0")
    if forward_policy_drop(profile, forward_was_on):
        out["filter"].insert(0, ":FORWARD DROP [0:0]")
        done.append("FORWARD policy DROP")
    text = "".join(f"*{t}\n" + "".join(x + "\n" for x in lines) + "COMMIT\n" for t, lines in out.items() if lines)
    return text, done


def apply(profile: str, bip: ipaddress.IPv4Interface, ip_masq: bool, forward_was_on: bool) -> list[str]:
    """Program this namespace's netfilter as dockerd does; returns what it did, for the log.

    Two processes (`iptables-save`, then one `iptables-restore --noflush`) instead of one
    `iptables` per check and rule, about forty: the same rules in the same order. When
    either fails, the rules go in one command at a time (`apply_each`)."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True)
    if saved.returncode == 0:
        text, done = plan(saved.stdout, profile, bip, ip_masq, forward_was_on)
        if not text:
            return done
        r = subprocess.run(["iptables-restore", "-w", "--noflush"], input=text, capture_output=True, text=True)
        if r.returncode == 0:
            return done
    return apply_each(profile, bip, ip_masq, forward_was_on)


def apply_each(profile: str, bip: ipaddress.IPv4Interface, ip_masq: bool, forward_was_on: bool) -> list[str]:
    """`apply`, one iptables command at a time, as dockerd runs them.

    Docker checks each rule (-C) and adds only the missing ones, so a restart adds no
    copies; FORWARD rules are inserted at the top (before rules of others, e.g. flannel's)."""
    done = []
    for table, chain in CHAINS[generation(profile)]:
        _iptables("-t", table, "-N", chain)   # exists already: fine
    forward_pos = 0
    for table, chain, spec in rules(profile, bip, ip_masq):
        if chain == "FORWARD":
            forward_pos += 1
        if _iptables("-t", table, "-C", chain, *spec).returncode == 0:
            continue
        if chain == "FORWARD":
            _iptables("-t", table, "-I", chain, str(forward_pos), *spec)
        else:
            _iptables("-t", table, "-A", chain, *spec)
    # docker0's old subnets (and the current one when --ip-masq=false) lose their MASQUERADE
    want = masq_rule(bip)[2] if ip_masq else None
    listing = _iptables("-t", "nat", "-S", "POSTROUTING").stdout
    for line in listing.splitlines():
        m = MASQ_RE.match(line.strip())
        if m and (want is None or m.group(1) != str(bip.network)):
            _iptables("-t", "nat", "-D", "POSTROUTING", "-s", m.group(1), "!", "-o", "docker0", "-j", "MASQUERADE")
            done.append(f"removed MASQUERADE for {m.group(1)}")
    if ip_masq:
        done.append(f"MASQUERADE for {bip.network} ! -o docker0")
    if forward_policy_drop(profile, forward_was_on):
        _iptables("-P", "FORWARD", "DROP")
        done.append("FORWARD policy DROP")
    return done
