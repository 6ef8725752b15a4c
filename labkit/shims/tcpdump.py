"""tcpdump in a rootless lab node: ``python -m labkit.shims.tcpdump REAL_TCPDUMP ARGS...``.

Debian's tcpdump, started as root, drops to its ``tcpdump`` user after opening the
capture (``-Z``), calling initgroups(3). In a sandbox (labkit/sandbox.py) only the
learner's uid is mapped and setgroups(2) is denied by the kernel (the price of a user
namespace made without newuidmap), so that step fails: ``Couldn't change to 'tcpdump'``.
Here tcpdump keeps the node's root (``-Z root``) and a seccomp filter answers its
setgroups call with success without making it (the groups are already just root's).
Nothing else is filtered; outside a sandbox the shell shim runs tcpdump unchanged.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

# (audit arch, setgroups syscall number) per machine
ARCH = {"x86_64": (0xC000003E, 116), "aarch64": (0xC00000B7, 159)}
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def filter_program(arch: int, nr: int) -> bytes:
    """BPF: on `arch`, syscall `nr` returns 0 (errno 0) without running; all else runs."""
    insns = [(BPF_LD_W_ABS, 0, 0, 4),            # A = seccomp_data.arch
             (BPF_JEQ_K, 0, 3, arch),            # another arch: allow
             (BPF_LD_W_ABS, 0, 0, 0),            # A = seccomp_data.nr
             (BPF_JEQ_K, 0, 1, nr),
             (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | 0),
             (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return b"".join(struct.pack("HBBI", *i) for i in insns)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m labkit.shims.tcpdump TCPDUMP [ARGS...]", file=sys.stderr)
        return 2
    real, args = argv[0], argv[1:]
    if "-Z" not in args:
        args = ["-Z", "root", *args]
    arch = ARCH.get(platform.machine())
    if arch:
        libc = ctypes.CDLL(None, use_errno=True)
        prog = ctypes.create_string_buffer(filter_program(*arch))
        fprog = struct.pack("HP", len(prog.raw) // 8, ctypes.addressof(prog))
        buf = ctypes.create_string_buffer(fprog)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
                libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, buf, 0, 0) != 0:
            print(f"tcpdump: cannot install the setgroups filter: {os.strerror(ctypes.get_errno())}",
                  file=sys.stderr)
    os.execv(real, [real, *args])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
