"""flannel releases the lab can be built at, and what changed between them (``--flannel-version``).

A *profile* is the value of every behaviour switch below at one release. The switches are
data: each one lists the eras of one behaviour, each era with the release it starts at and
where flannel's source says so (a file at a tag, ``vX:path``, or the PR that changed it),
read with ``git show vX:path`` / ``git log -S`` in flannel's repository. Two daemons carry
them out: ``labkit.flannel.legacy`` (flannel 0.7.1's design: the releases before 0.9.0) and
``labkit.flannel.daemon`` (0.9.0 on); each consults :func:`active` for the rest. Anything a
switch does not name behaves as that daemon does, so a profile is only as precise as its
switches: ``labkit versions`` prints them, ``docs/versions.md`` is generated from them.

Imports nothing from the rest of labkit (it is read by flanneld itself and by ``spec``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Every final release tag from the one CentOS 7 shipped to the newest in flannel's repository
# (release candidates and k3s tags left out). A version given as X.Y means the newest X.Y.Z.
RELEASES: tuple[str, ...] = (
    "0.7.1", "0.8.0", "0.9.0", "0.9.1", "0.10.0", "0.11.0", "0.12.0", "0.13.0", "0.14.0", "0.14.1",
    "0.15.0", "0.15.1", "0.16.0", "0.16.1", "0.16.2", "0.16.3", "0.17.0", "0.18.0", "0.18.1",
    "0.19.0", "0.19.1", "0.19.2", "0.20.0", "0.20.1", "0.20.2", "0.21.0", "0.21.1", "0.21.2",
    "0.21.3", "0.21.4", "0.21.5", "0.22.0", "0.22.1", "0.22.2", "0.22.3", "0.23.0", "0.24.0",
    "0.24.1", "0.24.2", "0.24.3", "0.24.4", "0.25.0", "0.25.1", "0.25.2", "0.25.3", "0.25.4",
    "0.25.5", "0.25.6", "0.25.7", "0.26.0", "0.26.1", "0.26.2", "0.26.3", "0.26.4", "0.26.5",
    "0.26.6", "0.26.7", "0.27.0", "0.27.1", "0.27.2", "0.27.3", "0.27.4", "0.28.0", "0.28.1",
    "0.28.2", "0.28.3", "0.28.4", "0.28.5", "0.28.6", "0.28.7", "0.28.8", "0.28.9")
LEGACY = "0.7.1"    # --flavour legacy: flannel 0.7.1 as CentOS 7 shipped it (the blog's hosts)
MODERN = "0.28.0"   # --flavour modern: what labkit's flanneld says it is (`flanneld -version`)
ALIASES = {"legacy": LEGACY, "modern": MODERN}
FIRST_PER_PEER = "0.9.0"  # the first release run by the modern daemon (per-peer ARP/FDB/routes)


class VersionError(ValueError):
    """A --flannel-version the lab cannot build; the message is one line."""


def key(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split("."))


def parse(text: object) -> str:
    """A release number as a user writes it (``0.9.1``, ``v0.17.0``, ``0.9`` = the newest 0.9.x,
    ``legacy``, ``modern``) -> the release (``0.9.1``). Anything else: VersionError, one line."""
    where = (f"give a flannel release from {RELEASES[0]} to {RELEASES[-1]} (e.g. 0.9.1, v0.17.0, "
             f"0.9 for the newest 0.9.x), or legacy ({LEGACY}) / modern ({MODERN})")
    if not isinstance(text, str):
        raise VersionError(f"invalid flannel version {text!r}: {where}")
    raw = text.strip()
    if raw.lower() in ALIASES:
        return ALIASES[raw.lower()]
    m = re.fullmatch(r"v?(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})(?:\.(0|[1-9][0-9]{0,2}))?", raw)
    shown = repr(text) if len(text) <= 30 else repr(text[:25] + "...")
    if not m:
        raise VersionError(f"invalid flannel version {shown}: {where}")
    major, minor, patch = m.groups()
    if patch is None:
        line = [r for r in RELEASES if key(r)[:2] == (int(major), int(minor))]
        if line:
            return line[-1]
    elif f"{major}.{minor}.{patch}" in RELEASES:
        return f"{major}.{minor}.{patch}"
    if key(f"{major}.{minor}.{patch or 0}") < key(RELEASES[0]):
        raise VersionError(f"flannel {raw.lstrip('v')} is older than the lab's oldest profile: {where}")
    raise VersionError(f"flannel has no release {raw.lstrip('v')}: {where}")


@dataclass(frozen=True)
class Era:
    since: str       # the first release with this value
    value: str
    what: str        # what flanneld does, one line
    source: str      # where flannel's source says so: vX:path, or the PR


@dataclass(frozen=True)
class Switch:
    name: str
    title: str
    eras: tuple[Era, ...]  # oldest first; the first starts at RELEASES[0]

    def at(self, release: str) -> Era:
        era = self.eras[0]
        for e in self.eras:
            if key(e.since) <= key(release):
                era = e
        return era


SWITCHES: tuple[Switch, ...] = (
    Switch("daemon", "which of labkit's flanneld runs the release", (
        Era("0.7.1", "legacy", "labkit.flannel.legacy: flannel 0.7's main loop and VXLAN design",
            "v0.7.1:network/manager.go, v0.8.0:main.go"),
        Era("0.9.0", "modern", "labkit.flannel.daemon, with this table's switches",
            "PR #785 (backend/vxlan simplified), v0.9.0:main.go"),
    )),
    Switch("etcd_api", "etcd API (how the config is written: etcdctl set / put)", (
        Era("0.7.1", "v2", "etcd v2 keys API: leases are keys with a TTL; `etcdctl set`",
            "v0.7.1:subnet/registry.go, v0.17.0:subnet/etcdv2/registry.go"),
        Era("0.18.0", "v3", "etcd v3 API only: leases bound to etcd leases; `etcdctl put`; a v2 config "
            "is invisible", "PR #1562, v0.18.0:subnet/etcd/registry.go"),
    )),
    Switch("vxlan_peers", "how VXLAN reaches a peer", (
        Era("0.7.1", "l3miss", "app_solicit=3: the kernel asks flanneld for a container address's MAC "
            "(L3 miss), answered on demand; one FDB entry per peer; one route for the whole Network; "
            "a lease whose VtepMAC changed leaves answered entries alone (#533, #1036)",
            "v0.7.1:backend/vxlan/network.go, v0.8.0:backend/vxlan/vxlan_network.go"),
        Era("0.9.0", "per-peer", "one PERMANENT ARP entry, one FDB entry and one onlink route per peer, "
            "replaced at every lease event", "PR #785, v0.9.0:backend/vxlan/vxlan_network.go"),
    )),
    Switch("flannel1_addresses", "an existing flannel.1 with addresses flanneld did not expect", (
        Era("0.7.1", "keep", "kept; the lease's /32 is added beside them (setAddr4, error ignored): "
            "the blog's second problem", "v0.7.1:backend/vxlan/device.go, v0.8.0:backend/vxlan/device.go"),
        Era("0.9.0", "refuse", "more than one IPv4 address: `link has incompatible addresses. Remove "
            "additional addresses and try again.` and flanneld exits; a single other address is replaced",
            "v0.9.0:backend/vxlan/device.go, v0.13.0:pkg/ip/iface.go"),
        Era("0.14.0", "reduce", "addresses inside the Network other than the lease's are removed, the "
            "others left alone", "PR #1401, v0.14.0:pkg/ip/iface.go EnsureV4AddressOnLink"),
    )),
    Switch("forward_rules", "flannel's own FORWARD ACCEPT rules for the Network", (
        Era("0.7.1", "none", "none: docker >= 1.13's FORWARD policy DROP drops pod traffic between "
            "nodes (#603, #834)", "v0.9.0:main.go (no iptables FORWARD rules)"),
        Era("0.9.1", "forward", "-A FORWARD -s/-d <Network> -j ACCEPT, re-checked every 5 s",
            "PR #872, v0.9.1:network/iptables.go ForwardRules"),
        Era("0.17.0", "forward-comment", "the same two rules with -m comment --comment \"flanneld forward\"",
            "v0.17.0:network/iptables.go"),
        Era("0.20.0", "chain", "a FLANNEL-FWD chain holding the two rules, jumped to from FORWARD",
            "PR #1650, v0.20.0:network/iptables.go"),
    )),
    Switch("iptables_bootstrap", "how flanneld puts its iptables rules in place", (
        Era("0.7.1", "commands", "one iptables command per rule deleted and per rule added",
            "v0.18.0:network/iptables.go setupIPTables"),
        Era("0.19.0", "restore", "one iptables-restore --noflush transaction: -D of each rule found, then "
            "-A of all in order", "v0.19.0:network/iptables.go ipTablesBootstrap, network/iptables_restore.go"),
    )),
    Switch("previous_subnet", "the subnet in an old subnet.env (a returning host)", (
        Era("0.7.1", "ignored", "not read back: a lease is reused by PublicIP only",
            "v0.7.1:subnet/local_manager.go"),
        Era("0.8.0", "overwrite", "taken even when another node holds it: `Found lease (...) matching "
            "previously leased subnet, reusing` rewrites that node's lease (#1289)",
            "v0.8.0:subnet/etcdv2/local_manager.go, v0.17.0:subnet/etcdv2/local_manager.go"),
        Era("0.18.0", "if-free", "taken only when no lease holds it", "PR #1505, v0.18.0:subnet/etcd/"
            "local_manager.go"),
    )),
    Switch("lease_json", "the lease's JSON value", (
        Era("0.7.1", "vtepmac", '{"PublicIP":...,"BackendType":"vxlan","BackendData":{"VtepMAC":...}}',
            "v0.7.1:subnet/subnet.go LeaseAttrs, v0.13.0:backend/vxlan/vxlan.go newSubnetAttrs"),
        Era("0.14.0", "vni", 'BackendData {"VNI":...,"VtepMAC":...}', "v0.14.0:backend/vxlan/vxlan.go newSubnetAttrs"),
        Era("0.15.0", "ipv6", '"PublicIPv6":null after PublicIP (no omitempty)', "v0.15.0:subnet/subnet.go LeaseAttrs"),
    )),
    Switch("mac_check", "flannel.1's MAC checked against the VtepMAC advertised", (
        Era("0.7.1", "off", "not checked", "v0.22.2:pkg/backend/vxlan/device.go"),
        Era("0.22.3", "on", "a different MAC after Configure stops flanneld: `flannel.1's mac address "
            "wanted: ..., but got: ...` (#1795)", "PR #1796, v0.22.3:pkg/backend/vxlan/device.go"),
    )),
    Switch("deleted_device", "flannel.1 deleted under a running flanneld", (
        Era("0.7.1", "left", "stays gone until flanneld restarts (which re-creates it with a new MAC)",
            "v0.27.3:pkg/backend/vxlan/vxlan_network.go"),
        Era("0.27.4", "recreated", "a netlink watcher re-creates it (new MAC; the lease keeps the old "
            "VtepMAC until a restart)", "PR #2247, v0.27.4:pkg/backend/vxlan/vxlan_network.go"),
    )),
    Switch("vxlan_local", "flannel.1's VXLAN local address", (
        Era("0.7.1", "iface", "the interface's address (-public-ip only goes into the lease)",
            "v0.27.3:pkg/backend/vxlan/vxlan.go"),
        Era("0.27.4", "public-ip", "the external address (-public-ip when given)",
            "PR #2247, v0.27.4:pkg/backend/vxlan/vxlan.go"),
    )),
    Switch("udp_tun_address", "the address on the udp backend's flannel0 TUN", (
        Era("0.7.1", "network", "the lease's address with the Network's prefix (10.108.5.0/16): a connected "
            "route for the Network", "v0.7.1:backend/udp/network.go configureIface"),
        Era("0.11.0", "/32", "the lease's address as a /32, plus an explicit route for the Network",
            "v0.11.0:backend/udp/udp_network_amd64.go configureIface"),
    )),
    Switch("br_netfilter", "flanneld's check for br_netfilter", (
        Era("0.7.1", "off", "not checked", "v0.25.7:main.go"),
        Era("0.26.0", "on", "flanneld exits when /proc/sys/net/bridge/bridge-nf-call-iptables is "
            "missing", "v0.26.0:main.go"),
    )),
)
SWITCH = {s.name: s for s in SWITCHES}


@dataclass(frozen=True)
class Profile:
    release: str

    def __getitem__(self, name: str) -> str:
        return SWITCH[name].at(self.release).value

    @property
    def legacy_daemon(self) -> bool:
        return self["daemon"] == "legacy"

    @property
    def etcd_v2(self) -> bool:
        return self["etcd_api"] == "v2"

    def values(self) -> dict[str, str]:
        return {s.name: self[s.name] for s in SWITCHES}


def profile(version: object = MODERN) -> Profile:
    return Profile(parse(version))


def profiles() -> list[tuple[str, str, Profile]]:
    """The distinct profiles: (first release, last release, profile), oldest first."""
    out: list[tuple[str, str, Profile]] = []
    for r in RELEASES:
        p = Profile(r)
        if out and out[-1][2].values() == p.values():
            out[-1] = (out[-1][0], r, out[-1][2])
        else:
            out.append((r, r, p))
    return out


# -- the profile flanneld runs with (set once at start from -lab-flannel-version) ------------
_ACTIVE = Profile(MODERN)


def activate(version: object) -> Profile:
    global _ACTIVE
    _ACTIVE = profile(version)
    return _ACTIVE


def active() -> Profile:
    return _ACTIVE


# -- the table, as `labkit versions` prints it and docs/versions.md holds it ------------------
def markdown() -> str:
    """docs/versions.md (generated; tests/unit/test_versions.py fails when the file drifts)."""
    lines = ["# flannel versions in the lab", "",
             "<!-- generated by `labkit versions --markdown` from labkit/flannel/versions.py; "
             "do not edit -->", "",
             f"`labkit up --flannel-version V` takes a release from {RELEASES[0]} to {RELEASES[-1]} "
             f"(`v` prefix optional; `0.9` is the newest 0.9.x; `legacy` = {LEGACY}, `modern` = {MODERN}). "
             "Each release maps to the value of every switch below at that release; a behaviour no switch "
             "names is that of the daemon that runs it (0.7.1's for releases before 0.9.0, labkit's "
             "modern flanneld from 0.9.0).", "",
             "## Switches", "",
             "| switch | from | value | what flanneld does | flannel source |", "|---|---|---|---|---|"]
    for s in SWITCHES:
        for i, e in enumerate(s.eras):
            name = f"`{s.name}`: {s.title}" if i == 0 else ""
            lines.append(f"| {name} | {e.since} | `{e.value}` | {e.what.replace('|', '/')} | {e.source} |")
    lines += ["", "## Profiles", "", "| releases | " + " | ".join(s.name for s in SWITCHES) + " |",
              "|---|" + "---|" * len(SWITCHES)]
    for first, last, p in profiles():
        span = first if first == last else f"{first} - {last}"
        lines.append(f"| {span} | " + " | ".join(p[s.name] for s in SWITCHES) + " |")
    return "\n".join(lines) + "\n"


def text() -> str:
    """`labkit versions`: the profiles, then each switch's eras with their sources."""
    out = [f"flannel releases {RELEASES[0]} .. {RELEASES[-1]} (legacy = {LEGACY}, modern = {MODERN})", "",
           "profiles (releases with the same switches):"]
    for first, last, p in profiles():
        span = first if first == last else f"{first}-{last}"
        out.append(f"  {span:<16} " + " ".join(f"{k}={v}" for k, v in p.values().items()))
    out += ["", "switches:"]
    for s in SWITCHES:
        out.append(f"  {s.name}: {s.title}")
        for e in s.eras:
            out.append(f"    from {e.since:<7} {e.value:<16} {e.what}")
            out.append(f"    {'':<29}[{e.source}]")
    return "\n".join(out)
