"""Helpers for the notebooks: one lab per notebook, built with progress and always removed.

A notebook starts with ``lab = start("nb01", nodes=2, seed=1)`` and ends with
``finish(lab)``. In between:

* ``start`` removes a leftover lab of the same name first (a notebook owns its lab
  name: re-running it from the top just works), prints each build step (so a waiting
  cell is never silent), makes the lab the one ``%node`` talks to, and registers it
  for removal when the kernel exits (``atexit``), so a notebook that fails half-way,
  or a kernel that is shut down, leaves nothing behind;
* ``cleanup_labs(pattern)`` removes every lab whose name matches (the test suite calls
  it after running the notebooks, for kernels that were killed);
* ``Table`` shows rows as text and as HTML; ``setup_check`` is notebook 00.
"""
from __future__ import annotations

import atexit
import html
import os
import re
import shutil
import subprocess
import sys
import time

from .errors import LabError

NOTEBOOK_LAB = re.compile(r"^nb[0-9]{2}[a-z0-9]*$")
# A test run sets LABKIT_NOTEBOOK_SUFFIX (x + 5 hex digits): its notebooks' labs are then
# nb01x1a2b3, ..., so two runs on one machine never touch each other's labs (the sanitize
# file maps the names back for nbval).
SUFFIX_RE = re.compile(r"^(x[0-9a-f]{5})?$")


def _suffix() -> str:
    suffix = os.environ.get("LABKIT_NOTEBOOK_SUFFIX", "")
    if not SUFFIX_RE.match(suffix):
        raise LabError(f"LABKIT_NOTEBOOK_SUFFIX must be x and 5 hex digits, got {suffix!r}")
    return suffix


def notebook_labs():
    """The names this run's notebooks use (nb00, nb07l, ... with this run's suffix)."""
    return re.compile(r"^nb[0-9]{2}[a-z]?" + re.escape(_suffix()) + "$")
_current = None
_owned: dict = {}


# -- the lab of a notebook ------------------------------------------------------------------
def _say(msg: str) -> None:
    if msg.endswith(" ..."):   # the step is announced when it is done, with its result
        return
    print(msg, flush=True)


def start(name: str, quiet: bool = False, spec=None, **fields):
    """Build the notebook's lab `name` (LabSpec fields as keywords, or a whole `spec`
    such as ``blog_spec(...)``) and return it."""
    import dataclasses
    from .lab import Lab, clean
    from .spec import LabSpec
    name = name + _suffix() if NOTEBOOK_LAB.match(name) else name
    spec = dataclasses.replace(spec, name=name, **fields) if spec is not None else LabSpec(name=name, **fields)
    spec.validate()
    if clean(name):
        print(f"(removed a lab {name} left over from an earlier run)", flush=True)
    lab = Lab(spec, progress=(lambda m: None) if quiet else _say)
    _owned[name] = lab
    lab.up()
    _start_reaper(lab)
    use(lab)
    return lab


def _state_inode(lab) -> int | None:
    try:
        return os.stat(lab.state.dir).st_ino
    except OSError:
        return None


def _start_reaper(lab) -> None:
    """A tiny watcher that removes the lab if this kernel dies without running atexit
    (killed: nbval stops its kernels that way, so does an out-of-memory kill). It only
    removes *this* lab: the same name rebuilt later has a new state folder."""
    ino = _state_inode(lab)
    if ino is None:
        return
    subprocess.Popen([sys.executable, "-m", "labkit.jupyter", "--reap", str(os.getpid()), lab.spec.name,
                      str(ino)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _reap(pid: int, name: str, ino: int, every: float = 0.3) -> None:
    """Wait until `pid` is gone; then, if lab `name` is still the one it built, remove it.
    Returns at once when the lab goes away by itself (finish, atexit, labkit down)."""
    from .state import LabState
    state_dir = LabState(name).dir

    def same_lab():
        try:
            return os.stat(state_dir).st_ino == ino
        except OSError:
            return False
    while same_lab():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            if same_lab():
                from .lab import clean
                clean(name)
            return
        except PermissionError:
            pass
        time.sleep(every)



def finish(lab=None) -> None:
    """Remove the lab (by default the one in use) and say so."""
    global _current
    lab = lab or _current
    if lab is None:
        print("no lab to remove")
        return
    lab.down()
    _owned.pop(lab.spec.name, None)
    if _current is lab:
        _current = None
    print(f"lab {lab.spec.name} removed")


def use(lab):
    """Make `lab` the one the %node magic and the widgets use by default."""
    global _current
    _current = lab
    return lab


def current():
    """The lab in use: the last one started or `use`d in this kernel, else the only
    lab running on this machine."""
    if _current is not None:
        return _current
    from .lab import Lab
    from .state import list_labs
    labs = list_labs()
    if len(labs) == 1:
        return use(Lab.attach(labs[0]))
    if not labs:
        raise LabError("no lab is running: build one with labkit.jupyter.start('nb01', ...) "
                       "or `labkit up`")
    raise LabError(f"several labs are running ({', '.join(labs)}): pick one with "
                   "labkit.jupyter.use(Lab.attach(NAME))")


@atexit.register
def _remove_owned() -> None:
    if not _owned:
        return
    from .lab import clean
    for name in list(_owned):
        try:
            clean(name)
        except Exception:
            pass
        _owned.pop(name, None)


def cleanup_labs(pattern=None) -> list[str]:
    """Remove every lab (state folder or namespaces) whose name matches `pattern`; by
    default the labs of this run's notebooks."""
    pattern = pattern or notebook_labs()
    from . import netns
    from .lab import clean
    from .state import list_labs
    names = set(list_labs())
    names |= {ns.split("-", 1)[0] for ns in netns.list_names() if "-" in ns}
    removed = []
    for name in sorted(names):
        if pattern.match(name):
            if clean(name):
                removed.append(name)
    return removed


def wait_until(check, what: str, timeout: float = 15.0, every: float = 4.0):
    """Poll check() until it returns something truthy; say what we wait for (so a cell
    is never silent for long) and return the value. Raises LabError on timeout."""
    t0 = time.monotonic()
    told = t0
    print(f"waiting for {what} ...", flush=True)
    while True:
        value = check()
        if value:
            return value
        now = time.monotonic()
        if now - t0 > timeout:
            raise LabError(f"gave up waiting for {what} after {timeout:.0f}s")
        if now - told >= every:
            print("  still waiting ...", flush=True)
            told = now
        time.sleep(0.05)


# -- showing things ----------------------------------------------------------------------------
class Table:
    """Rows shown as an aligned text table (text/plain) and an HTML table (text/html)."""

    def __init__(self, header, rows, title: str | None = None, css: str = "labkit-table"):
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

    def __repr__(self):
        return self.text()

    def __str__(self):
        return self.text()

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.rows)
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        return f"{title}<table class='{self.css}'><tr>{head}</tr>{body}</table>"


def current_config(lab) -> str | None:
    """The network config as it is in etcd now (v2 keys for a legacy lab), or None."""
    key = f"{lab.spec.prefix}/config"
    if getattr(lab.spec, "flavour", "modern") == "legacy":
        from .etcd import V2Client
        return V2Client(lab.state.etcd_socket).get(key)
    value, _meta = lab.etcd().get(key)
    return value.decode() if value is not None else None


def status_table(lab) -> Table:
    """The lab as `labkit status` shows it: one row per node, from etcd and the kernel."""
    from .widgets.logic import result_rows, RESULT_HEADER
    from .flannel.config import ConfigError, parse_config
    network = None
    try:
        cfg = current_config(lab)
    except Exception as e:  # etcd down: say so, still show the kernel's side
        cfg = f"(etcd: {e})"
    else:
        try:
            network = str(parse_config(cfg).network) if cfg else None
        except ConfigError:
            network = None
    return Table(RESULT_HEADER, result_rows(lab.status(), network),
                 title=f"lab {lab.spec.name}, config in etcd: {cfg or '(none)'}")


def show_json(text: str) -> str:
    """Pretty-print a JSON value (a lease, a config) as it is stored in etcd."""
    import json
    return json.dumps(json.loads(text), indent=2)


# -- notebook 00: is this machine ready? -------------------------------------------------------
BINARIES = [  # (program, Debian package, how to ask its version)
    ("ip", "iproute2", ["ip", "-V"]),
    ("bridge", "iproute2", None),
    ("etcd", "etcd-server", ["etcd", "--version"]),
    ("etcdctl", "etcd-client", ["etcdctl", "version"]),
    ("ping", "iputils-ping", ["ping", "-V"]),
    ("tcpdump", "tcpdump", ["tcpdump", "--version"]),
    ("iperf3", "iperf3", ["iperf3", "--version"]),
    ("ifconfig", "net-tools", None),
    ("iptables", "iptables", ["iptables", "--version"]),
    ("nft", "nftables", ["nft", "--version"]),
]
PACKAGES = ["pyroute2", "etcd3", "scapy", "ipywidgets", "jupyterlab", "nbval"]


def _version(argv) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def _probe_kernel(ns: str) -> list[tuple[str, bool, str, str]]:
    """Create each kind of device flannel and the lab need, inside a scratch namespace."""
    from . import netns
    rows = []
    try:
        netns.add(ns)
    except Exception as e:
        return [("network namespaces", False, str(e), "a kernel with CONFIG_NET_NS, and root")]
    rows.append(("network namespaces", True, "ip netns add works", ""))
    try:
        tests = [
            ("veth pairs", ["link", "add", "p0", "type", "veth", "peer", "name", "p1"], "CONFIG_VETH"),
            ("bridges", ["link", "add", "br0", "type", "bridge"], "CONFIG_BRIDGE"),
            ("VXLAN devices", ["link", "add", "vx1", "type", "vxlan", "id", "1", "dstport", "8472",
                               "dev", "p0", "nolearning"], "CONFIG_VXLAN"),
            ("TUN devices", ["tuntap", "add", "dev", "tun0", "mode", "tun"], "CONFIG_TUN, /dev/net/tun"),
        ]
        for what, args, need in tests:
            r = subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True)
            ok = r.returncode == 0
            rows.append((what, ok, "created one in a scratch namespace" if ok else r.stderr.strip(),
                         "" if ok else f"a kernel with {need}"))
    finally:
        netns.delete(ns)
    ok = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
    rows.append(("br_netfilter", ok, "loaded" if ok else "not loaded",
                 "" if ok else "modprobe br_netfilter (flannel >= 0.26 refuses to start without it)"))
    return rows


def setup_check(probe_ns: str = "nb00-probe") -> Table:
    """Root, kernel features, programs and Python packages, with how to fix what is missing."""
    import importlib.metadata as md
    import platform
    rows = []
    root = os.geteuid() == 0
    rows.append(("root", root, "uid 0" if root else f"uid {os.geteuid()}",
                 "" if root else "run JupyterLab with sudo ./run lab"))
    rows.append(("Python", sys.version_info >= (3, 11), platform.python_version(),
                 "" if sys.version_info >= (3, 11) else "Python 3.11 or later"))
    rows.append(("Linux kernel", True, platform.release(), ""))
    if root:
        rows.extend(_probe_kernel(probe_ns))
    for prog, pkg, argv in BINARIES:
        path = shutil.which(prog)
        rows.append((prog, bool(path), (_version(argv) if argv else path) if path else "missing",
                     "" if path else f"apt-get install {pkg} (or ./run setup)"))
    for pkg in PACKAGES:
        try:
            rows.append((f"python: {pkg}", True, md.version(pkg), ""))
        except md.PackageNotFoundError:
            rows.append((f"python: {pkg}", False, "missing", "./run setup (installs the pinned versions)"))
    try:
        from scapy.arch.common import compile_filter
        compile_filter("udp port 8472", linktype=1)
        rows.append(("libpcap (capture filters)", True, "compiles BPF filters", ""))
    except Exception as e:
        rows.append(("libpcap (capture filters)", False, str(e), "apt-get install libpcap0.8"))
    bad = [r for r in rows if not r[1]]
    title = (f"all {len(rows)} checks passed" if not bad
             else f"{len(bad)} of {len(rows)} checks failed: see the 'fix' column")
    return Table(["check", "ok", "detail", "fix"],
                 [(a, "✓" if ok else "✗", d, f) for a, ok, d, f in rows], title=title)


# -- keeping notebook outputs up to date --------------------------------------------------------
def execute_notebooks(paths, timeout: int = 300) -> None:
    """Run notebooks top to bottom and save them with their outputs (what nbval checks).

    ``python -m labkit.jupyter notebooks/0*.ipynb``
    """
    import nbformat
    from nbclient import NotebookClient
    for path in paths:
        t = time.monotonic()
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
        try:
            client.execute()
        finally:
            nbformat.write(nb, path)
            cleanup_labs()
        print(f"{path}: executed in {time.monotonic() - t:.1f}s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reap"]:
        _reap(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        execute_notebooks(sys.argv[1:])
