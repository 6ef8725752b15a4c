"""The node's systemd unit files, as data, and the little of systemd that reads them.

A flannel host of the blog (CentOS 7) ran flanneld, docker and etcd as systemd units.
What those units say is what makes the blog's start-up chain work: flanneld is
``Before=docker.service``, its ``ExecStartPost`` turns subnet.env into
/run/flannel/docker (mk-docker-opts.sh), docker's drop-in reads that file, and
``Restart=on-failure`` brings a crashed flanneld back. The texts below follow the
CentOS 7 packages (reduced to what the lab models; docker's ``ExecStart`` is shortened);
``systemctl cat`` prints them, and the service manager (``labkit/services.py``, the
``systemctl`` shim, ``labkit/supervisor.py``) takes its ordering and restart policy
from them, never from a list of its own.

The lab adds one drop-in per restartable unit, ``labkit.conf``, with ``RestartSec=2s``:
CentOS 7's units set no RestartSec, so systemd's default of 100 ms applies there; the
lab waits longer so that a learner can see "activating (auto-restart)".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SYSTEM_DIR = "/usr/lib/systemd/system"
DROPIN_DIR = "/etc/systemd/system"
DEFAULT_RESTART_SEC = 0.1     # systemd's RestartSec default (100ms)
LAB_RESTART_SEC = "2s"        # the lab's drop-in (see the module docstring)
START_LIMIT_BURST = 5         # systemd 219's DefaultStartLimitBurst ...
START_LIMIT_INTERVAL = 10.0   # ... within DefaultStartLimitInterval=10s
# exit signals systemd counts as clean for Restart=on-failure (SIGHUP, SIGINT, SIGTERM, SIGPIPE)
CLEAN_SIGNALS = (1, 2, 13, 15)

FLANNELD = """\
[Unit]
Description=Flanneld overlay address etcd agent
After=network.target
After=network-online.target
Wants=network-online.target
After=etcd.service
Before=docker.service

[Service]
Type=notify
EnvironmentFile=/etc/sysconfig/flanneld
EnvironmentFile=-/etc/sysconfig/docker-network
ExecStart=/usr/bin/flanneld-start $FLANNEL_OPTIONS
ExecStartPost=/usr/libexec/flannel/mk-docker-opts.sh -k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker
Restart=on-failure

[Install]
WantedBy=multi-user.target
RequiredBy=docker.service
"""

DOCKER = """\
[Unit]
Description=Docker Application Container Engine
Documentation=http://docs.docker.com
After=network.target

[Service]
Type=notify
EnvironmentFile=-/etc/sysconfig/docker
EnvironmentFile=-/etc/sysconfig/docker-network
ExecStart=/usr/bin/dockerd $OPTIONS $DOCKER_NETWORK_OPTIONS
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0

[Install]
WantedBy=multi-user.target
"""

DOCKER_FLANNEL_DROPIN = """\
[Service]
EnvironmentFile=-/run/flannel/docker
"""

ETCD = """\
[Unit]
Description=Etcd Server
After=network.target
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
WorkingDirectory=/var/lib/etcd/
EnvironmentFile=-/etc/etcd/etcd.conf
User=etcd
ExecStart=/usr/bin/etcd --name="${ETCD_NAME}" --data-dir="${ETCD_DATA_DIR}" \\
    --listen-client-urls="${ETCD_LISTEN_CLIENT_URLS}"
Restart=on-failure
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""

LAB_RESTART_DROPIN = f"""\
# labkit: CentOS 7's unit sets no RestartSec (systemd's default is 100ms);
# the lab waits {LAB_RESTART_SEC} so that "activating (auto-restart)" can be seen.
[Service]
RestartSec={LAB_RESTART_SEC}
"""

# unit -> [(path, text)]: the unit file first, then its drop-ins in the order systemd reads them
FILES: dict[str, list[tuple[str, str]]] = {
    "etcd": [(f"{SYSTEM_DIR}/etcd.service", ETCD),
             (f"{DROPIN_DIR}/etcd.service.d/labkit.conf", LAB_RESTART_DROPIN)],
    "flanneld": [(f"{SYSTEM_DIR}/flanneld.service", FLANNELD),
                 (f"{DROPIN_DIR}/flanneld.service.d/labkit.conf", LAB_RESTART_DROPIN)],
    "docker": [(f"{SYSTEM_DIR}/docker.service", DOCKER),
               (f"{DROPIN_DIR}/docker.service.d/flannel.conf", DOCKER_FLANNEL_DROPIN)],
}


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """An INI-like unit file -> {section: {key: [values...]}}; keys repeat (After=, EnvironmentFile=)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    joined = re.sub(r"\\\n", " ", text)   # a trailing backslash continues the line
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        if section is None or "=" not in line:
            continue
        key, value = line.split("=", 1)
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def parse_timespan(value: str) -> float:
    """systemd's time span ("100ms", "2s", "1min", bare seconds) in seconds."""
    total = 0.0
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9.]+)\s*([a-z]*)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", value.strip()):
        raise ValueError(f"invalid time span {value!r}")
    for number, unit in parts:
        if unit not in units and unit != "":
            raise ValueError(f"invalid time span {value!r}")
        total += float(number) * units.get(unit or "s", 1.0)
    return total


@dataclass
class Unit:
    """One unit as systemd sees it after reading its file and drop-ins."""
    name: str
    description: str = ""
    path: str = ""
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    restart: str = "no"
    restart_sec: float = DEFAULT_RESTART_SEC
    exec_start_post: list[str] = field(default_factory=list)
    environment_files: list[str] = field(default_factory=list)

    def restarts_after(self, code: int | None, signal: int | None) -> bool:
        """Restart= for a main process that exited with `code` or was killed by `signal`."""
        clean = (code == 0) if signal is None else signal in CLEAN_SIGNALS
        if self.restart == "always":
            return True
        if self.restart == "on-failure":
            return not clean
        if self.restart == "on-abnormal":
            return signal is not None and not clean
        return False


def _names(values: list[str]) -> list[str]:
    return [w[:-8] if w.endswith(".service") else w for v in values for w in v.split()]


def load(name: str) -> Unit:
    """The unit `name` with its drop-ins merged (later files add to lists, override singles)."""
    files = FILES.get(name)
    if not files:
        raise KeyError(name)
    unit = Unit(name=name, path=files[0][0])
    for _, text in files:
        p = parse(text)
        u, s = p.get("Unit", {}), p.get("Service", {})
        if "Description" in u:
            unit.description = u["Description"][-1]
        unit.before += _names(u.get("Before", []))
        unit.after += _names(u.get("After", []))
        if "Restart" in s:
            unit.restart = s["Restart"][-1]
        if "RestartSec" in s:
            unit.restart_sec = parse_timespan(s["RestartSec"][-1])
        unit.exec_start_post += s.get("ExecStartPost", [])
        unit.environment_files += s.get("EnvironmentFile", [])
    return unit


def cat(name: str) -> str:
    """What `systemctl cat NAME` prints: each file, headed by its path."""
    return "\n".join(f"# {path}\n{text}" for path, text in FILES[name])


def start_order(names: list[str]) -> list[str]:
    """One transaction's start order, from Before=/After= between the units in it
    (as systemd orders `systemctl start A B`: not by the order on the command line).
    Ties keep the command line's order."""
    units = {n: load(n) for n in names if n in FILES}
    must_precede: dict[str, set[str]] = {n: set() for n in names}   # n starts after these
    for n, u in units.items():
        for other in u.after:
            if other in must_precede and other != n:
                must_precede[n].add(other)
        for other in u.before:
            if other in must_precede and other != n:
                must_precede[other].add(n)
    order: list[str] = []
    pending = list(dict.fromkeys(names))
    while pending:
        ready = [n for n in pending if not (must_precede[n] - set(order))]
        nxt = ready[0] if ready else pending[0]   # an ordering cycle: systemd breaks it too
        order.append(nxt)
        pending.remove(nxt)
    return order


def stop_order(names: list[str]) -> list[str]:
    """Stopping goes the other way round (docker before flanneld)."""
    return list(reversed(start_order(names)))
