"""`docker` inside a lab node: the commands the blog (and a flannel debugging session) uses.

run -d / run -it, exec, ps [-a -q --filter --format], rm -f, stop, start, inspect -f '{{.NetworkSettings.IPAddress}}',
logs [-f] [-n N].
A lab container is a network namespace on docker0 sharing the node's files; the
image name is accepted and not used (see `docker run --help`). When a detached
container's command ends, the node's dockerd stops it (labkit/docker/containers.py reap).
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import netns
from ..docker import containers
from ..errors import LabError
from . import current, run

if TYPE_CHECKING:
    from ..lab import Lab
    from ..node import Node
    from ..state import LabState

RUN_HELP = """Run a command in a new container.

In this lab a container is a network namespace attached to docker0 by a veth pair,
with an address from docker0's subnet, the docker MTU and a default route via
docker0; it shares the node's files. IMAGE is accepted and not pulled or used:
the COMMAND runs with the node's programs (busybox's sleep, ping, sh all exist).
"""
ADJ = ["admiring", "brave", "eager", "focused", "gifted", "jolly", "keen", "nifty", "quirky", "zen"]
NAMES = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "perlman", "cerf"]


def _ago(t: float) -> str:
    d = int(time.time() - t)
    if d < 60:
        return f"{d} seconds ago" if d != 1 else "1 second ago"
    if d < 3600:
        return f"{d // 60} minutes ago" if d >= 120 else "About a minute ago"
    return f"{d // 3600} hours ago"


def _random_name(lab: Lab, node: Node) -> str:
    """docker's adjective_scientist name for an unnamed container, never one in use
    (docker draws again too, and adds a digit once the pairs run out)."""
    used = {r.name for r in containers.list_all(lab.state, node.name)}
    free = [f"{adj}_{who}" for adj in ADJ for who in NAMES if f"{adj}_{who}" not in used]
    if free:
        return random.choice(free)
    return next(f"{adj}_{who}{n}" for n in itertools.count(1) for adj in ADJ for who in NAMES
                if f"{adj}_{who}{n}" not in used)


def cmd_run(lab: Lab, node: Node, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="docker run", description=RUN_HELP,
                                usage="docker run [OPTIONS] IMAGE [COMMAND] [ARG...]",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--name")
    p.add_argument("--restart", default="no")
    p.add_argument("--rm", action="store_true")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    name = a.name or _random_name(lab, node)
    if a.restart not in ("no", "always", "unless-stopped", "on-failure"):
        raise LabError(f'docker: invalid restart policy "{a.restart}".')
    if a.detach:
        rec = containers.run(lab.state, node.name, name, a.command or ["sleep", "infinity"],
                             restart=a.restart, image=a.image, auto_remove=a.rm)
        print(rec.id)
        return 0
    rec = containers.run(lab.state, node.name, name, None, restart=a.restart, image=a.image)
    try:
        return subprocess.call(netns.nsexec_argv(rec.netns, a.command or ["sh"],
                                                 node.view(hostname=rec.id[:12])))
    finally:  # the container's main process has exited: the container stops
        (containers.remove if a.rm else containers.stop)(lab.state, node.name, name)


def _get(lab: Lab, node: Node, name: str) -> containers.Container:
    rec = containers.get(lab.state, node.name, name)
    if rec is None:
        raise LabError(f"Error response from daemon: No such container: {name}")
    return rec


def cmd_exec(lab: Lab, node: Node, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="docker exec", usage="docker exec [OPTIONS] CONTAINER COMMAND [ARG...]",
                                description="Run a command in a running container.")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open (it always is here)")
    p.add_argument("-t", "--tty", action="store_true", help="accepted: the command gets this terminal")
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set an environment variable for the command")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if not a.command:
        raise LabError('"docker exec" requires at least 2 arguments.')
    for kv in a.env:
        if "=" not in kv or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", kv.partition("=")[0]):
            raise LabError(f"invalid environment variable: {kv} (give NAME=VALUE)")
    rec = _get(lab, node, a.container)
    if not rec.running:
        raise LabError(f"Error response from daemon: Container {rec.id[:12]} is not running")
    command = ["env", "--", *a.env, *a.command] if a.env else a.command
    return subprocess.call(netns.nsexec_argv(rec.netns, command, node.view(hostname=rec.id[:12])))


# `docker ps --format` fields and their column titles (a `table ...` format prints the titles)
PS_TITLES = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
             "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
             "Networks": "NETWORKS", "State": "STATE", "Labels": "LABELS", "Mounts": "MOUNTS"}
PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_FILTERS = ("name", "id", "status")


def ps_fields(r: containers.Container, no_trunc: bool = False) -> dict[str, str]:
    """One container as `docker ps` names its fields."""
    cmd = " ".join(r.command or ["sh"])
    created = r.created or time.time()
    return {"ID": r.id if no_trunc else r.id[:12], "Image": r.image,
            "Command": '"' + (cmd if no_trunc or len(cmd) <= 18 else cmd[:17] + "…") + '"',
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
            "RunningFor": _ago(created),
            "Status": f"Up {_ago(r.started or time.time())[:-4]}" if r.running
            else f"{'Restarting' if r.restart_at else 'Exited'} ({137 if r.exit_code is None else r.exit_code})",
            "Ports": "", "Names": r.name, "Networks": "bridge",
            "State": "running" if r.running else "restarting" if r.restart_at else "exited",
            "Labels": "", "Mounts": ""}


def ps_filter(filters: list[str]) -> Callable[[containers.Container], bool]:
    """`--filter name=X|id=X|status=running|restarting|exited`: docker matches a name or id as a part
    (name) or a prefix (id); several values of one key are alternatives."""
    want: dict[str, list[str]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq or key not in PS_FILTERS:
            raise LabError(f'Error response from daemon: invalid filter \'{f}\' (this lab knows '
                           f'{", ".join(k + "=..." for k in PS_FILTERS)})')
        want.setdefault(key, []).append(value)

    def ok(r: containers.Container) -> bool:
        state = "running" if r.running else "restarting" if r.restart_at else "exited"
        return (("name" not in want or any(v in r.name for v in want["name"]))
                and ("id" not in want or any(r.id.startswith(v) for v in want["id"]))
                and ("status" not in want or state in want["status"]))
    return ok


def render_ps(rows: list[dict[str, str]], fmt: str) -> str:
    """`docker ps --format FMT`: Go-template fields per row; a `table ` format gets a title row
    and columns padded as docker's tabwriter does (3 spaces between columns). As docker does,
    a typed backslash-t or backslash-n (the shell leaves them alone) is a tab or a newline."""
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    if not fmt.startswith("table"):
        return "\n".join(render_format(fmt, r) for r in rows)
    body = fmt[len("table"):].strip() or PS_DEFAULT[len("table "):]
    title = re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: PS_TITLES.get(m.group(1), m.group(1).upper()), body)
    lines = [title.split("\t")] + [render_format(body, r).split("\t") for r in rows]
    widths = [max(len(line[i]) if i < len(line) else 0 for line in lines) for i in range(max(map(len, lines)))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def cmd_ps(lab: Lab, node: Node, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="docker ps", usage="docker ps [OPTIONS]",
                                description="List containers (running ones; -a for all).")
    p.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    p.add_argument("--no-trunc", action="store_true", help="whole ids and commands")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="name=, id= or status=running|restarting|exited")
    p.add_argument("--format", default=None, help="a Go template such as '{{.Names}}' or 'table {{.ID}}\\t{{.Names}}'")
    a = p.parse_args(argv)
    keep = ps_filter(a.filter)
    # as docker's, the default list has the containers that run and those about to restart
    recs = [r for r in containers.list_all(lab.state, node.name)
            if (r.running or r.restart_at is not None or a.all) and keep(r)]
    rows = [ps_fields(r, a.no_trunc) for r in recs]
    out = render_ps(rows, "{{.ID}}" if a.quiet else (a.format or PS_DEFAULT))
    if out:
        print(out)
    return 0


def cmd_rm(lab: Lab, node: Node, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="docker rm", usage="docker rm [OPTIONS] CONTAINER [CONTAINER...]",
                                description="Remove one or more containers.")
    p.add_argument("-f", "--force", action="store_true", help="stop a running container first")
    p.add_argument("-v", "--volumes", action="store_true", help="accepted (a lab container has no volumes)")
    p.add_argument("names", nargs="+", metavar="CONTAINER")
    a = p.parse_args(argv)
    rc = 0
    for name in a.names:
        rec = containers.get(lab.state, node.name, name)
        if rec is None:
            print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
            rc = 1
            continue
        if rec.running and not a.force:
            print(f"Error response from daemon: You cannot remove a running container {rec.id}. "
                  "Stop the container before attempting removal or force remove", file=sys.stderr)
            rc = 1
            continue
        containers.remove(lab.state, node.name, rec.name)
        print(name)
    return rc


def _each_container(verb: str, action: Callable[[LabState, str, str], object], description: str,
                    *options: tuple[tuple[str, ...], dict[str, Any]]) -> Callable[[Lab, Node, list[str]], int]:
    """`docker stop|start [OPTIONS] NAME...`: the action on each named container, echoing its name."""
    def cmd(lab: Lab, node: Node, argv: list[str]) -> int:
        p = argparse.ArgumentParser(prog=f"docker {verb}", usage=f"docker {verb} [OPTIONS] CONTAINER [CONTAINER...]",
                                    description=description)
        for flags, kw in options:
            p.add_argument(*flags, **kw)
        p.add_argument("names", nargs="+", metavar="CONTAINER")
        for name in p.parse_args(argv).names:
            action(lab.state, node.name, _get(lab, node, name).name)
            print(name)
        return 0
    return cmd


cmd_stop = _each_container("stop", containers.stop, "Stop one or more running containers.",
                           (("-t", "--time"), {"type": int, "default": 10,
                                               "help": "accepted: a lab container's processes are killed at once"}))
cmd_start = _each_container("start", containers.start, "Start one or more stopped containers (detached).")


def inspect_view(rec: containers.Container) -> dict:
    """The part of `docker inspect` a network lab needs."""
    running = rec.running
    return {
        "Id": rec.id, "Name": "/" + rec.name, "Image": rec.image,
        "State": {"Running": running, "Status": "running" if running else "exited",
                  "ExitCode": 0 if running else (137 if rec.exit_code is None else rec.exit_code)},
        "Config": {"Cmd": rec.command or ["sh"], "Image": rec.image},
        "HostConfig": {"RestartPolicy": {"Name": rec.restart}},
        "NetworkSettings": {
            "IPAddress": (rec.ip or "") if running else "",
            "Gateway": (rec.gateway or "") if running else "",
            "IPPrefixLen": (rec.prefixlen or 0) if running else 0,
            "SandboxKey": f"/run/netns/{rec.netns}",
        },
    }


def render_format(fmt: str, data: dict) -> str:
    """Go template subset: {{.A.B}} and {{json .A}} fields."""
    def field(path: str) -> object:
        cur: object = data
        for part in path.strip(".").split("."):
            if part:
                cur = cur.get(part, "") if isinstance(cur, dict) else ""
        return cur

    def repl(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(field(expr[5:].strip()))
        value = field(expr)
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return re.sub(r"\{\{(.*?)\}\}", repl, fmt)


def cmd_inspect(lab: Lab, node: Node, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="docker inspect")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    views = [inspect_view(_get(lab, node, n)) for n in a.names]
    if a.format:
        for v in views:
            print(render_format(a.format, v))
    else:
        print(json.dumps(views, indent=4))
    return 0


def _tail(value: str) -> int | None:
    """--tail: "all" (None) or a number of lines."""
    if value == "all":
        return None
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f'invalid value for "tail": {value!r} (a number of lines, or "all")')
    return int(value)


def cmd_logs(lab: Lab, node: Node, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="docker logs", usage="docker logs [OPTIONS] CONTAINER",
                                description="Fetch the logs of a container: what its command wrote.")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output until the container stops")
    p.add_argument("-n", "--tail", type=_tail, default=None, help='lines to show from the end (default "all")')
    p.add_argument("name", metavar="CONTAINER")
    a = p.parse_args(argv)
    rec = _get(lab, node, a.name)
    path = containers.log_path(lab.state, node.name, rec.name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:   # started without a command of its own: nothing written
        data = b""
    lines = data.splitlines(keepends=True)
    if a.tail is not None:
        lines = lines[len(lines) - a.tail:] if a.tail else []
    out = sys.stdout.buffer
    out.write(b"".join(lines))
    out.flush()
    pos = len(data)
    try:
        while a.follow:
            now = containers.get(lab.state, node.name, rec.name) or rec
            running = now.running and (now.pid is None or netns.alive(now.pid))
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    more = f.read()
            except FileNotFoundError:
                more = b""
            out.write(more)
            out.flush()
            pos += len(more)
            if not running:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS = {"run": cmd_run, "exec": cmd_exec, "ps": cmd_ps, "rm": cmd_rm, "stop": cmd_stop, "start": cmd_start,
            "inspect": cmd_inspect, "logs": cmd_logs}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("Usage: docker COMMAND\n\nCommands (lab subset):\n  " + "\n  ".join(COMMANDS))
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        print(f"docker: '{argv[0]}' is not a docker command in this lab (it has: {', '.join(COMMANDS)}).",
              file=sys.stderr)
        return 1
    lab, node = current()
    if argv[0] != "inspect" and containers.daemon_info(lab.state, node.name) is None:
        raise LabError("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                       "Is the docker daemon running?")
    return cmd(lab, node, argv[1:])


if __name__ == "__main__":
    run(main)
