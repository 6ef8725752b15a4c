"""What the lab looks like right now, read from etcd and the kernel (never from a cache).

One function per source, so a notebook can show "the etcd lease" next to "the kernel
entries it produced" for the same node.
"""
from __future__ import annotations

import ipaddress
import json

from . import netns
from .flannel.ip import AF_BRIDGE, AF_INET, NUD_PERMANENT, RT_TABLE_MAIN, RTNH_F_ONLINK


def _link_addrs(ipr, ifname: str) -> list[str]:
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        return []
    return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=idx[0])]


def kernel_state(ipr, device: str) -> dict:
    """flannel's footprint in one node: the device, its ARP/FDB entries, the routes."""
    out = {"device": None, "arp": [], "fdb": [], "routes": [], "docker0": _link_addrs(ipr, "docker0")}
    idx = ipr.link_lookup(ifname=device)
    if idx:
        link = ipr.link("get", index=idx[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info else None
        out["device"] = {
            "name": device, "mtu": link.get_attr("IFLA_MTU"), "mac": link.get_attr("IFLA_ADDRESS"),
            "addresses": _link_addrs(ipr, device),
            "vni": data.get_attr("IFLA_VXLAN_ID") if data else None,
            "port": data.get_attr("IFLA_VXLAN_PORT") if data else None,
            "local": data.get_attr("IFLA_VXLAN_LOCAL") if data else None,
            "learning": bool(data.get_attr("IFLA_VXLAN_LEARNING")) if data else None,
        }
        for n in ipr.get_neighbours(family=2, ifindex=idx[0]):
            out["arp"].append({"ip": n.get_attr("NDA_DST"), "mac": n.get_attr("NDA_LLADDR"),
                               "permanent": bool(n["state"] & NUD_PERMANENT)})
        for n in ipr.get_neighbours(family=AF_BRIDGE, ifindex=idx[0]):
            if n.get_attr("NDA_DST"):
                out["fdb"].append({"mac": n.get_attr("NDA_LLADDR"), "dst": n.get_attr("NDA_DST"),
                                   "permanent": bool(n["state"] & NUD_PERMANENT)})
    names = {l["index"]: l.get_attr("IFLA_IFNAME") for l in ipr.get_links()}
    for r in ipr.get_routes(family=AF_INET):
        dst = r.get_attr("RTA_DST")
        if dst is None or r.get_attr("RTA_TABLE") != RT_TABLE_MAIN:
            continue
        out["routes"].append({"dst": f"{dst}/{r['dst_len']}", "via": r.get_attr("RTA_GATEWAY"),
                              "dev": names.get(r.get_attr("RTA_OIF")),
                              "onlink": bool(r["flags"] & RTNH_F_ONLINK)})
    return out


def json_network(config: str | None) -> ipaddress.IPv4Network | None:
    """The Network of a flannel config JSON (any key case, as Go reads it), or None."""
    if not config:
        return None
    from .flannel.config import decode_config
    return decode_config(config).network


def lab_status(lab) -> dict:
    from .docker import containers
    leases = {}
    try:
        for sn, (key, value) in lab.leases().items():
            leases[sn] = {"key": key, **json.loads(value)}
    except Exception as e:  # etcd down: say so, keep showing the kernel
        leases = {"error": str(e)}
    by_ip = {v.get("PublicIP"): (sn, v) for sn, v in leases.items() if isinstance(v, dict)}
    network = ipaddress.IPv4Network(lab.spec.network)
    try:  # "in range" means inside the Network flannel is told about now, in etcd
        network = json_network(lab.network_config()) or network
    except ValueError:
        pass
    nodes = []
    for node in lab.nodes:
        sn, lease = by_ip.get(str(node.public_ip), (None, None))
        data = (lease or {}).get("BackendData") or {}
        vni = data.get("VNI", lab.spec.vni or 1)
        from .flannel.backends.footprint import device_name
        # the backend the node runs is the one its lease says (udp writes no BackendType)
        backend = (lease or {}).get("BackendType") or ("udp" if lease else lab.spec.backend)
        device = device_name(backend, vni) or ""  # host-gw has no device
        kern = netns.netlink.call(node.ns, kernel_state, device)
        docker0 = kern["docker0"][0] if kern["docker0"] else None
        nodes.append({
            "name": node.name, "namespace": node.ns, "public_ip": str(node.public_ip),
            "subnet": sn, "vtep_mac": data.get("VtepMAC"), "lease": lease,
            "docker0": docker0,
            "docker0_in_network": bool(docker0 and ipaddress.IPv4Interface(docker0).ip in network),
            "services": {s: node.service(s).status() for s in node.services()},
            "subnet_env": node.subnet_env(),
            "containers": [{"name": r.name, "ip": r.ip, "running": r.running}
                           for r in containers.list_all(lab.state, node.name)],
            "kernel": kern,
        })
    return {"name": lab.spec.name, "network": str(network), "backend": lab.spec.backend,
            "prefix": lab.spec.prefix, "nodes": nodes}
