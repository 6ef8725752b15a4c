"""A class on one hub (issue 15): three learners, one notebook, one lab name, at the same time.

A real JupyterHub (PAM authenticator configured, the sandbox spawner, configurable-http-proxy,
the idle culler and the trainer's view as services) on 127.0.0.1, driven through its REST API
with a class-admin token, as a trainer's script would. Three Unix users (prefix ``flkt``,
removed afterwards) each get a server; into each the same notebook is uploaded and run with
the kernel API (a kernel of that learner's server, so inside their sandbox, cell by cell
over the kernel's websocket), all three at once. Then: the labs are three different kernels' objects,
no learner can reach another's namespaces, ``labkit down`` of one learner's ``class`` leaves
the other two ``class`` labs working, and the trainer's view (HTML, JSON, CSV) shows each
learner's scenario started and solved with the hint they took, while a learner's own token is
refused there. Memory and CPU per learner are read from their cgroups and printed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(600)

PREFIX = "flkt"   # every test learner's name starts with it; leftovers of a crashed run are removed
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": ROOT}

NOTEBOOK_CELLS = [
    ('import os, subprocess\n\ndef sh(*args):\n'
     '    """Run a command as the learner types it; print its output; stop on failure."""\n'
     '    r = subprocess.run(args, capture_output=True, text=True, timeout=150)\n'
     '    print("$", " ".join(args)); print(r.stdout + r.stderr)\n'
     '    assert r.returncode == 0, f"{args[0]} exited {r.returncode}"\n    return r.stdout'),
    # a scenario in a lab called `class`: a firewall rule drops VXLAN on node1
    'sh("labkit", "scenario", "start", "udp-8472-blocked", "--name", "class")',
    ('names = sh("ip", "netns", "list").split()\n'
     'assert "class-master" in names and "class-node1" in names, names'),
    'sh("labkit", "scenario", "hint", "--name", "class")',
    ('sh("labkit", "exec", "--name", "class", "node1", "--", "iptables", "-D", "INPUT", "-p", "udp",\n'
     '   "--dport", "8472", "-j", "DROP")\nsh("labkit", "scenario", "check", "--name", "class")'),
    'print("NOTEBOOK DONE")',
]


def make_notebook() -> str:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    cells = [new_markdown_cell("# The class lab: every learner, the same notebook, the same lab name `class`")]
    cells += [new_code_cell(src) for src in NOTEBOOK_CELLS]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    return nbformat.writes(nb)


def free_base_port() -> int:
    for _ in range(50):
        base = 20000 + secrets.randbelow(20000)
        try:
            for p in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise AssertionError("no four free ports")


class Hub:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: object = None, token: str | None = None,
                raw: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {token or self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def api(self, method: str, path: str, body: object = None) -> object:
        code, out = self.request(method, "/hub/api" + path, body)
        assert code < 300, f"{method} {path}: {code} {out[:500]!r}"
        return json.loads(out) if out else None


async def run_code(hub: Hub, user: str, kernel: str, code: str, timeout: float) -> tuple[str, str]:
    """Execute `code` in the learner's kernel over the kernel websocket: (stdout, error text)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect
    url = f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{kernel}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {hub.token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out, err, replied, idle = [], [], False, False
    deadline = time.monotonic() + timeout
    while not (replied and idle):
        left = deadline - time.monotonic()
        assert left > 0, f"{user}: no answer from the kernel in {timeout} s; so far: {''.join(out)[-2000:]}"
        raw = await asyncio.wait_for(ws.read_message(), left)
        assert raw is not None, f"{user}: kernel websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            err.append("\n".join(msg["content"]["traceback"]))
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    ws.close()
    return "".join(out), "".join(err)


def start_kernel(hub: Hub, user: str) -> str:
    code, out = hub.request("POST", f"/user/{user}/api/kernels", {"name": "python3"})
    assert code == 201, f"{user}: starting a kernel: {code} {out[:300]!r}"
    return str(json.loads(out)["id"])


def learner_env_ok(user: str) -> str:
    """'' when the learner may make a sandbox here, else why not (the skip reason)."""
    r = subprocess.run(["runuser", "-u", user, "--", PY, "-c", "from labkit import sandbox; print(sandbox.probe())"],
                       capture_output=True, text=True, env={**ENV, "HOME": "/"}, cwd="/", timeout=60)
    assert r.returncode == 0, (f"{user} cannot run labkit from {ROOT} with {PY}: the clone and its venv must be "
                               f"readable by every user (README: Set-up)\n{r.stderr[-1000:]}")
    return r.stdout.strip()


def test_three_learners_one_notebook_one_lab_name(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the class hub runs as root (it starts servers as the learners)")
    from labkit.classroom import hub as hubmod
    from labkit.classroom import limits, users
    try:
        chp = hubmod.find_chp()
    except Exception as e:
        pytest.skip(f"{e} (`./run test` installs it)")

    # leftovers of an interrupted run (only members of the learners' group, only our prefix)
    users.remove([lr.name for lr in users.learners(PREFIX)])
    tag = secrets.choice("abcdefghjkmnpqrstuvwxyz") + secrets.token_hex(1)
    names = users.names_for(3, PREFIX + tag)
    hub_proc = None
    try:
        made = users.add([(n, None) for n in names])
        assert [lr.name for lr in made] == names and all(lr.password for lr in made)
        why = learner_env_ok(names[0])
        if why:
            pytest.skip(f"a learner cannot make a sandbox here: {why}")

        port = free_base_port()
        token = secrets.token_hex(32)
        token_file = tmp_path / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        state = tmp_path / "hub"
        log = open(tmp_path / "hub.log", "w")
        hub_proc = subprocess.Popen(
            [PY, "-m", "labkit.cli", "classroom", "hub", "--port", str(port), "--state", str(state),
             "--api-token-file", str(token_file), "--memory", "3G", "--tasks", "2048"],
            env={**ENV, "LABKIT_CHP": chp}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        hub = Hub(port, token)
        t_hub = time.monotonic()

        def hub_log() -> str:
            return (tmp_path / "hub.log").read_text()[-4000:]

        deadline = time.monotonic() + 90
        while True:
            assert hub_proc.poll() is None, f"the hub exited:\n{hub_log()}"
            try:
                if hub.request("GET", "/hub/api/", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the hub did not come up in 90 s:\n{hub_log()}"
            time.sleep(0.5)
        # the hub's state stays in its folder, closed to others; its listeners are all on 127.0.0.1
        assert (state / "jupyterhub.sqlite").exists() and (state / "jupyterhub_cookie_secret").exists()
        assert os.stat(state).st_mode & 0o077 == 0 and os.stat(state / "proxy_token").st_mode & 0o077 == 0

        # the idle culler and the trainer's view run as the hub's services
        assert {"idle-culler", "trainer"} <= set(hub.api("GET", "/services"))  # type: ignore[arg-type]
        hub.api("POST", "/users", {"usernames": names})
        with concurrent.futures.ThreadPoolExecutor(3) as pool:   # each POST waits up to 10 s for its server
            list(pool.map(lambda n: hub.api("POST", f"/users/{n}/server"), names))
        deadline = time.monotonic() + 240   # JupyterLab servers on 2 shared cores: ~25 s each when idle
        for n in names:
            while not hub.api("GET", f"/users/{n}")["servers"].get("", {}).get("ready"):  # type: ignore[index]
                assert time.monotonic() < deadline, f"{n}'s server did not start:\n{hub_log()}"
                time.sleep(0.5)

        ready = time.monotonic()
        at_start = {n: limits.usage(n) for n in names}
        print("\nafter the servers' start: " + ", ".join(
            f"{n} cpu {u.cpu_seconds} s, memory {u.memory_now}" for n, u in at_start.items()))
        nb = make_notebook().encode()
        kernels = {}
        for n in names:
            code, out = hub.request("PUT", f"/user/{n}/api/contents/class-lab.ipynb",
                                    raw=json.dumps({"type": "notebook", "format": "json",
                                                    "content": json.loads(nb)}).encode())
            assert code in (200, 201), f"{n}: upload: {code} {out[:300]!r}"
            kernels[n] = start_kernel(hub, n)

        # the notebook as the learner's server stored it, cell by cell in the learner's kernel
        code, out = hub.request("GET", f"/user/{names[0]}/api/contents/class-lab.ipynb")
        cells = [c["source"] for c in json.loads(out)["content"]["cells"] if c["cell_type"] == "code"]
        assert len(cells) == len(NOTEBOOK_CELLS)
        where = ("import os\nos.chdir(os.path.expanduser('~/flannel-lab'))\n"
                 "print('NETNS', os.stat('/run/netns/class-master').st_ino, 'PID', os.getpid())\n")

        async def run_notebook(n: str) -> tuple[str, str]:
            outs = []
            for src in cells + [where]:
                out, err = await run_code(hub, n, kernels[n], src, 150)
                outs.append(out)
                if err:
                    return "".join(outs), err
            return "".join(outs), ""

        async def all_three() -> list[tuple[str, str]]:
            return list(await asyncio.gather(*(run_notebook(n) for n in names)))

        t0 = time.monotonic()
        results = dict(zip(names, asyncio.run(all_three())))
        took = time.monotonic() - t0
        inos, pids = {}, {}
        for n, (out, err) in results.items():
            assert "NOTEBOOK DONE" in out and not err, f"{n}'s notebook failed:\n{out[-3000:]}\n{err[-3000:]}"
            inos[n] = int(out.split("NETNS ")[1].split()[0])
            pids[n] = int(out.split("PID ")[1].split()[0])
        print(f"\nthree notebooks at once: {took:.0f} s (servers ready after {ready - t_hub:.0f} s)")
        # three labs called `class`: three different network namespaces, none of them the host's
        assert len(set(inos.values())) == 3, inos
        host_netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert "class-master" not in host_netns.split()

        a, b, c = names
        # a cannot see into b's sandbox: b's kernel's namespaces are closed to a
        probe = (f"import os\ntry:\n    os.open('/proc/{pids[b]}/ns/net', os.O_RDONLY); print('OPENED')\n"
                 f"except OSError as e:\n    print('DENIED', e.errno)\n"
                 f"print(os.path.exists('/proc/{pids[b]}/root/run/netns/class-master'))\n")
        out, err = asyncio.run(run_code(hub, a, kernels[a], probe, 30))
        assert "DENIED" in out and "False" in out and not err, out + err
        # a's `labkit down --name class` removes a's lab only: b's and c's `class` still work
        down = ("import subprocess\nr = subprocess.run(['labkit', 'down', '--name', '{}'], capture_output=True, "
                "text=True)\nprint('EXIT', r.returncode, r.stdout, r.stderr)\n")
        out, err = asyncio.run(run_code(hub, a, kernels[a], down.format("class"), 90))
        assert "EXIT 0" in out and "removed" in out, out + err
        check = "import subprocess\nr = subprocess.run(['labkit', 'check', '--name', 'class'], capture_output=True, " \
                "text=True)\nprint('EXIT', r.returncode, r.stdout[-500:], r.stderr[-500:])\n"
        for n in (b, c):
            out, err = asyncio.run(run_code(hub, n, kernels[n], check, 90))
            if "timed out" in out:   # a ping's 7 s limit on an overloaded machine: once more
                out, err = asyncio.run(run_code(hub, n, kernels[n], check, 90))
            assert "EXIT 0" in out, f"{n}'s lab was hurt by {a}'s down: {out}{err}"
            out, err = asyncio.run(run_code(hub, n, kernels[n], down.format("class"), 90))
            assert "EXIT 0" in out, out + err

        # the trainer's view: each learner started and solved udp-8472-blocked, with one hint
        code, out = hub.request("GET", "/services/trainer/progress.json")
        assert code == 200, (code, out[:300])
        view = json.loads(out)
        per = {s["learner"]: s for s in view["summary"]}
        for n in names:
            assert per[n]["started"] == 1 and per[n]["solved"] == 1 and per[n]["hints_used"] == 1, per[n]
            assert per[n]["solved_names"] == ["udp-8472-blocked"]
        code, out = hub.request("GET", "/services/trainer/progress.csv")
        assert code == 200
        rows = [r for r in csv.DictReader(io.StringIO(out.decode())) if r["learner"] in names]
        assert sorted(r["learner"] for r in rows) == names
        assert all(r["scenario"] == "udp-8472-blocked" and r["solved"] == "True" and r["minutes"] for r in rows), rows
        code, out = hub.request("GET", "/services/trainer/")
        assert code == 200 and all(n.encode() in out for n in names)
        # a learner's own token does not open the trainer's view
        made_token = hub.api("POST", f"/users/{a}/tokens", {"note": "test", "expires_in": 600})
        code, _ = hub.request("GET", "/services/trainer/progress.json", token=made_token["token"])  # type: ignore[index]
        assert code == 403, code

        # memory and CPU per learner, as their cgroup counted them (README: classroom)
        kind, _ = limits.mechanism()
        for n in names:
            u = limits.usage(n)
            print(f"{n}: memory now {u.memory_now}, peak {u.memory_peak}, cpu {u.cpu_seconds} s, tasks {u.tasks}")
            if kind in ("cgroup1", "cgroup2"):
                assert u.memory_peak and u.memory_peak > 50 << 20 and u.cpu_seconds, (n, u)

        with concurrent.futures.ThreadPoolExecutor(3) as pool:   # stopping also stops each sandbox
            list(pool.map(lambda n: hub.api("DELETE", f"/users/{n}/server"), names))
    finally:
        if hub_proc is not None and hub_proc.poll() is None:
            os.killpg(hub_proc.pid, signal.SIGTERM)
            try:
                hub_proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(hub_proc.pid, signal.SIGKILL)
        users.remove(names)
        for n in names:
            limits.release(n)
