"""The hub's API, reachable from inside a learner's sandbox.

A sandbox has a network namespace of its own with only a loopback (``labkit.sandbox``), so a
Jupyter server started in it cannot reach the hub's API on the host's 127.0.0.1, and the
server must (it checks every login token there and reports activity for idle culling).
``labkit sandbox run --publish hub`` carries the other direction (hub to server).

This step runs first, as the learner, still outside: a short-lived child joins the sandbox
just long enough to open a listening socket on the *sandbox's* 127.0.0.1:PORT and hands it
back over a unix socket pair (SCM_RIGHTS); a relay child that stays outside accepts on it and
connects each client to the host's 127.0.0.1:PORT. Then the process execs the rest of its
command line (``labkit sandbox run ...``), keeping its pid, which JupyterHub watches.

    python -m labkit.classroom.hubreach PORT -- labkit sandbox run --publish hub -- jupyterhub-singleuser
"""
from __future__ import annotations

import array
import os
import selectors
import signal
import socket
import sys

from .. import sandbox


def _listener_inside(port: int) -> socket.socket:
    """A listening socket on the sandbox's 127.0.0.1:port, made by a child that joins it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    holder = sandbox.ensure()
    assert holder is not None
    pid = os.fork()
    if pid == 0:  # the child: join, make the socket, pass it up, exit
        code = 1
        try:
            ours.close()
            sandbox.enter(holder)
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", port))
            srv.listen(128)
            theirs.sendmsg([b"L"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [srv.fileno()]))])
            code = 0
        except Exception as e:  # noqa: BLE001  (one line to the hub's log, then out)
            print(f"hubreach: {e}", file=sys.stderr)
        finally:
            os._exit(code)
    holder.close()
    theirs.close()
    fds = array.array("i")
    msg, anc, _, _ = ours.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
    os.waitpid(pid, 0)
    ours.close()
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
    if not fds:
        raise sandbox.SandboxError(f"could not open 127.0.0.1:{port} inside the sandbox")
    return socket.socket(fileno=fds[0])


def _relay(srv: socket.socket, port: int) -> None:
    """Accept inside, connect outside, copy both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    peers: dict[socket.socket, socket.socket] = {}

    def drop(s: socket.socket) -> None:
        for x in (s, peers.pop(s, None)):
            if x is not None:
                peers.pop(x, None)
                try:
                    sel.unregister(x)
                except (KeyError, ValueError):
                    pass
                x.close()

    while True:
        for key, _ in sel.select():
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if s is srv:
                try:
                    client, _ = srv.accept()
                    outer = socket.create_connection(("127.0.0.1", port), timeout=5)
                except OSError:
                    continue
                outer.settimeout(None)
                peers[client], peers[outer] = outer, client
                for x in (client, outer):
                    sel.register(x, selectors.EVENT_READ, None)
                continue
            try:
                data = s.recv(65536)
                if data:
                    peers[s].sendall(data)
                    continue
            except (OSError, KeyError):
                pass
            drop(s)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit() or not 1024 <= int(argv[0]) <= 65535:
        print("usage: python -m labkit.classroom.hubreach PORT -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    port, cmd = int(argv[0]), argv[2:]
    try:
        srv = _listener_inside(port)
    except (sandbox.SandboxError, OSError) as e:
        print(f"hubreach: {e}", file=sys.stderr)
        return 1
    parent = os.getpid()
    if os.fork() == 0:
        try:
            sandbox._libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: ends with the server
            if os.getppid() == parent:
                _relay(srv, port)
        finally:
            os._exit(0)
    srv.close()
    os.execvp(cmd[0], cmd)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
