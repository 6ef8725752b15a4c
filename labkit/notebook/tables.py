"""Tables for the notebooks, as text and as HTML: the bottom floor of labkit.notebook.

Everything here is a pure function of data a Lab returns (``lab.status()``, the
connectivity matrix), so it is tested without a lab or a browser, and nothing here
imports the rest of the notebook layer.
"""
from __future__ import annotations

import html
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..spec import LabSpec
    from ..status import LabStatus

RESULT_HEADER = ["node", "public IP", "subnet", "VtepMAC", "docker0", "in range"]
OK, BAD, UNKNOWN = "✓", "✗", "?"


class Table:
    """Rows shown as an aligned text table (text/plain) and an HTML table (text/html)."""

    def __init__(self, header: Iterable[object], rows: Iterable[Iterable[object]], title: str | None = None,
                 css: str = "labkit-table") -> None:
        self.header = [str(h) for h in header]
        self.rows = [[("" if c is None else str(c)) for c in r] for r in rows]
        self.title = title
        self.css = css

    def text(self) -> str:
        allrows = [self.header] + self.rows
        widths = [max(len(r[i]) for r in allrows) for i in range(len(self.header))]
        lines = [self.title] if self.title else []
        for r in allrows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.rows)
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        return f"{title}<table class='{self.css}'><tr>{head}</tr>{body}</table>"


def html_table(header: Iterable[object], rows: Iterable[Sequence[object]], css: str = "labkit-table",
               cell_style: Callable[[int, object], str] | None = None) -> str:
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(str(h))}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            style = cell_style(j, c) if cell_style else ""
            cells.append(f"<td style='padding:2px 8px;{style}'>{html.escape(str(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='{css}'><tr>{head}</tr>{''.join(body)}</table>"


def mark(ok: bool | None) -> str:
    return UNKNOWN if ok is None else OK if ok else BAD


# -- the result table: one row per node -----------------------------------------------------------
def result_rows(status: LabStatus) -> list[list[str]]:
    """node, public IP, subnet, VtepMAC, docker0, in range (✓ when docker0 is in the node's
    own lease and in the Network in etcd; ? when etcd cannot be read), from lab.status()."""
    return [[n.name, n.public_ip, n.subnet or "-", n.vtep_mac or "-", n.docker0 or "-", mark(n.in_range)]
            for n in status.nodes]


def result_html(status: LabStatus) -> str:
    def style(j: int, c: object) -> str:
        if c == OK:
            return "color:#1a7f37;font-weight:bold"
        if c == BAD:
            return "color:#cf222e;font-weight:bold"
        return ""
    table = html_table(RESULT_HEADER, result_rows(status), css="labkit-result", cell_style=style)
    if status.etcd_error:
        table = f"<div class='labkit-error' style='color:#cf222e'>{html.escape(status.etcd_error)}</div>" + table
    return table


def result_table(status: LabStatus, title: str) -> Table:
    if status.etcd_error:
        title += f"\nWARNING: {status.etcd_error}: leases unknown, 'in range' cannot be judged"
    return Table(RESULT_HEADER, result_rows(status), title=title)


# -- the lab view: each lease beside the kernel entries it produced --------------------------------
def lab_view(status: LabStatus) -> list[dict[str, Any]]:
    """Per node: its lease, and for every peer's lease the ARP, FDB and route entries
    flannel should have made from it, each marked present or missing in the kernel."""
    leases = []
    for n in status.nodes:
        if n.lease:
            leases.append({"node": n.name, "subnet": n.subnet, "public_ip": n.public_ip,
                           "vtep_mac": n.vtep_mac, "key": n.lease.get("key")})
    out = []
    for n in status.nodes:
        k = n.kernel
        dev = (k.get("device") or {}).get("name", "flannel.1")
        arp = {(a["ip"], (a["mac"] or "").lower()) for a in k["arp"]}
        fdb = {((f["mac"] or "").lower(), f["dst"]) for f in k["fdb"]}
        routes = {(r["dst"], r["via"], r["dev"]) for r in k["routes"]}
        peers = []
        for lease in leases:
            if lease["node"] == n.name:
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
        out.append({"node": n.name, "subnet": n.subnet, "public_ip": n.public_ip,
                    "vtep_mac": n.vtep_mac, "key": (n.lease or {}).get("key"),
                    "device": k.get("device"), "peers": peers})
    return out
def lab_view_text(view: list[dict[str, Any]], node: str | None = None) -> str:
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


def lab_view_html(view: list[dict[str, Any]]) -> str:
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
def matrix_rows(result: dict[tuple[str, str], bool], endpoints: list[str]) -> list[list[str]]:
    rows = []
    for s in endpoints:
        rows.append([s] + ["-" if s == d else ("ok" if result.get((s, d)) else "FAIL") for d in endpoints])
    return rows


def matrix_text(result: dict[tuple[str, str], bool], endpoints: list[str]) -> str:
    rows = [["from \\ to"] + endpoints] + matrix_rows(result, endpoints)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    good = sum(1 for v in result.values() if v)
    lines.append(f"{good} of {len(result)} pairs reachable")
    return "\n".join(lines)


def matrix_html(result: dict[tuple[str, str], bool], endpoints: list[str]) -> str:
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


def config_summary(spec: LabSpec) -> str:

    return json.dumps(spec.network_config(), separators=(",", ":"))
