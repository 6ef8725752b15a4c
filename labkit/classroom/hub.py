"""The class hub: its state folder, its settings, and starting JupyterHub.

``./run hub`` (or ``labkit classroom hub``) checks the trainer's options, writes them to
``.hub/settings.json`` in the clone, and execs ``jupyterhub -f labkit/classroom/jupyterhub_config.py``,
which reads them. ``.hub/`` (mode 0700, git-ignored) also holds the hub's database, cookie secret
and the proxy's token: nothing of the hub lives outside the clone.

Addresses: the proxy (the one public port) listens on 127.0.0.1 unless ``--listen ADDR`` names
an address of this machine (a class network; ``0.0.0.0`` for every interface): the only place
in the project that may listen on a host interface, and only when the trainer asks. The hub's
own API (port+2), the proxy's API (port+1), the trainer's view (port+3) and every learner's
server stay on 127.0.0.1.
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import sys
from dataclasses import asdict, dataclass, field

from ..errors import LabError
from . import limits, users

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "labkit", "classroom", "jupyterhub_config.py")
DEFAULT_STATE = os.path.join(ROOT, ".hub")
DEFAULT_PORT = 8000


@dataclass
class Settings:
    ip: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    memory: int | None = 2 << 30
    tasks: int | None = 1024
    cpus: float | None = None
    cull_timeout: int = 3600
    trainers: list[str] = field(default_factory=list)
    admin_token_file: str | None = None
    sandbox: bool = True
    chp: str = ""
    state: str = DEFAULT_STATE

    @property
    def api_port(self) -> int:
        return self.port + 1

    @property
    def hub_port(self) -> int:
        return self.port + 2

    @property
    def trainer_port(self) -> int:
        return self.port + 3


def check_listen(addr: str) -> str:
    """127.0.0.1, 0.0.0.0 (every interface) or an address this machine has (bound to test it)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError as e:
        raise LabError(f"--listen {addr!r}: not an IP address", field="listen") from e
    if ip.is_unspecified or ip.is_loopback:
        return str(ip)
    fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((str(ip), 0))
        except OSError as e:
            raise LabError(f"--listen {addr}: no interface of this machine has that address", field="listen") from e
    return str(ip)


def check_port(port: int) -> int:
    if not 1024 <= port <= 65532:
        raise LabError(f"--port must be 1024 to 65532 (it and the next three are used); found {port}", field="port")
    for p in range(port, port + 4):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError as e:
                raise LabError(f"port {p} is in use on 127.0.0.1 (the hub uses --port and the next three)",
                               field="port") from e
    return port


def find_chp() -> str:
    local = os.path.join(ROOT, "node_modules", ".bin", "configurable-http-proxy")
    for path in (os.environ.get("LABKIT_CHP", ""), local, shutil.which("configurable-http-proxy") or ""):
        if path and os.access(path, os.X_OK):
            return path
    raise LabError("configurable-http-proxy is not installed: `./run hub` installs it (npm, pinned in package.json)")


def prepare_state(s: Settings) -> str:
    """Make the state folder (0700), the proxy's token (0600) and settings.json; returns its path."""
    os.makedirs(s.state, mode=0o700, exist_ok=True)
    os.chmod(s.state, 0o700)
    token = os.path.join(s.state, "proxy_token")
    if not os.path.exists(token):
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    path = os.path.join(s.state, "settings.json")
    with open(path, "w") as f:
        json.dump(asdict(s), f, indent=1)
    return path


def load_settings(path: str) -> Settings:
    with open(path) as f:
        return Settings(**json.load(f))


def serve(s: Settings) -> None:
    """Check everything, then exec jupyterhub (never returns)."""
    if os.geteuid() != 0:
        raise LabError("the class hub runs as root: it starts each learner's server as that learner")
    s.ip = check_listen(s.ip)
    check_port(s.port)
    for t in s.trainers:
        users.check_name(t)
    s.chp = s.chp or find_chp()
    kind, why = limits.mechanism()
    path = prepare_state(s)
    where = f"http://{'[' + s.ip + ']' if ':' in s.ip else s.ip}:{s.port}/"
    print(f"class hub: {where}  (state in {s.state}; limits: {kind}: {why})", file=sys.stderr)
    if s.ip != "127.0.0.1":
        print(f"class hub: listening on {s.ip} as asked: learners on that network can reach the login page",
              file=sys.stderr)
    os.environ["LABKIT_HUB_SETTINGS"] = path
    os.environ["PYTHONPATH"] = ROOT
    os.chdir(s.state)
    # started from a background job, SIGINT would be ignored and inherited: the hub stops its
    # services (idle culler, trainer's view) with SIGINT, so they must not ignore it
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(sys.executable, [sys.executable, "-m", "jupyterhub", "-f", CONFIG])
