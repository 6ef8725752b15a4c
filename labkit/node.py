"""Node: one "host" of the cluster: a namespace, its own /run/flannel, its services.

A node's services are what systemd would run on a flannel host: ``flanneld`` and
``docker`` on every node, ``etcd`` on the master. A command run "on the node"
(:meth:`Node.sh`) sees the node's network and the node's /run/flannel, so
``cat /run/flannel/subnet.env`` shows that node's file, as on a real machine.
"""
from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
import sys
from collections.abc import Callable

from . import netns
from .docker.containers import daemon_info
from .errors import LabError
from .etcd import CLIENT_PORT, etcd_argv, http_request, mount_data_dir
from .flannel.subnetenv import read_subnet_file
from .services import Service
from .spec import LabSpec
from .state import LabState

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims", "bin")
SERVICE_NAMES = ("flanneld", "docker")

# As the CentOS 7 flannel package ships it (its comments paraphrased); the lab fills in
# the master's address and the lab's prefix. flanneld.service reads it at every start.
SYSCONFIG_FLANNELD = """# Flanneld configuration options

# etcd URL: where the cluster's etcd listens (the master)
FLANNEL_ETCD_ENDPOINTS="{endpoints}"

# etcd key prefix: flannel reads <prefix>/config and writes <prefix>/subnets/
FLANNEL_ETCD_PREFIX="{prefix}"

# Any additional options for flanneld
FLANNEL_OPTIONS="{options}"
"""


class Node:
    def __init__(self, state: LabState, spec: LabSpec, index: int):
        self.state = state
        self.spec = spec
        self.index = index
        self.name = spec.node_names[index]
        self.ns = state.netns(self.name)
        self.public_ip = spec.public_ip(index)
        self.master_ip = spec.public_ip(0)

    def __repr__(self) -> str:
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
    def prepare(self) -> None:
        """The node's own files: /run/flannel, an /etc overlay with its sysconfig and hostname."""
        for d in (("run", "flannel"), ("etc", "upper", "sysconfig"), ("etc", "work"), ("log",), ("pid",)):
            os.makedirs(self.dir(*d), exist_ok=True)
        with open(self.dir("etc", "upper", "hostname"), "w") as f:
            f.write(self.name + "\n")
        with open(self.dir("etc", "upper", "sysconfig", "flanneld"), "w") as f:
            f.write(SYSCONFIG_FLANNELD.format(endpoints=f"http://{self.master_ip}:{CLIENT_PORT}",
                                              prefix=self.spec.prefix,
                                              options=" ".join(self.spec.flanneld_options(self.name))))

    def view(self, hostname: str | None = None) -> list[str]:
        """labkit.nsexec options: the node's /run/flannel, its /etc overlay, its hostname."""
        return ["--bind", f"{self.dir('run', 'flannel')}:/run/flannel",
                "--etc", f"{self.dir('etc', 'upper')}:{self.dir('etc', 'work')}",
                "--hostname", hostname or self.name]

    @property
    def docker_opts_file(self) -> str:
        """/run/flannel/docker: what flanneld's ExecStartPost (mk-docker-opts.sh) writes."""
        return self.dir("run", "flannel", "docker")

    @property
    def subnet_file(self) -> str:
        """Where the node's /run/flannel/subnet.env lives, seen from the lab process."""
        return self.dir("run", "flannel", "subnet.env")

    def etc_file(self, *parts: str) -> str:
        """The node's copy of /etc/<parts> if it has one (it edits it), else the host's."""
        own = self.dir("etc", "upper", *parts)
        return own if os.path.exists(own) else os.path.join("/etc", *parts)

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "PATH": SHIMS + os.pathsep + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "PYTHONPATH": REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            "LABKIT_PYTHON": sys.executable,
            "ETCDCTL_ENDPOINTS": f"http://{self.master_ip}:{CLIENT_PORT}",
            "LABKIT_LAB": self.state.name, "LABKIT_NODE": self.name,
            "LABKIT_RUN_DIR": os.path.dirname(self.state.dir),
            "HOSTNAME": self.name,
        })
        if self.spec.etcd_v2:
            env["ETCDCTL_API"] = "2"  # CentOS 7's etcdctl spoke the v2 API, as flannel < 0.18 needs
        else:
            env.pop("ETCDCTL_API", None)  # etcdctl 3.4's default: v3
        return env

    def sh(self, argv: list[str], timeout: float | None = 60, check: bool = False,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv on this node (its namespace and file view); returns CompletedProcess."""
        return netns.run(self.ns, argv, view=self.view(), env=self.env(), timeout=timeout,
                         check=check, input=input)

    # -- services -------------------------------------------------------------------------
    def flanneld_argv(self) -> list[str]:
        """What flanneld.service runs: flags from /etc/sysconfig/flanneld, read at each start."""
        conf = read_subnet_file(self.etc_file("sysconfig", "flanneld"))
        module = "labkit.flannel.legacy.daemon" if self.spec.profile.legacy_daemon else "labkit.flannel.daemon"
        # the lab's own flags first: a flag given again in FLANNEL_OPTIONS wins (Go's flag
        # package keeps the last value), so a user's -lab-subnet-ttl=... there is obeyed
        argv = [sys.executable, "-m", module,
                f"-lab-subnet-ttl={self.spec.lease_ttl}",
                f"-lab-renew-margin-seconds={self.spec.renew_margin}",
                f"-lab-flannel-version={self.spec.release}"]  # the profile (flannel/versions.py)
        if self.spec.seed is not None:
            argv.append(f"-lab-seed={self.spec.seed}")
        argv += [f"-etcd-endpoints={conf.get('FLANNEL_ETCD_ENDPOINTS', '')}",
                 f"-etcd-prefix={conf.get('FLANNEL_ETCD_PREFIX', '')}",
                 *shlex.split(conf.get("FLANNEL_OPTIONS", ""))]
        return argv

    def docker_argv(self) -> list[str]:
        """What docker.service runs: ``dockerd $DOCKER_NETWORK_OPTIONS``, the variable read from
        /run/flannel/docker (its drop-in's ``EnvironmentFile=-``: a missing file is no error,
        and dockerd then uses its defaults, docker0 172.17.0.1/16). systemd splits the
        unquoted variable on whitespace; each word is one argv element, never a shell's."""
        from .flannel.subnetenv import read_subnet_file
        try:
            opts = read_subnet_file(self.docker_opts_file).get("DOCKER_NETWORK_OPTIONS", "")
        except OSError:
            opts = ""
        return [sys.executable, "-m", "labkit.docker.daemon", "--lab", self.state.name, "--node", self.name,
                f"--lab-docker-version={self.spec.docker_profile}", *opts.split()]

    def exec_start_post_flanneld(self) -> str | None:
        """flanneld.service's ExecStartPost: ``mk-docker-opts.sh -k DOCKER_NETWORK_OPTIONS -d
        /run/flannel/docker`` (flannel v0.7.1's script: it sources subnet.env, which may be
        missing, and writes DOCKER_OPT_* lines and the combined key). None, or its error."""
        from .docker.opts import DockerOptsError, docker_opts, render_docker_opts
        try:
            text = render_docker_opts(docker_opts(self.subnet_env(), key="DOCKER_NETWORK_OPTIONS"))
        except DockerOptsError as e:
            return str(e)
        # a name of this process's own: the supervisor (late ExecStartPost) may write it at
        # the same moment as `up`, and a shared .tmp would be renamed away under the other
        tmp = f"{self.docker_opts_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.docker_opts_file)
        return None

    def service(self, name: str) -> Service:
        if name == "flanneld":
            argv = self.flanneld_argv()
        elif name == "docker":
            argv = self.docker_argv()
        elif name == "etcd" and self.is_master:
            argv = etcd_argv(self.state.name, self.state.path("etcd"), str(self.public_ip))
        else:
            raise LabError(f"Unit {name}.service not found.")
        svc = Service(name=name, ns=self.ns, argv=argv,
                      log_path=self.dir("log", f"{name}.log"), pid_path=self.dir("pid", f"{name}.pid"),
                      view=self.view(), env=self.env(),
                      cwd=self.state.dir if name == "etcd" else None,
                      zygote=self.state.path("zygote.sock"),
                      socket=self.state.etcd_socket if name == "etcd" else None)
        svc.probe = lambda: self._readiness(name, svc)
        if name == "flanneld":
            svc.post_start = self.exec_start_post_flanneld
        if name == "etcd":
            svc.prepare = lambda: mount_data_dir(self.state)
        return svc

    def _readiness(self, name: str, svc: Service) -> Callable[[], bool]:
        """Taken just before a start: a function telling when the unit has signalled ready
        (Type=notify): flanneld once it has (re)written subnet.env, docker once docker0
        is set up by this dockerd, etcd once it answers /health."""
        if name == "flanneld":
            def mtime() -> int | None:
                try:
                    return os.stat(self.subnet_file).st_mtime_ns
                except FileNotFoundError:
                    return None
            before = mtime()
            return lambda: mtime() not in (None, before)
        if name == "docker":

            def docker_ready() -> bool:
                info = daemon_info(self.state, self.name)
                if not info:
                    return False
                return info["pid"] == svc.pid()
            return docker_ready

        def etcd_ready() -> bool:
            try:
                status, body = http_request(self.state.etcd_socket, "GET", "/health", timeout=1.0)
                return status == 200 and body.get("health") in ("true", True)
            except OSError:
                return False
        return etcd_ready

    def services(self) -> list[str]:
        return (["etcd"] if self.is_master else []) + list(SERVICE_NAMES)

    def subnet_env(self) -> dict:
        try:
            return read_subnet_file(self.subnet_file)
        except FileNotFoundError:
            return {}
