"""`labkit export`: gather what a maintainer asks for in a flannel bug report, from one lab.

Everything is read inside the lab: etcd through the lab's own socket, each node's kernel
state by running ``ip``, ``bridge``, ``iptables-save`` and ``sysctl`` in its namespace
(with an argv, never a shell line), its files from the lab's state folder. Nothing of the
host outside the lab is read, and none of these reads is recorded in the transcript (they
are not typed by anyone). The versions are the lab's own: labkit, the flannel it emulates
(the spec's flavour and whatever version field the spec has), etcd, the kernel, docker's profile.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import os
import shlex
import subprocess
import urllib.parse
from typing import Any

from .. import transcript
from ..docker import containers
from ..etcd import http_request
from ..lab import Lab
from ..node import Node
from .model import FORMAT, VERSION

# The sysctls flannel and docker depend on (flannel's docs: ip_forward; rp_filter and
# proxy_arp change what reaches flannel.1; bridge-nf-call-iptables exists only with
# br_netfilter loaded, `sysctl -e` skips it otherwise).
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.all.rp_filter",
           "net.ipv4.conf.default.rp_filter", "net.ipv4.conf.all.proxy_arp", "net.ipv4.conf.all.send_redirects",
           "net.ipv4.conf.all.accept_redirects", "net.bridge.bridge-nf-call-iptables")
# (bundle field, argv run in the node's namespace)
COMMANDS = (("ip_link", ["ip", "-d", "link", "show"]), ("ip_addr", ["ip", "addr", "show"]),
            ("ip_route", ["ip", "route", "show"]), ("ip_neigh", ["ip", "neigh", "show"]),
            ("bridge_fdb", ["bridge", "fdb", "show"]), ("iptables_save", ["iptables-save"]),
            ("sysctl", ["sysctl", "-e", *SYSCTLS]))
LOG_LINES = 200   # the last lines of each service's log
MARK = "@@labkit-bundle-section"
# One process per node instead of one per command (each costs a namespace entry): a fixed
# script made of the constants above only (shlex.join), nothing from a user or a bundle. stderr
# is dropped: iproute2 warns on it about peer namespaces it cannot name (a passing state).
SCRIPT = "".join(f"echo {MARK} {field}; {shlex.join(argv)} 2>/dev/null; echo {MARK}-rc $?; "
                 for field, argv in COMMANDS)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read(256 * 1024)
    except OSError:
        return None


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def versions(lab: Lab) -> dict[str, str]:
    """labkit, the flannel emulated, etcd, the kernel, docker's profile, iproute2."""
    from .. import __version__ as labkit
    # the release whose behaviour the lab emulates (--flannel-version, or the flavour's alias)
    flannel = getattr(lab.spec, "release", None) or dataclasses.asdict(lab.spec).get("flannel_version") or "?"
    return {"labkit": labkit, "flannel": str(flannel), "flavour": lab.spec.flavour,
            "etcd": _first_line(["etcd", "--version"]), "kernel": os.uname().release,
            "docker": lab.spec.docker_profile, "iproute2": _first_line(["ip", "-V"])}


def etcd_keys(lab: Lab) -> dict[str, Any]:
    """Every key under the lab's prefix, in the v3 and the v2 key spaces, with TTLs."""
    prefix = lab.spec.prefix
    out: dict[str, Any] = {"api": "v2" if lab.spec.etcd_v2 else "v3", "v3": [], "v2": []}   # the release's API
    try:
        client = lab.etcd()
        for value, meta in client.get_prefix(prefix + "/"):
            key = {"key": meta.key.decode(), "value": value.decode(errors="replace"), "ttl": None,
                   "granted_ttl": None}
            if meta.lease_id:
                info = client.get_lease_info(meta.lease_id)
                key["ttl"], key["granted_ttl"] = int(info.TTL), int(info.grantedTTL)
            out["v3"].append(key)
    except Exception as e:  # etcd down: the bundle says so (a bug report may be about that)
        out["error_v3"] = f"{type(e).__name__}: {e}"[:300]

    def walk(node: dict[str, Any]) -> None:
        for n in node.get("nodes", []) or []:
            if n.get("dir"):
                walk(n)
            else:
                out["v2"].append({"key": n["key"], "value": n.get("value", ""), "ttl": n.get("ttl"),
                                  "granted_ttl": None})
    try:
        code, body = http_request(lab.state.etcd_socket, "GET",
                                  "/v2/keys" + urllib.parse.quote(prefix) + "?recursive=true&sorted=true")
        if code == 200:
            walk(body.get("node", {}))
    except OSError as e:
        out["error_v2"] = str(e)[:300]
    for api in ("v3", "v2"):
        out[api].sort(key=lambda k: k["key"])
    return out


def split_sections(out: str) -> dict[str, str]:
    """SCRIPT's output -> {field: the command's output}; a failed command's text says its exit status."""
    got: dict[str, str] = {field: "[not run]" for field, _ in COMMANDS}
    field: str | None = None
    lines: list[str] = []
    for line in out.splitlines(keepends=True):
        if line.startswith(MARK + " "):
            field, lines = line.split()[1], []
        elif line.startswith(MARK + "-rc ") and field is not None:
            rc = line.split()[1]
            got[field] = "".join(lines) if rc == "0" else f"[exit {rc}] " + "".join(lines)[-500:]
            field = None
        elif field is not None:
            lines.append(line)
    return got


def node_state(lab: Lab, node: Node) -> dict[str, Any]:
    """One node: its files, its kernel state (COMMANDS), its units and their logs, its containers."""
    info: dict[str, Any] = {
        "sysconfig": _read(node.dir("etc", "upper", "sysconfig", "flanneld")),
        "flanneld_flags": node.flanneld_argv()[3:],   # after `python -m <module>`
        "subnet_env": _read(node.subnet_file),
        "docker_opts": _read(node.docker_opts_file),
    }
    info.update(split_sections(node.sh(["bash", "-c", SCRIPT], timeout=30).stdout))
    info["units"] = {s: node.service(s).status() for s in node.services()}
    info["logs"] = {s: "".join(node.service(s).log().splitlines(keepends=True)[-LOG_LINES:])
                    for s in node.services()}
    info["containers"] = [{"name": c.name, "ip": c.ip, "running": c.running}
                          for c in containers.list_all(lab.state, node.name)]
    return info


def collect(lab: Lab) -> dict[str, Any]:
    """The bundle document of a running lab (see labkit/bundle/model.py for its shape)."""
    header, entries = transcript.read_all(lab.state)
    initial = (header or {}).get("up")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        nodes = dict(zip([n.name for n in lab.nodes], pool.map(lambda n: node_state(lab, n), lab.nodes)))
    spec = dataclasses.asdict(lab.spec)
    return {
        "format": FORMAT, "version": VERSION, "lab": lab.spec.name,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(lab), "spec": spec, "initial_spec": initial or spec,
        "initial_subnets": (header or {}).get("subnets") or {},
        "etcd": etcd_keys(lab), "nodes": nodes, "transcript": entries,
        "notes": "interactive shells are listed in the transcript, not what was typed in them; "
                 "logs are the last %d lines of each unit" % LOG_LINES,
    }


def export(lab: Lab, path: str | None = None) -> dict[str, Any]:
    """Collect the lab's bundle; with `path`, also write it there (whole, mode 0644). A bad
    path is refused before anything is collected (labkit/outfile.py)."""
    from ..outfile import check_output_path, write_whole
    from .model import dumps
    if path is not None:
        check_output_path(path, "bundle", "report.json")
    data = collect(lab)
    if path is not None:
        write_whole(path, dumps(data), "bundle", "report.json")
    return data


__all__ = ["collect", "export", "versions", "etcd_keys", "node_state"]
