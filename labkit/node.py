"""Node: one "host" of the cluster: a namespace, its own /run/flannel, its services.

A node's services are what systemd would run on a flannel host: ``flanneld`` and
``docker`` on every node, ``etcd`` on the master. A command run "on the node"
(:meth:`Node.sh`) sees the node's network and the node's /run/flannel, so
``cat /run/flannel/subnet.env`` shows that node's file, as on a real machine.
"""
from __future__ import annotations

import ipaddress
import os
import sys

from . import netns
from .etcd import CLIENT_PORT, etcd_argv
from .services import Service
from .spec import LabSpec
from .state import LabState

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_NAMES = ("flanneld", "docker")


class Node:
    def __init__(self, state: LabState, spec: LabSpec, index: int):
        self.state = state
        self.spec = spec
        self.index = index
        self.name = spec.node_names[index]
        self.ns = state.netns(self.name)
        self.public_ip = spec.public_ip(index)
        self.master_ip = spec.public_ip(0)

    def __repr__(self):
        return f"<Node {self.name} {self.public_ip}>"

    @property
    def is_master(self) -> bool:
        return self.index == 0

    def dir(self, *parts: str) -> str:
        return self.state.node_dir(self.name, *parts)

    @property
    def address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.public_ip}/{self.spec.underlay_net().prefixlen}")

    # -- the node's view of the world ---------------------------------------------------
    @property
    def binds(self) -> list[tuple[str, str]]:
        return [(self.dir("run", "flannel"), "/run/flannel")]

    @property
    def subnet_file(self) -> str:
        """Where the node's /run/flannel/subnet.env lives, seen from the lab process."""
        return self.dir("run", "flannel", "subnet.env")

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python",
            "ETCDCTL_ENDPOINTS": f"http://{self.master_ip}:{CLIENT_PORT}",
            "LABKIT_LAB": self.state.name, "LABKIT_NODE": self.name,
            "HOSTNAME": self.name,
        })
        return env

    def sh(self, argv: list[str], timeout: float | None = 60, check: bool = False, input=None):
        """Run argv on this node (its namespace and file view); returns CompletedProcess."""
        os.makedirs(self.dir("run", "flannel"), exist_ok=True)
        return netns.run(self.ns, argv, binds=self.binds, env=self.env(), timeout=timeout,
                         check=check, input=input)

    # -- services -------------------------------------------------------------------------
    def service(self, name: str) -> Service:
        py = sys.executable
        if name == "flanneld":
            argv = [py, "-m", "labkit.flannel.daemon",
                    f"-etcd-endpoints=http://{self.master_ip}:{CLIENT_PORT}",
                    f"-etcd-prefix={self.spec.prefix}", "-iface=eth0",
                    f"-lab-subnet-ttl={self.spec.lease_ttl}",
                    f"-lab-renew-margin-seconds={self.spec.renew_margin}"]
            if self.spec.seed is not None:
                argv.append(f"-lab-seed={self.spec.seed}")
        elif name == "docker":
            argv = [py, "-m", "labkit.docker.daemon", "--lab", self.state.name, "--node", self.name]
        elif name == "etcd" and self.is_master:
            argv = etcd_argv(self.state.name, self.state.path("etcd"), str(self.public_ip))
        else:
            from .errors import LabError
            raise LabError(f"Unit {name}.service not found on {self.name}.")
        return Service(name=name, ns=self.ns, argv=argv,
                       log_path=self.dir("log", f"{name}.log"), pid_path=self.dir("pid", f"{name}.pid"),
                       binds=self.binds, env=self.env(),
                       cwd=self.state.dir if name == "etcd" else None)

    def services(self) -> list[str]:
        return (["etcd"] if self.is_master else []) + list(SERVICE_NAMES)

    def subnet_env(self) -> dict:
        from .flannel.subnetenv import read_subnet_file
        try:
            return read_subnet_file(self.subnet_file)
        except FileNotFoundError:
            return {}
