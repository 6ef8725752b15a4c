"""`labkit sandbox run|status|stop`: parsing and printing only (README: Rootless labs).

Light on purpose, like labkit.sandbox: ``python -m labkit sandbox run -- CMD`` (how
JupyterHub starts a learner's server) imports neither the lab nor pyroute2, scapy and
grpc, so it starts in a few tens of milliseconds. labkit.cli adds these verbs to its parser.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import sandbox


class _Parser(argparse.ArgumentParser):
    """As labkit.cli's: a usage error is one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _port(value: str) -> int:
    """--publish PORT (1024-65535), or `hub`: the port JupyterHub gave the server."""
    if value == "hub":
        from urllib.parse import urlsplit
        value = str(urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).port or "")
    if not value.isdigit() or not 1024 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1024-65535 or `hub`; found {value!r}")
    return int(value)


def _api_port(value: str) -> int:
    """--connect PORT, or `hub`: the port of the Hub's API (JUPYTERHUB_API_URL)."""
    if value == "hub":
        from urllib.parse import urlsplit
        url = urlsplit(os.environ.get("JUPYTERHUB_API_URL", ""))
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise argparse.ArgumentTypeError(f"JUPYTERHUB_API_URL must be on 127.0.0.1; found {url.geturl()!r}")
        value = str(url.port or "")
    return _port(value)


def cmd_run(a: argparse.Namespace) -> int:
    if not a.command:
        raise sandbox.SandboxError("nothing to run: labkit sandbox run -- COMMAND [ARGS...]")
    listeners = [sandbox.listen_on_host(port) for port in a.publish or []]
    channel = sandbox.start_host_relay(a.connect or [])
    sandbox.enter_early(force=True)  # root too: asked for by name
    sandbox.hand_over(channel, a.connect or [])
    sandbox.start_relay(listeners)
    try:
        os.execvp(a.command[0], a.command)
    except OSError as e:
        print(f"labkit: {a.command[0]}: {e.strerror}", file=sys.stderr)
        return 127


def cmd_status(a: argparse.Namespace) -> int:
    st = sandbox.status()
    if a.json:
        print(json.dumps(st))
    elif st["inside"]:
        print(f"inside the sandbox; labs: {' '.join(st['labs']) or '-'}")  # type: ignore[arg-type]
    elif st["running"]:
        print(f"sandbox of uid {st['uid']}: holder pid {st['holder']}, {st['processes']} processes, "
              f"labs: {' '.join(st['labs']) or '-'}")  # type: ignore[arg-type]
    else:
        print(f"no sandbox for uid {st['uid']} ({st['runtime_dir']}); making one here: {st['probe']}")
    if st.get("orphans"):
        print(f"WARNING: {st['orphans']} processes of a sandbox whose holder died keep labs nobody can reach: "
              "labkit sandbox stop ends them")
    return 0 if st["running"] else 3


def cmd_stop(a: argparse.Namespace) -> int:
    n = sandbox.stop()
    print(f"sandbox stopped ({n} processes ended)" if n else "no sandbox running")
    return 0


def add_parser(sub: "argparse._SubParsersAction[Any]") -> None:
    """The `sandbox` command and its verbs, added to labkit's parser."""
    sb = sub.add_parser("sandbox", help="your rootless sandbox: run a command in it, its status, stop it "
                                        "(README: Rootless labs)",
                        description="An ordinary user's labs live in a sandbox: a user, mount and network "
                                    "namespace of their own (private /run/netns and /run/labkit), kept by a "
                                    "holder process. "
                                    "Every labkit command joins it first; `run` starts any program in it.")
    sbs = sb.add_subparsers(dest="verb", required=True, metavar="VERB")
    sr = sbs.add_parser("run", help="run CMD inside your sandbox (made if needed): stdin, stdout and the exit "
                                    "status are CMD's",
                        description="e.g. labkit sandbox run --publish 8888 -- jupyter lab --ip 127.0.0.1 --port 8888")
    sr.add_argument("--publish", type=_port, action="append", metavar="PORT",
                    help="relay the host's 127.0.0.1:PORT to the sandbox's 127.0.0.1:PORT while CMD runs "
                         "(repeatable; `hub`: the port of $JUPYTERHUB_SERVICE_URL)")
    sr.add_argument("--connect", type=_api_port, action="append", metavar="PORT",
                    help="the other way: the sandbox's 127.0.0.1:PORT leads to the host's 127.0.0.1:PORT "
                         "(repeatable; `hub`: the port of $JUPYTERHUB_API_URL, which must be on 127.0.0.1)")
    sr.add_argument("command", nargs=argparse.REMAINDER)
    sr.set_defaults(fn=cmd_run)
    ss = sbs.add_parser("status", help="is there a sandbox, its holder, labs and processes")
    ss.add_argument("--json", action="store_true", help="machine-readable output")
    ss.set_defaults(fn=cmd_status)
    sbs.add_parser("stop", help="end every process in your sandbox: its labs vanish with it"
                   ).set_defaults(fn=cmd_stop)


def main(argv: Sequence[str]) -> int:
    """`python -m labkit sandbox ...` without importing labkit.cli."""
    p = _Parser(prog="labkit")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(list(argv))
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    try:
        return int(args.fn(args))
    except sandbox.SandboxError as e:
        print(f"labkit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
