"""A learner's sandbox: labs without root, in a user + mount namespace the learner owns.

Rootless containers (rootlesskit, podman) showed the way: an ordinary user may create a
*user namespace* in which they are uid 0, with every capability, but only over objects
that namespace owns. Network namespaces created from inside belong to it, so veth pairs,
bridges, VXLAN devices, routes, iptables-nft rules and ``net.*`` sysctls all work there,
while the host's own network namespace, its ``/run/netns`` and every other user's labs
stay out of reach: the kernel checks each operation against the owning user namespace.

One sandbox per user:

* a small **holder** process (``python -m labkit.sandbox --holder``) creates the user
  namespace (uid/gid map ``0 <uid> 1``, setgroups denied: no newuidmap needed) and a mount
  namespace with a private tmpfs on ``/run``, so the sandbox has its own ``/run/netns``
  and ``/run/labkit``; the user's runtime directory is bound back so it keeps its path.
  It also has a network namespace of its own, with only a loopback: tools such as
  ``ip netns add`` step back into the namespace they came from, which must be one the
  sandbox owns. Nothing inside can listen on the host; ``labkit sandbox run --publish
  PORT`` relays the host's 127.0.0.1:PORT to the sandbox's (a Jupyter server for the hub).
* it is found through a unix socket in the user's runtime directory
  (``$XDG_RUNTIME_DIR/labkit/``, or ``/tmp/labkit-<uid>/`` created 0700 and checked);
  ``SO_PEERCRED`` gives the holder's pid, and its namespaces are opened from ``/proc``.
* joining a user namespace (``setns``) is allowed only to a single-threaded process, so
  every ``labkit`` command joins first thing, before anything starts a thread
  (:func:`enter_early` from ``labkit/__main__.py`` and ``cli.main``); a process that is
  already threaded re-executes itself. ``labkit sandbox run -- CMD`` joins and execs CMD:
  a learner's Jupyter server started that way has its kernels and terminals inside.

Root keeps working without a sandbox unless asked (``LABKIT_SANDBOX=1`` or ``sandbox run``).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4): the uid owning a user namespace (ioctl_ns(2))

# Written by the holder into the sandbox's own /run: it exists only inside a sandbox.
MARKER = "/run/.labkit-sandbox"
SOCKET_NAME = "sandbox.sock"
# Host paths under /run that a sandbox keeps (bound back over its private /run tmpfs)
KEEP_UNDER_RUN = ("/run/systemd/resolve",)  # /etc/resolv.conf points there on systemd hosts

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    """A sandbox cannot be made or joined: one line the user can act on."""


@dataclass
class Holder:
    """A running sandbox, seen from outside: its holder's pid and namespace files."""

    pid: int
    user_fd: int
    mnt_fd: int
    net_fd: int

    def close(self) -> None:
        for fd in (self.user_fd, self.mnt_fd, self.net_fd):
            try:
                os.close(fd)
            except OSError:
                pass


# -- asking where we are ------------------------------------------------------------------

def inside() -> bool:
    """True when this process runs inside a labkit sandbox (its user and mount namespace).

    The marker file lives on the sandbox's private /run, so no process outside sees it;
    the uid map tells a sandbox from the initial user namespace, where root could have
    written a file of that name."""
    if not os.path.exists(MARKER):
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def wanted() -> bool:
    """Does this labkit process belong in a sandbox? Ordinary users always; root only when
    asked (``LABKIT_SANDBOX=1``), so root's labs work as they always did."""
    if inside():
        return False
    return os.geteuid() != 0 or os.environ.get("LABKIT_SANDBOX") == "1"


def threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


# -- the host: can an ordinary user have a user namespace here? ------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def blocker_reason(err: int, sysctls: dict[str, str | None]) -> str:
    """Why the host refused a user namespace, and the one command that allows it.

    `sysctls` maps the deciding settings to their values (None: not in this kernel):
    Debian 10's ``kernel.unprivileged_userns_clone``, Ubuntu 24.04's AppArmor switch
    ``kernel.apparmor_restrict_unprivileged_userns`` and ``user.max_user_namespaces``."""
    if sysctls.get("kernel.unprivileged_userns_clone") == "0":
        return ("unprivileged user namespaces are off (kernel.unprivileged_userns_clone=0); "
                "an administrator enables them with: sysctl -w kernel.unprivileged_userns_clone=1")
    if sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1); "
                "an administrator allows them with: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 "
                "(or an AppArmor profile with `userns,` for this Python)")
    if sysctls.get("user.max_user_namespaces") == "0":
        return ("user namespaces are disabled (user.max_user_namespaces=0); "
                "an administrator enables them with: sysctl -w user.max_user_namespaces=15000")
    return (f"the kernel refused a user namespace ({os.strerror(err)}); in a container the "
            "seccomp profile may forbid unshare (docker: --security-opt seccomp=unconfined)")


def host_sysctls() -> dict[str, str | None]:
    return {k: _read("/proc/sys/" + k.replace(".", "/")) for k in
            ("kernel.unprivileged_userns_clone", "kernel.apparmor_restrict_unprivileged_userns",
             "user.max_user_namespaces")}


def probe() -> str:
    """"" when this user may create a user namespace here, else why not (blocker_reason).
    Tried in a child process: unshare would change the caller."""
    pid = os.fork()
    if pid == 0:
        ok = _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0
        os._exit(0 if ok else min(ctypes.get_errno(), 255) or 1)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "" if code == 0 else blocker_reason(code, host_sysctls())


# -- the runtime directory ---------------------------------------------------------------------

def _private_dir(path: str, uid: int, create: bool) -> bool:
    """`path` is a real directory (no symlink) owned by `uid`, closed to others; created
    0700 when missing and `create`. A directory that fails the test is never used."""
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077


def runtime_dir() -> str:
    """The folder holding this user's sandbox socket and lock.

    ``LABKIT_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/labkit`` (systemd-logind makes
    /run/user/<uid> for a login), else ``/tmp/labkit-<uid>``: created 0700 by us, and
    refused when it exists but is a symlink, another user's or open to others (someone
    else could otherwise plant a socket there)."""
    uid = os.getuid()
    given = os.environ.get("LABKIT_RUNTIME_DIR")
    if given:
        if not _private_dir(given, uid, create=True):
            raise SandboxError(f"LABKIT_RUNTIME_DIR={given} must be a directory of yours, mode 0700")
        return given
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _private_dir(xdg, uid, create=False):
        path = os.path.join(xdg, "labkit")
        if _private_dir(path, uid, create=True):
            return path
    path = f"/tmp/labkit-{uid}"
    if not _private_dir(path, uid, create=True):
        raise SandboxError(f"{path} exists and is not a private directory of uid {uid} (a symlink, "
                           "another user's, or open to others): remove it, or set LABKIT_RUNTIME_DIR")
    return path


# -- finding and joining ---------------------------------------------------------------------

def _setns(fd: int, nstype: int, what: str) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot join the sandbox's {what} namespace: {os.strerror(err)}")


def connect(rdir: str) -> Holder | None:
    """The running sandbox of this user, or None. The holder's pid comes from the kernel
    (SO_PEERCRED), its namespaces are opened and checked to be this user's, and only then
    the holder answers: it was alive, so the pid was its own, when they were opened."""
    path = os.path.join(rdir, SOCKET_NAME)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None
    try:
        pid, uid, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       struct.calcsize("3i")))
        if uid != os.getuid():
            raise SandboxError(f"{path} is served by uid {uid}, not by you: remove {rdir}")
        try:
            fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in ("user", "mnt", "net")]
        except OSError:
            return None
        holder = Holder(pid, *fds)
        owner = ctypes.c_uint32()
        if _libc.ioctl(holder.user_fd, NS_GET_OWNER_UID, ctypes.byref(owner)) != 0 or owner.value != os.getuid():
            holder.close()
            raise SandboxError(f"the sandbox process {pid} does not belong to you")
        s.sendall(b"?")
        if s.recv(16) != b"ok\n":
            holder.close()
            return None
        return holder
    except OSError:
        return None
    finally:
        s.close()


def scan() -> Holder | None:
    """This user's holder found through /proc, when its socket is gone (logind removes
    /run/user/<uid> at the last logout; a session without XDG_RUNTIME_DIR looks in /tmp):
    our own process named labkit-sandbox whose /run marker names it as the holder."""
    mine = os.getuid()
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{p}").st_uid != mine or _read(f"/proc/{p}/comm") != "labkit-sandbox":
                continue
            with open(f"/proc/{p}/root{MARKER}") as f:
                info = json.load(f)
            if info.get("holder") != int(p) or info.get("uid") != mine:
                continue
            holder = Holder(int(p), *[os.open(f"/proc/{p}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                                      for ns in ("user", "mnt", "net")])
        except (OSError, ValueError, AttributeError):
            continue
        owner = ctypes.c_uint32()
        if (_libc.ioctl(holder.user_fd, NS_GET_OWNER_UID, ctypes.byref(owner)) == 0 and owner.value == mine
                and _read(f"/proc/{p}/comm") == "labkit-sandbox"):  # still it: the fds are its namespaces
            return holder
        holder.close()
    return None


def find(rdir: str) -> Holder | None:
    """The running sandbox: through its socket, else through /proc."""
    return connect(rdir) or scan()


def _lock(rdir: str) -> int:
    fd = os.open(os.path.join(rdir, "sandbox.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def ensure(create: bool = True) -> Holder | None:
    """This user's sandbox, started when there is none (and `create`)."""
    rdir = runtime_dir()
    holder = find(rdir)
    if holder is not None or not create:
        return holder
    lock = _lock(rdir)  # two commands starting at once make one sandbox
    try:
        holder = find(rdir)
        if holder is None:
            _start_holder(rdir)
            holder = connect(rdir)
        if holder is None:
            raise SandboxError("the sandbox started but does not answer")
        return holder
    finally:
        os.close(lock)


def _start_holder(rdir: str) -> None:
    why = probe()
    if why:
        raise SandboxError(f"cannot make a sandbox for a rootless lab: {why}")
    path = os.path.join(rdir, SOCKET_NAME)
    try:
        os.unlink(path)  # a dead holder's socket
    except FileNotFoundError:
        pass
    r, w = os.pipe()
    try:
        # the holder forks once more and its parent exits: no zombie under this command
        subprocess.run([sys.executable, "-m", "labkit.sandbox", "--holder", path, str(w)],
                       pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True, cwd="/", timeout=30)
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            r = -1
            answer = f.read().decode(errors="replace").strip()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    if answer != "ok":
        raise SandboxError(f"cannot make a sandbox for a rootless lab: {answer or 'the holder died'}")


def enter(holder: Holder) -> None:
    """Join the sandbox: its user namespace, then its mount and network namespaces; the
    working directory is kept (setns to a mount namespace moves it to the root)."""
    if threads() != 1:
        raise SandboxError("a process can join a user namespace only while it is single-threaded")
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None
    try:
        _setns(holder.user_fd, CLONE_NEWUSER, "user")
        _setns(holder.mnt_fd, CLONE_NEWNS, "mount")
        _setns(holder.net_fd, CLONE_NEWNET, "network")
    finally:
        holder.close()
    for d in (cwd, os.environ.get("HOME"), "/"):
        try:
            if d:
                os.chdir(d)
                break
        except OSError:
            continue


def enter_early(argv: Sequence[str] | None = None, force: bool = False) -> None:
    """Join (or create) this user's sandbox when this process belongs there.

    Called first thing by every labkit entry point. A process that already has threads
    cannot join: it is re-executed as ``python -m labkit ARGS`` (a fresh process, which
    joins before importing anything that could start one)."""
    if inside() or not (force or wanted()):
        return
    if threads() != 1:
        if os.environ.get("LABKIT_SANDBOX_REEXEC"):
            raise SandboxError("a process can join a user namespace only while it is single-threaded")
        os.environ["LABKIT_SANDBOX_REEXEC"] = "1"
        args = list(sys.argv[1:] if argv is None else argv)
        os.execv(sys.executable, [sys.executable, "-m", "labkit", *args])
    holder = ensure()
    assert holder is not None
    enter(holder)
    os.environ["LABKIT_SANDBOX"] = "1"  # children (and a re-exec) know what they are in


# -- publishing a loopback port -----------------------------------------------------------------

def _listen_loopback(port: int, failure: str) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` of the current network namespace (a socket
    stays in the namespace it was made in)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("127.0.0.1", port))
    except OSError as e:
        srv.close()
        raise SandboxError(f"{failure}: {e.strerror}") from e
    srv.listen(128)
    return srv


def listen_on_host(port: int) -> socket.socket:
    """The host's 127.0.0.1:`port`, made before joining the sandbox."""
    return _listen_loopback(port, f"cannot publish 127.0.0.1:{port}")


def start_relay(listeners: list[socket.socket]) -> None:
    """Fork a relay (already inside the sandbox): each connection accepted on the host's
    127.0.0.1:PORT is joined to the sandbox's 127.0.0.1:PORT. It ends with its parent
    (PR_SET_PDEATHSIG), i.e. with the command `sandbox run` became."""
    if not listeners:
        return
    parent = os.getpid()
    if os.fork() != 0:
        for srv in listeners:
            srv.close()
        return
    try:
        _libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(0)
        _relay(listeners)
    finally:
        os._exit(0)


def start_host_relay(ports: list[int]) -> socket.socket | None:
    """The other direction, for `sandbox run --connect PORT`: the sandbox's 127.0.0.1:PORT
    leads to the host's 127.0.0.1:PORT (JupyterHub's API, for a server inside). Forked
    *before* joining, this relay stays in the host's network namespace, where it connects;
    it receives the listening sockets, made inside, over the returned channel
    (:func:`hand_over`), and ends with its parent."""
    if not ports:
        return None
    here, there = socket.socketpair()
    parent = os.getpid()
    if os.fork() != 0:
        there.close()
        return here
    try:
        here.close()
        _libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(0)
        _, fds, _, _ = socket.recv_fds(there, 16, len(ports))
        there.close()
        if fds:
            _relay([socket.socket(fileno=fd) for fd in fds])
    finally:
        os._exit(0)


def hand_over(channel: socket.socket | None, ports: list[int]) -> None:
    """Inside the sandbox: listen on 127.0.0.1:PORT for each port and give the sockets to
    the host-side relay (start_host_relay)."""
    if channel is None:
        return
    listeners = []
    for port in ports:
        listeners.append(_listen_loopback(
            port, f"cannot listen on the sandbox's 127.0.0.1:{port} for --connect"))
    socket.send_fds(channel, [b"L"], [srv.fileno() for srv in listeners])
    for srv in listeners:
        srv.close()
    channel.close()


def _relay(listeners: list[socket.socket]) -> None:
    import selectors
    sel = selectors.DefaultSelector()
    for srv in listeners:
        sel.register(srv, selectors.EVENT_READ, ("listen", srv.getsockname()[1]))
    peers: dict[socket.socket, socket.socket] = {}

    def drop(sock: socket.socket) -> None:
        for x in (sock, peers.pop(sock, None)):
            if x is not None:
                peers.pop(x, None)
                try:
                    sel.unregister(x)
                except (KeyError, ValueError):
                    pass
                x.close()

    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data[0] == "listen":
                try:
                    client, _ = sock.accept()
                except OSError:
                    continue
                try:
                    inner = socket.create_connection(("127.0.0.1", key.data[1]), timeout=2)
                except OSError:
                    client.close()  # nothing listens inside yet: the caller retries
                    continue
                inner.settimeout(None)
                peers[client], peers[inner] = inner, client
                for x in (client, inner):
                    sel.register(x, selectors.EVENT_READ, ("pipe", 0))
                continue
            try:
                data = sock.recv(65536)
                if data:
                    peers[sock].sendall(data)
                    continue
            except (OSError, KeyError):
                pass
            drop(sock)


# -- status and stop ----------------------------------------------------------------------------

def _userns_ino(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino
    except OSError:
        return None


def members(holder_pid: int) -> list[int]:
    """Every process in the holder's user namespace (only our own are visible to us)."""
    ino = _userns_ino(holder_pid)
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and ino is not None and _userns_ino(p) == ino]


def status() -> dict[str, object]:
    """What `labkit sandbox status` shows: is there a sandbox, its holder, labs, processes."""
    out: dict[str, object] = {"inside": inside(), "uid": os.getuid()}
    if inside():
        labs = sorted(d for d in _listdir("/run/labkit") if not d.startswith("."))
        out.update(running=True, labs=labs, netns=_listdir("/run/netns"))
        return out
    rdir = runtime_dir()
    holder = find(rdir)
    out["runtime_dir"] = rdir
    out["orphans"] = len(orphans())  # processes of a sandbox whose holder died (`stop` ends them)
    if holder is None:
        out["running"] = False
        out["probe"] = probe() or "ok"
        return out
    try:
        root = f"/proc/{holder.pid}/root"
        out.update(running=True, holder=holder.pid, processes=len(members(holder.pid)),
                   labs=sorted(d for d in _listdir(root + "/run/labkit") if not d.startswith(".")),
                   netns=_listdir(root + "/run/netns"))
    finally:
        holder.close()
    return out


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def orphans() -> list[int]:
    """This user's processes in a labkit sandbox whose holder is gone (killed, OOM): they
    keep its labs alive, unreachable. Found by the marker in their /run; only our own
    processes are looked at (root's `stop` never touches a learner's)."""
    mine, own_ns = os.getuid(), _userns_ino("self")
    live = set()
    holder = find(runtime_dir())
    if holder is not None:
        holder.close()
        live = set(members(holder.pid))
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{p}").st_uid != mine or _userns_ino(p) in (None, own_ns) or int(p) in live:
                continue
            if os.path.exists(f"/proc/{p}/root{MARKER}"):
                found.append(int(p))
        except OSError:
            continue
    return found


def _end(procs: list[int], timeout: float) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 1.0)):
        for p in procs:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while procs and time.monotonic() < deadline:
            procs = [p for p in procs if _alive(p)]
            time.sleep(0.02)


def stop(timeout: float = 3.0) -> int:
    """End this user's sandbox: every process in it (SIGTERM, then SIGKILL), the holder
    last, and the processes of a sandbox whose holder died (:func:`orphans`). The kernel
    then frees its mounts and every network namespace in it: nothing of its labs is left.
    Returns the number of processes ended (0: there was none)."""
    if inside():
        raise SandboxError("labkit sandbox stop ends every process in the sandbox, this one too: "
                           "run it outside (a login shell, not a Jupyter terminal)")
    lost = orphans()
    _end(lost, timeout)
    holder = find(runtime_dir())
    if holder is None:
        return len(lost)
    holder.close()
    procs = [p for p in members(holder.pid) if p != holder.pid]
    _end(procs, timeout)
    _end([holder.pid], 1.0)
    try:
        os.unlink(os.path.join(runtime_dir(), SOCKET_NAME))
    except OSError:
        pass
    return len(lost) + len(procs) + 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# -- the holder -----------------------------------------------------------------------------------

def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                   data and data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {dst}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def make_namespaces(uid: int, gid: int) -> None:
    """In the calling (single-threaded) process: a user namespace where `uid` is 0, and a
    mount namespace with its own /run (netns/, labkit/, the marker). Paths the sandbox
    keeps from the host's /run (the user's runtime dir, KEEP_UNDER_RUN) are opened first
    and bound back after the tmpfs hides them."""
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, blocker_reason(err, host_sysctls()))
    keep = [p for p in (os.environ.get("XDG_RUNTIME_DIR"), *KEEP_UNDER_RUN)
            if p and p.startswith("/run/") and os.path.isdir(p)]
    # opened in the new mount namespace (a bind from another namespace's mount is EINVAL)
    fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in keep}
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        try:
            _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates either way
            _mount("labkit-sandbox", "/run", "tmpfs", 0, "mode=0755")
        except OSError as e:
            if host_sysctls().get("kernel.apparmor_restrict_unprivileged_userns") == "1":
                raise OSError(e.errno, blocker_reason(e.errno or 0, host_sysctls())) from e
            raise
        for d in ("/run/netns", "/run/labkit", "/run/lock"):
            os.makedirs(d, 0o755, exist_ok=True)
        for path, fd in fds.items():
            os.makedirs(path, 0o700, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    finally:
        for fd in fds.values():
            os.close(fd)
    try:  # the sandbox's own devices in /sys/class/net (the host's sysfs stays below)
        _mount("sysfs", "/sys", "sysfs", 0)
    except OSError:
        pass
    _write(MARKER, json.dumps({"uid": uid, "holder": os.getpid(), "created": time.time()}) + "\n")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def holder_main(sock_path: str, ready_fd: int) -> int:
    """The holder: fork (the launcher's parent exits at once), listen on `sock_path` (its
    own listen(): SO_PEERCRED names the process that listened), make the namespaces, say
    "ok" (or why not) on `ready_fd`, then answer on the socket until stopped."""
    if os.fork() != 0:
        os._exit(0)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(sock_path)
        srv.listen(64)
        make_namespaces(os.getuid(), os.getgid())
    except OSError as e:
        os.write(ready_fd, f"{e.strerror or e}\n".encode())
        return 1
    _libc.prctl(15, b"labkit-sandbox", 0, 0, 0)  # PR_SET_NAME: what ps -o comm shows
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.write(ready_fd, b"ok\n")
    os.close(ready_fd)
    while True:
        try:
            conn, _ = srv.accept()
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            return 1
        with conn:
            conn.settimeout(5)
            try:
                if conn.recv(1) == b"?":
                    conn.sendall(b"ok\n")
            except OSError:
                pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--holder"] and len(sys.argv) == 4:
        sys.exit(holder_main(sys.argv[2], int(sys.argv[3])))
    print("usage: labkit sandbox run|status|stop (python -m labkit.sandbox is the holder)", file=sys.stderr)
    sys.exit(2)
