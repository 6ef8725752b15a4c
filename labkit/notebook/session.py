"""The notebook session: one lab per notebook, built with progress and always removed.

A notebook starts with ``lab = start("nb01", nodes=2, seed=1)`` and ends with
``finish(lab)``. In between:

* ``start`` removes a leftover lab of the same name first, but only one this kernel
  built or one whose notebook kernel is gone (re-running a notebook from the top just
  works; a lab made by `labkit up` or by another live kernel is refused, never
  removed), prints each build step (so a waiting cell is never silent), makes the lab
  the one ``%node`` talks to, and registers it for removal when the kernel exits
  (``atexit``), so a notebook that fails half-way, or a kernel that is shut down,
  leaves nothing behind;
* ``replay(bundle, name)`` is ``start`` for a lab rebuilt from a state bundle;
* ``cleanup_labs(pattern)`` removes every lab whose name matches (the test suite calls
  it after running the notebooks, for kernels that were killed);
* ``status_table`` is `labkit status` as a notebook table.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import netns, tally
from ..errors import LabError
from ..lab import Lab, clean
from ..spec import LabSpec
from ..state import LabState, list_labs
from .tables import Table, result_table

NOTEBOOK_LAB = re.compile(r"^nb[0-9]{2}[a-z0-9]*$")
# A test run sets LABKIT_NOTEBOOK_SUFFIX (x + 5 hex digits): its notebooks' labs are then
# nb01x1a2b3, ..., so two runs on one machine never touch each other's labs (the sanitize
# file maps the names back for nbval).
SUFFIX_RE = re.compile(r"^(x[0-9a-f]{5})?$")
T = TypeVar("T")
if TYPE_CHECKING:
    from ..bundle import ReplayResult


def _suffix() -> str:
    suffix = os.environ.get("LABKIT_NOTEBOOK_SUFFIX", "")
    if not SUFFIX_RE.match(suffix):
        raise LabError(f"LABKIT_NOTEBOOK_SUFFIX must be x and 5 hex digits, got {suffix!r}")
    return suffix


def notebook_labs() -> re.Pattern[str]:
    """The names this run's notebooks use (nb00, nb07l, ... with this run's suffix)."""
    return re.compile(r"^nb[0-9]{2}[a-z]?" + re.escape(_suffix()) + "$")
_current: Lab | None = None
_owned: dict[str, Lab] = {}


# -- the lab of a notebook ------------------------------------------------------------------
def _say(msg: str) -> None:
    if msg.endswith(" ..."):   # the step is announced when it is done, with its result
        return
    print(msg, flush=True)


BUILT_BY = "notebook kernel"


class NotebookBar:
    """The notebook's progress bar for a big lab: one output line, redrawn in place
    (IPython's display with a display_id), at most five times a second and at the end.
    Small labs (up to tally.LIST_UP_TO nodes, the course's) never show one, so the
    stored outputs of the notebooks stay as they are."""

    def __init__(self) -> None:
        self.handle: Any = None
        self.last = 0.0

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        text = f"{step:<12} {tally.bar(done, total)}"
        try:
            from IPython.display import display
        except ImportError:
            return
        if self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)


def check_removable(name: str, asked: str | None = None) -> None:
    """Raise LabError unless lab `name` may be replaced by this kernel: it does not
    exist, this kernel built it, or the notebook kernel that built it is gone."""
    state = LabState(name)
    if not state.exists():
        return                          # nothing, or a crash's debris: clean() is safe
    owner = state.owner()
    if owner and owner.get("by") == BUILT_BY and (owner["pid"] == os.getpid() or not owner["alive"]):
        return
    if owner is None:
        who = "by an unknown process (no owner record)"
    elif owner.get("by") == BUILT_BY:
        who = f"by notebook kernel pid {owner['pid']}, which is still running"
    else:
        who = (f"by `{owner.get('by')}` (pid {owner['pid']}, "
               f"{'still running' if owner['alive'] else 'exited; the lab lives on'})")
    raise LabError(f"a lab named {name!r} already exists, created {who}: it is not this notebook's "
                   f"to remove. Pick another name (e.g. start({(asked or name)[:11] + 'b'!r}, ...)), or remove it "
                   f"yourself with `labkit down --name {name}`")


def start(name: str, quiet: bool = False, spec: LabSpec | None = None, **fields: Any) -> Lab:
    """Build the notebook's lab `name` (LabSpec fields as keywords, or a whole `spec`
    such as ``blog_spec(...)``) and return it."""
    asked, name = name, name + _suffix() if NOTEBOOK_LAB.match(name) else name
    spec = dataclasses.replace(spec, name=name, **fields) if spec is not None else LabSpec(name=name, **fields)
    spec.validate()
    check_removable(name, asked)
    if clean(name):
        print(f"(removed a lab {name} left over from an earlier run)", flush=True)
    ticker = NotebookBar() if not quiet and spec.nodes > tally.LIST_UP_TO else None
    lab = Lab(spec, progress=(lambda m: None) if quiet else _say, built_by=BUILT_BY, ticker=ticker)
    _owned[name] = lab
    lab.up()
    _start_reaper(lab)
    use(lab)
    return lab


def replay(bundle: str, name: str, quiet: bool = False) -> tuple[Lab, ReplayResult]:
    """Rebuild a state bundle (labkit/bundle) as the notebook's lab `name`: named, guarded
    and removed at kernel exit as ``start``'s labs are; returns (the lab, the ReplayResult)."""
    from ..bundle import replay as replay_bundle  # imported here: the bundle layer is not needed by start
    asked, name = name, name + _suffix() if NOTEBOOK_LAB.match(name) else name
    check_removable(name, asked)
    if clean(name):
        print(f"(removed a lab {name} left over from an earlier run)", flush=True)
    lab, result = replay_bundle(bundle, name, progress=(lambda m: None) if quiet else _say, built_by=BUILT_BY)
    _owned[name] = lab
    _start_reaper(lab)
    use(lab)
    return lab, result


def _state_inode(lab: Lab) -> int | None:
    try:
        return os.stat(lab.state.dir).st_ino
    except OSError:
        return None


def _start_reaper(lab: Lab) -> None:
    """A tiny watcher that removes the lab if this kernel dies without running atexit
    (killed: nbval stops its kernels that way, so does an out-of-memory kill). It only
    removes *this* lab: the same name rebuilt later has a new state folder."""
    ino = _state_inode(lab)
    if ino is None:
        return
    subprocess.Popen([sys.executable, "-m", "labkit.notebook.session", "--reap", str(os.getpid()), lab.spec.name,
                      str(ino)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _reap(pid: int, name: str, ino: int, every: float = 0.3) -> None:
    """Wait until `pid` is gone; then, if lab `name` is still the one it built, remove it.
    Returns at once when the lab goes away by itself (finish, atexit, labkit down)."""
    state_dir = LabState(name).dir

    def same_lab() -> bool:
        try:
            return os.stat(state_dir).st_ino == ino
        except OSError:
            return False
    while same_lab():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            if same_lab():
                clean(name)
            return
        except PermissionError:
            pass
        time.sleep(every)



def finish(lab: Lab | None = None) -> None:
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


def use(lab: Lab) -> Lab:
    """Make `lab` the one the %node magic and the widgets use by default."""
    global _current
    _current = lab
    return lab


def current() -> Lab:
    """The lab in use: the last one started or `use`d in this kernel, else the only
    lab running on this machine."""
    if _current is not None:
        return _current
    labs = list_labs()
    if len(labs) == 1:
        return use(Lab.attach(labs[0]))
    if not labs:
        raise LabError("no lab is running: build one with labkit.notebook.start('nb01', ...) "
                       "or `labkit up`")
    raise LabError(f"several labs are running ({', '.join(labs)}): pick one with "
                   "labkit.notebook.use(Lab.attach(NAME))")


@atexit.register
def _remove_owned() -> None:
    if not _owned:
        return
    for name in list(_owned):
        try:
            clean(name)
        except Exception:
            pass
        _owned.pop(name, None)


def cleanup_labs(pattern: re.Pattern[str] | None = None, spare_live_kernels: bool = False) -> list[str]:
    """Remove every lab (state folder or namespaces) whose name matches `pattern`; by
    default the labs of this run's notebooks. With `spare_live_kernels`, a lab whose
    notebook kernel is still running is left alone: re-executing one notebook (suffix "")
    must not pull the lab from under another notebook running beside it."""
    pattern = pattern or notebook_labs()
    names = set(list_labs())
    names |= {ns.split("-", 1)[0] for ns in netns.list_names() if "-" in ns}
    removed = []
    for name in sorted(names):
        if pattern.match(name):
            owner = LabState(name).owner() if spare_live_kernels else None
            if owner and owner.get("by") == BUILT_BY and owner["alive"]:
                continue
            if clean(name):
                removed.append(name)
    return removed


def wait_until(check: Callable[[], T], what: str, timeout: float = 15.0, every: float = 4.0) -> T:
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
def current_config(lab: Lab) -> str | None:
    """The network config as it is in etcd now (v2 keys for a legacy lab), or None."""
    return lab.network_config()


def status_table(lab: Lab) -> Table:

    """The lab as `labkit status` shows it: one row per node, from etcd and the kernel."""
    st = lab.status()
    cfg = lab.network_config() if st.etcd_ok else None
    return result_table(st, f"lab {lab.spec.name}, config in etcd: {cfg or '(none)'}")


def show_json(text: str) -> str:
    """Pretty-print a JSON value (a lease, a config) as it is stored in etcd."""
    return json.dumps(json.loads(text), indent=2)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--reap"]:
        _reap(int(argv[1]), argv[2], int(argv[3]))
    else:
        raise SystemExit("usage: python -m labkit.notebook.session --reap PID LAB INODE")


if __name__ == "__main__":
    main(sys.argv[1:])
