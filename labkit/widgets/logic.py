"""What the widgets compute and do, as plain functions (no ipywidgets here).

Everything a panel shows comes from one of these, so it is tested without a browser:
the live checks of the config form (flannel's own error text), the backend list with
the reason a backend is unavailable, the steps of Apply, and the tables (result, lab
view, connectivity matrix) as rows and as HTML.
"""
from __future__ import annotations

import dataclasses
import html
import ipaddress
import json
from dataclasses import dataclass, field

from ..errors import LabError
from ..flannel.backends import catalogue

RESULT_HEADER = ["node", "public IP", "subnet", "VtepMAC", "docker0", "in range"]
OK, BAD = "✓", "✗"
MAX_PANEL_NODES = 8


# -- the config form ---------------------------------------------------------------------------
def backend_choices() -> list[tuple[str, bool, str]]:
    """Every backend flannel knows: (name, usable in this lab, why not); see the catalogue."""
    return [tuple(c) for c in catalogue.backend_choices()]


@dataclass
class FormCheck:
    """The result of checking the form: per-field errors, the config, what flannel derives."""
    errors: dict = field(default_factory=dict)      # field -> message
    config: dict | None = None
    config_json: str = ""
    subnet_len_bounds: tuple | None = None          # (min, max) SubnetLen for this Network
    effective_subnet_len: int | None = None         # what flannel will use (default filled in)
    subnets: int | None = None                      # how many subnets SubnetMin..SubnetMax hold
    warnings: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def make_spec(lab_spec, *, network: str, subnet_len: int | None, backend: str, vni: int | None,
              port: int | None, direct_routing: bool, nodes: int):
    """The lab's spec with the form's values (None/0 SubnetLen, VNI, Port = flannel's default)."""
    if not vni or (vni == 1 and lab_spec.vni is None):
        vni = None                      # flannel's default VNI 1: not written to the config
    return dataclasses.replace(
        lab_spec, network=network, subnet_len=subnet_len or None, backend=backend, vni=vni,
        port=port or None, direct_routing=bool(direct_routing), nodes=nodes)


def check_form(lab_spec, *, network: str, subnet_len: int | None, backend: str, vni: int | None,
               port: int | None, direct_routing: bool, nodes: int) -> FormCheck:
    """Check the form as the user types: flannel's messages, field by field."""
    from ..flannel.config import ConfigError, parse_config, subnet_len_bounds, validate_network_cidr
    res = FormCheck()
    net = None
    try:
        net = validate_network_cidr(network)
        res.subnet_len_bounds = subnet_len_bounds(net)
    except ConfigError as e:
        res.errors["network"] = str(e)
    choices = {name: (ok, why) for name, ok, why in backend_choices()}
    if backend not in choices:
        from ..flannel.config import unknown_backend_message
        res.errors["backend"] = unknown_backend_message(backend)
    elif not choices[backend][0]:
        res.errors["backend"] = choices[backend][1]
    spec = make_spec(lab_spec, network=network, subnet_len=subnet_len, backend=backend, vni=vni,
                     port=port, direct_routing=direct_routing, nodes=nodes)
    res.config = spec.network_config()
    res.config_json = spec.network_config_json()
    if net is not None:
        try:
            cfg = parse_config(res.config_json)
            res.effective_subnet_len = cfg.subnet_len
            size = 1 << (32 - cfg.subnet_len)
            res.subnets = (int(cfg.subnet_max) - int(cfg.subnet_min)) // size + 1
        except ConfigError as e:
            res.errors["subnet_len" if subnet_len else "network"] = str(e)
    if not res.errors:
        try:
            spec.validate()
        except LabError as e:
            msg = str(e)
            key = ("vni" if "VNI" in msg else "port" if msg.startswith("port") else
                   "backend" if msg.startswith(("backend", "unknown backend")) else
                   "nodes" if "nodes" in msg else "network")
            res.errors[key] = msg
    if res.subnets is not None and nodes > res.subnets and not res.errors:
        res.errors["nodes"] = (f"{nodes} nodes but this Network has {res.subnets} subnet(s) "
                               f"(the first one is never used): flanneld on the extra node exits "
                               f"with 'failed to acquire lease: out of subnets'")
    return res


def etcdctl_command(prefix: str, config_json: str) -> str:
    """What a user types on the master to do what Apply does first."""
    return f"etcdctl put {prefix}/config '{config_json}'"


# -- Apply ---------------------------------------------------------------------------------------
def apply_plan(lab, new_spec) -> list[str]:
    """The steps Apply will take, in order (shown in the progress bar)."""
    if new_spec.nodes != lab.spec.nodes:
        return [f"remove lab {lab.spec.name} ({lab.spec.nodes} nodes)",
                f"build lab {new_spec.name} with {new_spec.nodes} nodes and the new config"]
    steps = [etcdctl_command(new_spec.prefix, new_spec.network_config_json())]
    switching = new_spec.backend != lab.spec.backend
    for node in lab.nodes:
        steps += [f"{node.name}: restart flanneld" +
                  (f" (removing what {lab.spec.backend} left behind, like `ip link del flannel.1`)"
                   if switching else ""),
                  f"{node.name}: restart docker"]
    steps += ["containers: start again the ones docker stopped", "wait for routes to every peer"]
    return steps



def adopt_spec(lab, spec) -> None:
    """Make the running lab describe itself with `spec` (its spec.json too), so status and
    `in range` judge against the config now in etcd."""
    lab.spec = spec
    for node in lab.nodes:
        node.spec = spec
    lab.state.create(spec)


def apply_config(lab, new_spec, progress=None):
    """Write the config to etcd, then restart flanneld and then docker on every node.

    This is the blog's sequence (etcdctl, then ``systemctl restart flanneld docker`` on
    each node), done node by node as an admin would. Containers that docker's restart
    stopped are started again (they get addresses in the new docker0). When the node
    count changes, the lab is rebuilt instead. `progress(done, total, text)` is called
    before each step. Returns the lab's status afterwards.
    """
    from ..docker import containers as ctr
    new_spec.validate()
    steps = apply_plan(lab, new_spec)
    say = progress or (lambda done, total, text: None)
    if new_spec.nodes != lab.spec.nodes:
        say(0, len(steps), steps[0])
        lab.down()
        progress_fn = lab.progress
        lab.__init__(new_spec, progress=progress_fn)   # the same object: the notebook's `lab` stays valid
        say(1, len(steps), steps[1])
        lab.up()
        say(len(steps), len(steps), "done")
        return lab.status()
    i = 0
    say(i, len(steps), steps[i])
    running = {n.name: [r.name for r in ctr.list_all(lab.state, n.name) if r.running]
               for n in lab.nodes}
    switching, old_network = new_spec.backend != lab.spec.backend, lab.spec.network
    adopt_spec(lab, new_spec)
    lab.write_config()
    for node in lab.nodes:
        i += 1
        say(i, len(steps), steps[i])
        node.service("flanneld").stop()
        if switching:  # flanneld never removes another backend's device and routes
            from .. import netns
            from ..flannel.backends.footprint import remove_leftovers
            netns.netlink.call(node.ns, remove_leftovers, old_network)
        lab.start_flanneld([node])
        i += 1
        say(i, len(steps), steps[i])
        node.service("docker").stop()
        lab.start_docker([node])
    i += 1
    say(i, len(steps), steps[i])
    for node in lab.nodes:
        for name in running[node.name]:
            ctr.start(lab.state, node.name, name)  # `docker start`: docker's restart stopped it
    i += 1
    say(i, len(steps), steps[i])
    lab.wait_converged()
    say(len(steps), len(steps), "done")
    return lab.status()


# -- tables -----------------------------------------------------------------------------------------
def docker0_ok(node: dict, network: str | None = None) -> bool:
    """docker0 is right when its address lies in the node's own leased subnet, and that
    in the configured Network: that is where flannel routes the node's containers."""
    if not node.get("docker0"):
        return False
    ip = ipaddress.IPv4Interface(node["docker0"]).ip
    if network is not None:
        try:
            if ip not in ipaddress.IPv4Network(network, strict=False):
                return False
        except ValueError:
            pass
    elif not node.get("docker0_in_network", True):
        return False
    if node.get("subnet"):
        return ip in ipaddress.IPv4Network(node["subnet"])
    return False


def result_rows(status: dict, network: str | None = None) -> list[list[str]]:
    """node, public IP, subnet, VtepMAC, docker0, in range (✓ when docker0 is in the
    node's subnet and in `network`, by default the lab's), from lab.status()."""
    rows = []
    for n in status["nodes"]:
        rows.append([n["name"], n["public_ip"], n["subnet"] or "-", n["vtep_mac"] or "-",
                     n["docker0"] or "-", OK if docker0_ok(n, network) else BAD])
    return rows


def html_table(header, rows, css: str = "labkit-table", cell_style=None) -> str:
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(str(h))}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            style = cell_style(j, c) if cell_style else ""
            cells.append(f"<td style='padding:2px 8px;{style}'>{html.escape(str(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='{css}'><tr>{head}</tr>{''.join(body)}</table>"


def result_html(status: dict) -> str:
    def style(j, c):
        if c == OK:
            return "color:#1a7f37;font-weight:bold"
        if c == BAD:
            return "color:#cf222e;font-weight:bold"
        return ""
    return html_table(RESULT_HEADER, result_rows(status), css="labkit-result", cell_style=style)


# -- the lab view: each lease beside the kernel entries it produced --------------------------------
def lab_view(status: dict) -> list[dict]:
    """Per node: its lease, and for every peer's lease the ARP, FDB and route entries
    flannel should have made from it, each marked present or missing in the kernel."""
    leases = []
    for n in status["nodes"]:
        if n.get("lease"):
            leases.append({"node": n["name"], "subnet": n["subnet"], "public_ip": n["public_ip"],
                           "vtep_mac": n["vtep_mac"], "key": n["lease"].get("key")})
    out = []
    for n in status["nodes"]:
        k = n["kernel"]
        dev = (k.get("device") or {}).get("name", "flannel.1")
        arp = {(a["ip"], (a["mac"] or "").lower()) for a in k["arp"]}
        fdb = {((f["mac"] or "").lower(), f["dst"]) for f in k["fdb"]}
        routes = {(r["dst"], r["via"], r["dev"]) for r in k["routes"]}
        peers = []
        for lease in leases:
            if lease["node"] == n["name"]:
                continue
            sn = ipaddress.IPv4Network(lease["subnet"])
            gw = str(sn.network_address)
            mac = (lease["vtep_mac"] or "").lower()
            peers.append({
                "peer": lease["node"], "lease": lease["key"], "subnet": lease["subnet"],
                "arp": f"{gw} lladdr {mac} PERMANENT", "arp_ok": (gw, mac) in arp,
                "fdb": f"{mac} dst {lease['public_ip']} self permanent",
                "fdb_ok": (mac, lease["public_ip"]) in fdb,
                "route": f"{lease['subnet']} via {gw} dev {dev} onlink",
                "route_ok": (lease["subnet"], gw, dev) in routes,
            })
        out.append({"node": n["name"], "subnet": n["subnet"], "public_ip": n["public_ip"],
                    "vtep_mac": n["vtep_mac"], "key": (n.get("lease") or {}).get("key"),
                    "device": k.get("device"), "peers": peers})
    return out


def lab_view_text(view: list[dict], node: str | None = None) -> str:
    lines = []
    for n in view:
        if node is not None and n["node"] != node:
            continue
        d = n["device"]
        lines.append(f"{n['node']}  lease {n['key'] or '-'}  PublicIP {n['public_ip']}  VtepMAC {n['vtep_mac'] or '-'}")
        if d:
            lines.append(f"  {d['name']}: mtu {d['mtu']}, vni {d['vni']}, port {d['port']}, "
                         f"local {d['local']}, addresses {', '.join(d['addresses']) or '-'}")
        else:
            lines.append("  no flannel device")
        for p in n["peers"]:
            lines.append(f"  from {p['peer']}'s lease {p['lease']}:")
            lines.append(f"    {OK if p['arp_ok'] else BAD} ARP    {p['arp']}")
            lines.append(f"    {OK if p['fdb_ok'] else BAD} FDB    {p['fdb']}")
            lines.append(f"    {OK if p['route_ok'] else BAD} route  {p['route']}")
    return "\n".join(lines)


def lab_view_html(view: list[dict]) -> str:
    parts = []
    for n in view:
        d = n["device"]
        dev = (f"{html.escape(d['name'])}: mtu {d['mtu']}, vni {d['vni']}, port {d['port']}, local {d['local']}, "
               f"addresses {html.escape(', '.join(d['addresses']) or '-')}") if d else "no flannel device"
        rows = []
        for p in n["peers"]:
            rows.append([p["peer"], p["lease"], f"{OK if p['arp_ok'] else BAD} {p['arp']}",
                         f"{OK if p['fdb_ok'] else BAD} {p['fdb']}",
                         f"{OK if p['route_ok'] else BAD} {p['route']}"])
        parts.append(
            f"<div style='margin-bottom:8px'><b>{html.escape(n['node'])}</b> lease "
            f"<code>{html.escape(n['key'] or '-')}</code> PublicIP {html.escape(n['public_ip'])} "
            f"VtepMAC <code>{html.escape(n['vtep_mac'] or '-')}</code><br>{dev}"
            + (html_table(["peer", "etcd lease", "1. ARP (flannel.1)", "2. FDB (flannel.1)", "3. route"],
                          rows, css="labkit-labview") if rows else "<br><i>no peers</i>")
            + "</div>")
    return "".join(parts)


# -- the connectivity matrix ---------------------------------------------------------------------------
def matrix_rows(result: dict, endpoints: list[str]) -> list[list[str]]:
    rows = []
    for s in endpoints:
        rows.append([s] + ["-" if s == d else ("ok" if result.get((s, d)) else "FAIL") for d in endpoints])
    return rows


def matrix_text(result: dict, endpoints: list[str]) -> str:
    rows = [["from \\ to"] + endpoints] + matrix_rows(result, endpoints)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    good = sum(1 for v in result.values() if v)
    lines.append(f"{good} of {len(result)} pairs reachable")
    return "\n".join(lines)


def matrix_html(result: dict, endpoints: list[str]) -> str:
    colours = {"ok": "#2da44e", "FAIL": "#cf222e", "-": "#d0d7de"}
    head = "".join(f"<th style='padding:2px 6px'>{html.escape(e)}</th>" for e in endpoints)
    body = []
    for row in matrix_rows(result, endpoints):
        cells = "".join(f"<td title='{html.escape(row[0])} → {html.escape(endpoints[j])}' "
                        f"style='background:{colours[c]};color:white;text-align:center;"
                        f"width:70px;padding:4px'>{c}</td>" for j, c in enumerate(row[1:]))
        body.append(f"<tr><th style='text-align:right;padding:2px 6px'>{html.escape(row[0])}</th>{cells}</tr>")
    good = sum(1 for v in result.values() if v)
    return (f"<table class='labkit-matrix'><tr><th>from \\ to</th>{head}</tr>{''.join(body)}</table>"
            f"<div>{good} of {len(result)} pairs reachable</div>")


def config_summary(spec) -> str:
    return json.dumps(spec.network_config(), separators=(",", ":"))
