"""Rootless labs (issue 15): an ordinary user builds a lab in their sandbox.

Two Unix users made for the test (``labkit-t-...``, removed afterwards, with their
temporary homes): the first runs `up --nodes 3 --containers 1`, `check`, `capture`,
`exec` and `down` as itself; root's namespace and `ip netns list` never show any of it;
the second user can neither see the first's lab nor remove it nor join its sandbox.
Skipped, with the reason, only where the kernel forbids unprivileged user namespaces.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest

from labkit import sandbox
from tests.helpers import ROOT, unique_name

pytestmark = pytest.mark.integration

PREFIX = "labkit-t-"


class User:
    """A throwaway Unix user, and labkit run as that user (no capabilities left)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.home = tempfile.mkdtemp(prefix=f"{name}-home-")
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", self.home,
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chown(self.home, self.uid, self.gid)
        os.chmod(self.home, 0o700)

    def argv(self, *argv: str) -> list[str]:
        env = {"HOME": self.home, "USER": self.name, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "PYTHONPATH": ROOT, "LANG": "C.UTF-8"}
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout, cwd="/")

    def labkit(self, *args: str, ok: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        r = self.run(sys.executable, "-m", "labkit", *args, timeout=timeout)
        if ok:
            assert r.returncode == 0, f"{self.name}$ labkit {' '.join(args)} ({r.returncode}):\n{r.stdout}{r.stderr}"
        return r

    def remove(self) -> None:
        self.run(sys.executable, "-m", "labkit", "sandbox", "stop", timeout=30)
        subprocess.run(["userdel", self.name], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(f"/tmp/labkit-{self.uid}", ignore_errors=True)


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[User, User]]:
    tag = secrets.token_hex(2)
    made: list[User] = []
    try:
        for who in "ab":
            made.append(User(f"{PREFIX}rl{tag}{who}"))
        a = made[0]
        r = a.run(sys.executable, "-c", "import labkit.sandbox as s; print(s.probe() or 'ok')")
        assert r.returncode == 0, (f"{a.name} cannot run labkit from {ROOT} with {sys.executable}: the clone and "
                                   f"its venv must be readable by every user (README: Set-up)\n{r.stderr}")
        if r.stdout.strip() != "ok":
            pytest.skip(f"the kernel forbids unprivileged user namespaces here: {r.stdout.strip()}")
        yield made[0], made[1]
    finally:
        for u in made:
            u.remove()


def root_netns() -> tuple[str, set[str], str]:
    """What root sees: `ip netns list`, /run/netns, and the root namespace's own links,
    addresses, routes and rules (only these must be the same before and after)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    ns_dir = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    own = "".join(subprocess.run(["ip", "-o", *cmd], capture_output=True, text=True).stdout
                  for cmd in (["link"], ["addr"], ["route"], ["rule"]))
    return listed, ns_dir, own


def test_rootless_lab_is_the_learners_alone(users: tuple[User, User]) -> None:
    a, b = users
    name = unique_name("rl")
    before = root_netns()

    up = a.labkit("up", "--name", name, "--nodes", "3", "--containers", "1", "--seed", "7")
    assert f"lab {name} is up" in up.stdout
    check = a.labkit("check", "--name", name)
    assert "6 of 6 pairs reachable" in check.stdout, check.stdout
    cap = a.labkit("capture", "--name", name, "master", "eth0", "udp", "port", "8472",
                   "--ping", "master/c1", "node1/c1", "-c", "2")
    assert "VXLAN vni=1" in cap.stdout and "ICMP echo-request" in cap.stdout, cap.stdout
    env = a.labkit("exec", "--name", name, "node1", "--", "cat", "/run/flannel/subnet.env")
    assert "FLANNEL_SUBNET=10." in env.stdout and "FLANNEL_MTU=1450" in env.stdout
    # a node shell sees the lab's files, not the host's home directories (the learner's own included)
    view = a.labkit("exec", "--name", name, "node1", "--", "sh", "-c",
                    f"ls -A /home /root {a.home}; echo HOME=$HOME; ls /sys/class/net; id -u")
    assert view.stdout.split("HOME=")[0].split() == ["/home:", "/root:", f"{a.home}:"], view.stdout
    assert "HOME=/root" in view.stdout and "flannel.1" in view.stdout and view.stdout.split()[-1] == "0"
    # the real tcpdump, typed in a node shell, captures there too
    dump = a.labkit("exec", "--name", name, "node1", "--", "sh", "-c",
                    "ping -i 0.2 -w 30 192.168.50.1 >/dev/null & p=$!; "  # pings until tcpdump has one
                    "timeout 30 tcpdump -n -c 1 -i eth0 icmp 2>&1; kill $p")
    assert "1 packet captured" in dump.stdout, dump.stdout

    # root: none of the learner's namespaces, and its own namespace as it was
    inside = a.labkit("sandbox", "run", "--", "ls", "/run/netns").stdout.split()
    assert f"{name}-node1" in inside and f"{name}-node1-c1" in inside
    listed, ns_dir, own = root_netns()
    assert not [n for n in ns_dir | set(listed.split()) if n.startswith(name)], listed
    assert own == before[2], "the root network namespace changed"

    # the second learner: cannot see the lab, remove it, or join the first one's sandbox
    assert name not in b.labkit("list").stdout
    gone = b.labkit("down", "--name", name)
    assert "nothing to remove" in gone.stdout
    st = a.labkit("sandbox", "status", "--json").stdout
    holder = int(st.split('"holder": ')[1].split(",")[0])
    assert b.run("ls", f"/tmp/labkit-{a.uid}").returncode != 0
    assert b.run("nsenter", "-t", str(holder), "-U", "-m", "-n", "--preserve-credentials", "true").returncode != 0
    assert name not in b.run("ip", "netns", "list").stdout
    assert b.labkit("sandbox", "run", "--", "ls", "/run/netns").stdout.split() == []  # b's own sandbox
    assert "6 of 6 pairs reachable" in a.labkit("check", "--name", name).stdout

    down = a.labkit("down", "--name", name)
    assert "removed" in down.stdout
    assert a.labkit("sandbox", "run", "--", "ls", "/run/netns").stdout.split() == []
    stop = a.labkit("sandbox", "stop")
    assert "sandbox stopped" in stop.stdout
    assert a.labkit("sandbox", "status", ok=False).returncode == 3
    assert root_netns()[2] == before[2]


def test_sandbox_run_contract(users: tuple[User, User]) -> None:
    """What JupyterHub's spawner relies on: CMD runs inside (inside() is True there and
    nowhere else), stdin/stdout and the exit status are CMD's, and --publish relays a
    loopback port of the host into the sandbox."""
    a, _ = users
    py = sys.executable
    p = subprocess.run(a.argv(py, "-m", "labkit", "sandbox", "run", "--", py, "-c",
                              "import sys, labkit.sandbox as s; print(s.inside(), sys.stdin.read()); sys.exit(5)"),
                       input="hello", capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stdout.strip()) == (5, "True hello"), p.stderr
    assert not sandbox.inside()
    assert a.labkit("sandbox", "run", "--", "no-such-program-xyz", ok=False).returncode == 127

    port = 20000 + secrets.randbelow(20000)
    server = ("import http.server, socketserver; socketserver.TCPServer(('127.0.0.1', %d), "
              "http.server.SimpleHTTPRequestHandler).handle_request()" % port)
    proc = subprocess.Popen(a.argv(py, "-m", "labkit", "sandbox", "run", "--publish", str(port), "--",
                                   py, "-c", server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    # --connect: the host's 127.0.0.1:PORT (the Hub's API) seen from inside (another port: the
    # server above left a TIME_WAIT on its own in the sandbox, without SO_REUSEADDR)
    port += 1
    server = server.replace(str(port - 1), str(port))
    host = subprocess.Popen([py, "-c", server], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = a.run(py, "-m", "labkit", "sandbox", "run", "--connect", str(port), "--", py, "-c",
                  "import time, urllib.request\nfor _ in range(50):\n  try:\n"
                  f"    print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2).status); break\n"
                  "  except OSError: time.sleep(0.1)", timeout=30)
        assert r.stdout.strip() == "200", r.stdout + r.stderr
        assert host.wait(timeout=10) == 0
    finally:
        host.kill()
    assert a.labkit("sandbox", "stop").returncode == 0

    # a holder killed (OOM, kill -9) leaves what ran inside: status warns, stop ends it
    sleeper = subprocess.Popen(a.argv(py, "-m", "labkit", "sandbox", "run", "--", "sleep", "60"))
    try:
        holder = 0
        deadline = time.monotonic() + 15
        while not holder and time.monotonic() < deadline:
            st = a.run(py, "-m", "labkit", "sandbox", "status", "--json")
            holder = int(st.stdout.split('"holder": ')[1].split(",")[0]) if '"holder"' in st.stdout else 0
            time.sleep(0.1)
        time.sleep(0.5)  # sleep has been exec'd inside
        os.kill(holder, 9)
        warn = a.labkit("sandbox", "status", ok=False)
        assert warn.returncode == 3 and "whose holder died" in warn.stdout, warn.stdout
        assert "1 processes ended" in a.labkit("sandbox", "stop").stdout
        assert sleeper.wait(timeout=10) != 0
    finally:
        sleeper.kill()
