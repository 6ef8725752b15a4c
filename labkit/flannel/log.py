"""klog-style log lines, so a learner can grep our flanneld's log like flannel's.

flannel logs through klog: ``I1126 06:02:44.123456    1234 main.go:481] Wrote subnet file``.
We print the same header with the name of the flannel source file the step mirrors
(no line number: ours would not match flannel's).
"""
import os
import sys
import time

_PID = os.getpid()
_VERBOSITY = 0


def set_pid(pid: int) -> None:
    """The pid in each line's header: a process forked from the zygote sets its own."""
    global _PID
    _PID = pid


def set_verbosity(level: int) -> None:
    """flanneld's -v flag (klog's V level), for the whole process, as klog keeps it."""
    global _VERBOSITY
    _VERBOSITY = int(level or 0)


def verbosity() -> int:
    """klog's V level set by -v (0 unless the daemon set it)."""
    return _VERBOSITY


def v(level: int) -> bool:
    """klog's ``V(level).Enabled()``: whether a line flannel logs at ``log.V(level)`` is shown.

    flannel logs routine per-peer detail at V(1) and V(2) (``adding subnet: ...`` in
    vxlan_network.go is V(2)); those lines appear only with ``-v=2`` or more."""
    return _VERBOSITY >= level


def _emit(level: str, src: str, msg: str) -> None:
    now = time.time()
    t = time.localtime(now)
    stamp = time.strftime("%m%d %H:%M:%S", t) + f".{int(now % 1 * 1e6):06d}"
    sys.stderr.write(f"{level}{stamp} {_PID:>7} {src}] {msg}\n")
    sys.stderr.flush()


def info(src: str, msg: str) -> None:
    _emit("I", src, msg)


def warning(src: str, msg: str) -> None:
    _emit("W", src, msg)


def error(src: str, msg: str) -> None:
    _emit("E", src, msg)
