"""Run a program "on a node": inside its network namespace and its own view of the files.

``ip netns exec`` only switches the network namespace. A node of the lab also needs
its own ``/run/flannel`` (so ``cat /run/flannel/subnet.env`` shows *that* node's file,
as on a real host), so this helper does what a container runtime does, minimally:

1. ``setns`` into ``/run/netns/<name>``;
2. ``unshare`` a mount namespace and make every mount in it private, except
   ``/run/netns``: that one stays shared with the host, so a namespace created from
   inside a node (a container started by the node's docker) is visible everywhere;
3. remount ``/sys`` so ``/sys/class/net`` lists the node's interfaces;
4. bind-mount the node's directories over their well-known paths, and lay the
   node's own /etc over the host's (an overlay: the host's files show through, the
   node's writes, such as /etc/sysconfig/flanneld, stay the node's);
5. give the node its own hostname (a UTS namespace), so prompts say where you are;
6. ``exec`` the program.

It imports nothing heavy, so starting a daemon through it costs one interpreter start.
Usage: ``python -m labkit.nsexec NETNS [--bind SRC:DST]... [--etc UPPER:WORK] [--hostname H] -- PROG ARGS...``
"""
import ctypes
import errno
import os
import sys
from collections.abc import Iterable, Iterator, Sequence

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

NETNS_DIR = "/run/netns"
SANDBOX_MARKER = "/run/.labkit-sandbox"  # labkit.sandbox.MARKER (not imported: this module stays light)
# In a sandbox a node shows none of the host's home directories: empty tmpfs over these
# (and over $HOME), with only what the lab runs from (labkit, the venv, Python) bound back.
HOMES = ("/home", "/root")

_libc = ctypes.CDLL(None, use_errno=True)


def enter_net(fd: int) -> int:
    """setns(fd, CLONE_NEWNET) for the calling thread only: 0, or the errno. For modules
    that step a worker thread into a namespace (netns.sysctl, capture)."""
    return 0 if _libc.setns(fd, CLONE_NEWNET) == 0 else ctypes.get_errno()


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src and src.encode(), dst.encode(),
                       fstype and fstype.encode(), flags, data and data.encode()), f"mount {dst}")


def _mountpoints() -> Iterator[str]:
    """Mount points of this mount namespace (field 5 of /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            yield unescape(line.split()[4])


def unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in a path as \\ooo (octal)."""
    parts = field.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def _work_dir(parent: str) -> str:
    """A new, empty directory in `parent` (what tempfile.mkdtemp makes, without importing
    tempfile and the modules it pulls in: this helper starts for every command on a node)."""
    while True:
        path = os.path.join(parent, "w" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _has_etc_overlay(upper: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == "/etc" and f"upperdir={upper}," in line + "," for line in f)


def _needed() -> list[str]:
    """What a node's programs need from the host: labkit's source, the venv, its Python."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [here, sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):  # run with -S, sys.prefix is not the venv's
        paths.append(venv)
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})


def _hide_homes() -> None:
    """Empty tmpfs over the home directories; bind back the needed paths below them.
    Each needed path is opened before the tmpfs hides it and mounted from its fd."""
    home = os.environ.get("HOME", "")
    hidden = [h for h in HOMES + ((os.path.realpath(home),) if home.startswith("/") else ())
              if os.path.isdir(h) and h not in ("/", "/tmp", "/usr", "/run")]
    hidden = [h for h in hidden if not any(h != o and h.startswith(o + "/") for o in hidden)]
    keep = [p for p in _needed() if any(p == h or p.startswith(h + "/") for h in hidden)]
    fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in keep}
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    try:
        for h in hidden:
            _mount("labkit-node-home", h, "tmpfs", 0, "mode=0755,size=16m")
        for p, fd in fds.items():
            os.makedirs(p, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
    finally:
        for fd in fds.values():
            os.close(fd)
    os.makedirs("/root", exist_ok=True)
    os.environ["HOME"] = "/root"  # a node's root logs in to /root, as on a host
    if any(cwd == h or cwd.startswith(h + "/") for h in hidden):
        os.chdir("/root")


class NoNamespace(FileNotFoundError):
    """There is no network namespace of that name (deleted under the lab, `ip netns del`)."""

    def __init__(self, netns: str) -> None:
        super().__init__(errno.ENOENT, f"network namespace {netns} does not exist")

    def __str__(self) -> str:
        return str(self.strerror)


def enter(netns: str, binds: Iterable[tuple[str, str]] = (), etc: tuple[str, str] | None = None,
          hostname: str | None = None) -> None:
    """Move the calling process into `netns` with a private view of `binds`.

    `binds` is a list of (source_dir, target_dir). Missing target directories are
    created (only /run/flannel-like paths under tmpfs are expected here).
    `etc` is (upper_dir, work_parent) of an overlay laid over /etc; each mount gets its
    own work dir inside work_parent.
    """
    sandboxed = os.path.exists(SANDBOX_MARKER)
    try:
        fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoNamespace(netns) from None
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    finally:
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    for mountpoint in list(_mountpoints()):
        if mountpoint == NETNS_DIR or mountpoint.startswith(NETNS_DIR + "/"):
            continue
        _libc.mount(None, mountpoint.encode(), None, MS_PRIVATE, None)
    # A fresh sysfs shows this network namespace's devices (what `ip netns exec` does too).
    # In a sandbox the inherited /sys is locked to its parent mount (user_namespaces(7)):
    # it cannot be unmounted, so the new sysfs goes on top of it.
    if _libc.umount2(b"/sys", MNT_DETACH) == 0 or sandboxed:
        _mount(netns, "/sys", "sysfs", 0)
    if sandboxed:
        _hide_homes()
    for src, dst in binds:
        os.makedirs(dst, exist_ok=True)
        _mount(src, dst, None, MS_BIND | MS_REC)
    if etc and not _has_etc_overlay(etc[0]):  # a node's shell starting a service: already there
        upper, work_parent = etc
        # every overlay mount needs a work dir of its own: the kernel empties it when
        # mounting, so two processes of a node starting at once must not share one
        os.makedirs(work_parent, exist_ok=True)
        work = _work_dir(work_parent)
        opts = f"lowerdir=/etc,upperdir={upper},workdir={work}".encode()
        _check(_libc.mount(b"overlay", b"/etc", b"overlay", 0, opts), "mount overlay /etc")
    if hostname:
        _check(_libc.unshare(CLONE_NEWUTS), "unshare uts namespace")
        name = hostname.encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")


def parse_view(args: Sequence[str]) -> tuple[list[tuple[str, str]], tuple[str, str] | None, str | None]:
    """A node's file view from nsexec's options (what ``Node.view()`` makes): the binds
    (source, target), the /etc overlay (upper, work parent) and the hostname. The zygote
    reads the same options for the daemons it forks. ValueError names a stray argument."""
    binds: list[tuple[str, str]] = []
    etc: tuple[str, str] | None = None
    hostname: str | None = None
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("--bind", "--etc", "--hostname") or not rest:
            raise ValueError(f"unexpected argument {flag!r}")
        value = rest.pop(0)
        if flag == "--hostname":
            hostname = value
            continue
        src, _, dst = value.partition(":")
        if flag == "--bind":
            binds.append((src, dst))
        else:
            etc = (src, dst)
    return binds, etc, hostname


def main(argv: Sequence[str] | None = None) -> int:

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == 0:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    sep = argv.index("--")
    head, prog = argv[:sep], argv[sep + 1:]
    netns = head[0]
    try:
        binds, etc, hostname = parse_view(head[1:])
    except ValueError as e:
        print(f"nsexec: {e}", file=sys.stderr)
        return 2
    if not prog:
        print("nsexec: no program given", file=sys.stderr)
        return 2
    try:
        enter(netns, binds, etc, hostname)
    except OSError as e:
        print(f"nsexec: {e}", file=sys.stderr)
        return 1
    try:
        os.execvp(prog[0], prog)
    except OSError as e:
        print(f"{prog[0]}: {e.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
